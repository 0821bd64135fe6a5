"""Data-parallel training over ``torch.distributed`` (gloo on CPU, nccl on GPU).

Started by ``torchrun --nproc-per-node N -m nastools -- train ...``: every process reads
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment. Each step, every rank
trains the same archs (same sampler seed; candidate scores are averaged over ranks so the
attentive choice agrees) on its shard of the global batch; gradients of the whole sandwich
are then averaged in ONE fused all-reduce before the optimizer step. (Wrapping the supernet
in ``DistributedDataParallel`` would all-reduce after each of the 4 backward passes and
needs unused-parameter detection for the sliced weights; one explicit all-reduce per step
is the same arithmetic for less communication.)
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistEnv:
    """Join the process group torchrun set up (no-op for a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistEnv()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend)
    return DistEnv(rank, world, local)


def broadcast_module(module: torch.nn.Module, env: DistEnv) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    if not env.enabled:
        return
    import torch.distributed as dist

    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, 0)


def average_gradients(params: list[torch.nn.Parameter], env: DistEnv) -> None:
    """Average the gradients of ``params`` over all ranks in one fused all-reduce."""
    if not env.enabled:
        return
    import torch.distributed as dist

    # a parameter no rank used this step keeps grad None, as in one process (a zero gradient
    # would still get momentum and weight decay from SGD); one a rank did not use gets zeros
    used = torch.tensor([p.grad is not None for p in params], dtype=torch.int32, device=params[0].device)
    dist.all_reduce(used)
    params = [p for p, u in zip(params, used.tolist()) if u > 0]
    if not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= env.world_size
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        chunk = flat[offset : offset + n].view_as(p)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def all_mean(values: list[float], env: DistEnv, device: torch.device) -> list[float]:
    """The mean of a list of numbers over all ranks (identity for one process)."""
    if not env.enabled:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / env.world_size).tolist()


def any_rank(flag: bool, env: DistEnv, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on any rank (stop decisions)."""
    if not env.enabled:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def ranks_agree(values: list[float], env: DistEnv, device: torch.device) -> bool:
    """True when every rank holds the same ``values`` (a consistency check of the replicas)."""
    if not env.enabled:
        return True
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    lo, hi = t.clone(), t.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(torch.equal(lo, hi))


def shutdown(env: DistEnv) -> None:
    """Leave the process group. Every rank waits for the others first: a rank that tore its
    gloo threads down while a peer was still in a collective with it made that peer abort
    ("terminate called without an active exception", about 1 run in 6 of the DDP test)."""
    if env.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                dist.barrier()
            except RuntimeError:  # a peer already gone (it failed): leave anyway
                pass
            dist.destroy_process_group()
