"""Analytic cost: FLOPs (multiply-accumulates of convolutions and linear layers) and
parameters (BN affine included) of a block and of a whole arch.

An arch's cost is memoised per stage (a stage's cost depends only on its input and its
choices), so sampling with FLOPs runs at tens of thousands of archs per second.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nastools.space.arch import Arch, Block, StageArch
    from nastools.space.searchspace import SearchSpace


def block_cost(b: "Block") -> tuple[int, int]:
    """(MACs of convolutions and linear layers, parameters incl. BN affine) of one block."""
    out = b.out_size
    hw_in, hw_out = b.size * b.size, out * out
    if b.kind == "stem":
        w = b.in_chs * b.out_chs * b.kernel * b.kernel
        return w * hw_out, w + 2 * b.out_chs
    if b.kind == "head":
        expand = b.in_chs * b.mid_chs
        mix = b.mid_chs * b.out_chs
        fc = b.out_chs * b.num_classes
        macs = expand * hw_in + mix + fc
        params = expand + 2 * b.mid_chs + mix + b.out_chs + fc + b.num_classes
        return macs, params
    macs = params = 0
    mid = b.mid_chs
    if mid != b.in_chs or b.expand != 1:  # inverted bottleneck (1x1 expand)
        macs += b.in_chs * mid * hw_in
        params += b.in_chs * mid + 2 * mid
    macs += mid * b.kernel * b.kernel * hw_out  # depthwise
    params += mid * b.kernel * b.kernel + 2 * mid
    if b.se:
        macs += 2 * mid * b.se_chs
        params += 2 * mid * b.se_chs + mid + b.se_chs
    macs += mid * b.out_chs * hw_out  # pointwise projection
    params += mid * b.out_chs + 2 * b.out_chs
    if b.has_shortcut_conv:  # (avg-pool +) 1x1 conv on the residual path
        macs += b.in_chs * b.out_chs * hw_out
        params += b.in_chs * b.out_chs
    return macs, params


def _stage_cost(space: "SearchSpace", cache: dict, index: int, in_chs: int, size: int, st: "StageArch") -> tuple[int, int, int]:
    """(MACs, params, output size) of stage ``index`` fed ``in_chs`` at ``size``, memoised."""
    key = (index, in_chs, size, st)
    hit = cache.get(key)
    if hit is None:
        macs = params = 0
        blocks = space.stage_blocks(index, in_chs, size, st)
        for b in blocks:
            m, p = block_cost(b)
            macs += m
            params += p
        hit = (macs, params, blocks[-1].out_size)
        cache[key] = hit
    return hit


def arch_cost(space: "SearchSpace", arch: "Arch", cache: dict) -> tuple[int, int]:
    """(FLOPs as multiply-accumulates, parameters) of ``arch`` in ``space``, memoising the
    stem, every stage and the head in ``cache`` (the space's own)."""
    key = ("stem", arch.resolution, arch.stem)
    hit = cache.get(key)
    if hit is None:
        b = space.stem_block(arch.resolution, arch.stem)
        hit = (*block_cost(b), b.out_size)
        cache[key] = hit
    macs, params, size = hit
    chs = arch.stem
    for i, st in enumerate(arch.stages):
        hit = cache.get((i, chs, size, st))
        if hit is None:
            hit = _stage_cost(space, cache, i, chs, size, st)
        macs += hit[0]
        params += hit[1]
        size = hit[2]
        chs = st.width
    key = ("head", chs, size, arch.head)
    hit = cache.get(key)
    if hit is None:
        hit = block_cost(space.head_block(chs, size, arch.head))
        cache[key] = hit
    return macs + hit[0], params + hit[1]


def cost_breakdown(space: "SearchSpace", arch: "Arch") -> list[dict[str, Any]]:
    """Per-stage summary of a validated ``arch``: name, blocks, input and output size and
    channels, FLOPs and params."""
    blocks = space.blocks(arch)

    def row(name: str, group: list["Block"]) -> dict[str, Any]:
        last = group[-1]
        return {
            "stage": name,
            "blocks": len(group),
            "in": f"{group[0].size}x{group[0].size}x{group[0].in_chs}",
            "out": f"{last.out_size}x{last.out_size}x{last.out_chs if last.kind != 'head' else space.num_classes}",
            "flops": sum(b.cost()[0] for b in group),
            "params": sum(b.cost()[1] for b in group),
        }

    rows = [row("stem", blocks[:1])]
    start = 1
    for spec, st in zip(space.stages, arch.stages):
        rows.append(row(spec.name, blocks[start : start + st.depth]))
        start += st.depth
    rows.append(row("head", blocks[-1:]))
    return rows


__all__ = ["arch_cost", "block_cost", "cost_breakdown"]
