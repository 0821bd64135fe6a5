"""Make ``tests/data/attentivenas_reference.pt``: what the AttentiveNAS reference code computes
for a supernet whose weights come from a formula, for nastools' importer tests.

The reference code (facebookresearch/AttentiveNAS) is needed only here, never by nastools or
its tests::

    python tests/data/make_attentivenas_reference.py --reference /path/to/AttentiveNAS

It builds the reference ``AttentiveNasDynamicModel`` of the eval config, fills every tensor of
its state_dict with :func:`fill` (a formula of the tensor's name and shape, so that the tests
rebuild the same weights without the reference code or torch's generator), and records, for
the Pareto models A0-A6 of that config, the reference's min and max subnets and random subnets:
the arch, the reference's FLOPs count and the logits of the reference's extracted static
subnet in eval mode on :func:`images`. A0-A6 run at their own resolution; the other subnets at
64 px (the network is fully convolutional, so a smaller input checks the same layers faster).
The file also keeps every state_dict name and shape.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import zlib
from pathlib import Path

import torch

OUT = Path(__file__).with_name("attentivenas_reference.pt")
FORMAT = "nastools.test-reference.attentivenas/1"
SMALL = 64  # input size for the random subnets
BATCH = 2  # the reference squeezes the batch dimension away at batch 1


def _uniform(n: int, seed: int) -> torch.Tensor:
    """``n`` values in [-1, 1) from an integer hash of (index, seed): exact integer arithmetic,
    so every torch version and machine gives the same values."""
    h = (torch.arange(n, dtype=torch.int64) * 0x9E3779B1 + seed) & 0xFFFFFFFF
    h = ((h ^ (h >> 15)) * 0x2C1B3C6D) & 0xFFFFFFFF
    h = ((h ^ (h >> 12)) * 0x297A2D39) & 0xFFFFFFFF
    h = h ^ (h >> 15)
    return h.to(torch.float64) / 2.0**31 - 1.0


def fill(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A deterministic float32 value for reference tensor ``name`` (no "module." prefix):
    hashed values seeded by the name, scaled by the tensor's role."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "num_batches_tracked":
        return torch.tensor(0, dtype=torch.long)
    u = _uniform(math.prod(shape), zlib.crc32(name.encode())).reshape(shape)
    if leaf == "running_var":
        out = 1.0 + 0.5 * u
    elif leaf in ("running_mean", "bias"):
        out = 0.1 * u
    elif len(shape) == 1:  # BN weight: gains that keep the signal alive through every depth
        out = (0.5 if ".point_linear." in name else 1.5) + 0.25 * u
    else:  # conv / linear weight: variance 1 / fan-in
        out = u * math.sqrt(3.0 / math.prod(shape[1:]))
    return out.to(torch.float32)


def images(size: int, batch: int = BATCH, seed: int = 0) -> torch.Tensor:
    """A deterministic batch of 3-channel "images" with values in [-2, 2)."""
    return (2.0 * _uniform(batch * 3 * size * size, 12345 + seed)).reshape(batch, 3, size, size).float()


def _random_archs(cfg, count: int, seed: int) -> dict[str, dict]:
    rng = random.Random(seed)
    stages = [cfg[f"mb{i}"] for i in range(1, 8)]
    out = {}
    for i in range(count):
        out[f"random{i}"] = {
            "resolution": rng.choice(list(cfg.resolutions)),
            "width": [rng.choice(list(cfg.first_conv.c))] + [rng.choice(list(s.c)) for s in stages] + [rng.choice(list(cfg.last_conv.c))],
            "depth": [rng.choice(list(s.d)) for s in stages],
            "kernel_size": [rng.choice(list(s.k)) for s in stages],
            "expand_ratio": [rng.choice(list(s.t)) for s in stages],
        }
    return out


def _extreme(cfg, pick) -> dict:
    stages = [cfg[f"mb{i}"] for i in range(1, 8)]
    return {
        "resolution": pick(cfg.resolutions),
        "width": [pick(cfg.first_conv.c)] + [pick(s.c) for s in stages] + [pick(cfg.last_conv.c)],
        "depth": [pick(s.d) for s in stages],
        "kernel_size": [pick(s.k) for s in stages],
        "expand_ratio": [pick(s.t) for s in stages],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", required=True, help="a checkout of facebookresearch/AttentiveNAS")
    ap.add_argument("--commit", default="c4c16f1", help="its commit, recorded in the file")
    ap.add_argument("--random", type=int, default=12, help="random subnets besides A0-A6, min and max")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    sys.path.insert(0, args.reference)
    from models.attentive_nas_dynamic_model import AttentiveNasDynamicModel
    from utils.config import setup

    config = setup(str(Path(args.reference) / "configs" / "eval_attentive_nas_models.yml"))
    cfg = config.supernet_config
    model = AttentiveNasDynamicModel(cfg, n_classes=1000, bn_param=(config.bn_momentum, config.bn_eps))
    state = {k: fill(k, tuple(v.shape)) for k, v in model.state_dict().items()}
    model.load_state_dict(state)

    archs = {}
    for name in ("a0", "a1", "a2", "a3", "a4", "a5", "a6"):
        a = config.pareto_models[name]
        archs[name] = {k: a[k] for k in ("resolution", "width", "depth", "kernel_size", "expand_ratio")}
    archs["min"] = _extreme(cfg, min)
    archs["max"] = _extreme(cfg, max)
    archs.update(_random_archs(cfg, args.random, seed=1))

    logits, flops, sizes = {}, {}, {}
    torch.set_grad_enabled(False)
    for name, a in archs.items():
        model.set_active_subnet(a["resolution"], a["width"], a["depth"], a["kernel_size"], a["expand_ratio"])
        flops[name] = float(model.compute_active_subnet_flops())
        subnet = model.get_active_subnet(preserve_weight=True).eval()
        size = a["resolution"] if name.startswith("a") else SMALL
        subnet.resolution = size  # no resize inside the reference: the input is already this size
        logits[name] = subnet(images(size)).clone()
        sizes[name] = size
        print(f"{name}: {flops[name]:.1f} MFLOPs, logits |max| {logits[name].abs().max():.3f}")

    torch.save(
        {
            "format": FORMAT,
            "source": {
                "repository": "facebookresearch/AttentiveNAS",
                "commit": args.commit,
                "config": "configs/eval_attentive_nas_models.yml",
            },
            "keys": [[k, list(v.shape)] for k, v in model.state_dict().items()],
            "archs": archs,
            "sizes": sizes,
            "flops": flops,
            "logits": logits,
        },
        args.out,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
