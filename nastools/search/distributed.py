"""A search shared out over the processes of ``torch.distributed`` (gloo on CPU, nccl on GPU).

Started by ``torchrun --nproc-per-node N -m nastools -- search ...``: every process reads
``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment and runs the same evolution
under the same seed. The archs of each generation that no cache holds yet are dealt out
round-robin (process ``r`` takes those at positions ``i`` with ``(i + dealt) % N == r``, where
``dealt`` counts the archs dealt in earlier generations, so no process is always the one
given the odd arch), and each process scores its own (BN recalibration and validation top-1
on its own device: ``cuda:LOCAL_RANK`` on GPU); the results are gathered on every process,
so all caches hold the same accuracies and every process breeds the same next generation
(a digest of the archs each process asked for is compared at every gather, and a mismatch
is an error rather than a silent divergence). The main process (rank 0) alone reads the
saved state and the accuracy cache, which it sends to the others, and alone writes files.
An error in rank 0's part of the setup reaches every process as the same one-line error; a
process that fails leaves the group at once (and torchrun stops the others), and one that
hangs makes the others' collectives fail after :data:`TIMEOUT`.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from typing import Callable, Mapping, Sequence

from nastools.errors import NastoolsError
from nastools.search.evolution import OneProcess
from nastools.space import Arch

#: the longest a process waits in a collective for the others: a generation's share of
#: evaluations on the slowest process, or rank 0's drift check, may keep them waiting
TIMEOUT = timedelta(hours=1)


class SearchGroup(OneProcess):
    """This process's place in a distributed search: ``rank`` of ``world_size``, the torch
    ``device`` it evaluates on, and the collectives the search needs."""

    def __init__(self, rank: int, world_size: int, local_rank: int, device: str, owns_group: bool = True) -> None:
        self.rank, self.world_size, self.local_rank, self.device = rank, world_size, local_rank, device
        self.is_main = rank == 0
        self.dealt = 0  # archs dealt out so far: where the next generation's round-robin starts
        self._owns_group = owns_group

    def gather(self, obj: object) -> list:
        """``obj`` of every process, by rank, in every process."""
        import torch.distributed as dist

        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def from_main(self, fn: Callable[[], object]) -> object:
        """``fn()`` run on the main process and sent to all; an exception it raises is raised
        in every process (the others raise it as a one-line :class:`NastoolsError`)."""
        import torch.distributed as dist

        box: list = [None]
        if self.is_main:
            try:
                box[0] = ("ok", fn())
            except BaseException as exc:
                box[0] = ("error", str(exc) if isinstance(exc, NastoolsError) else f"{type(exc).__name__}: {exc}")
                dist.broadcast_object_list(box, src=0)
                dist.barrier()  # every process has the error before any leaves the group
                raise
        dist.broadcast_object_list(box, src=0)
        kind, value = box[0]
        if kind == "error":
            dist.barrier()
            raise NastoolsError(f"{value} (rank 0 of the distributed search)")
        return value

    def evaluate(
        self,
        archs: Sequence[Arch],
        accuracy: Callable[[Arch], float],
        cache: dict[str, float],
        saved: Callable[[], None] | None = None,
    ) -> list[float]:
        """The top-1 of each of ``archs``: those not in ``cache`` (arch id -> top-1, the same in
        every process) are dealt out round-robin, each process evaluates its own with
        ``accuracy`` and the results are gathered into every process's ``cache``; then the
        main process calls ``saved`` (to write the cache to disk)."""
        todo = list({a.id: a for a in archs if a.id not in cache}.values())
        mine = {a.id: float(accuracy(a)) for i, a in enumerate(todo) if (i + self.dealt) % self.world_size == self.rank}
        self.dealt += len(todo)
        digest = hashlib.sha256(" ".join(a.id for a in archs).encode()).hexdigest()
        parts = self.gather((digest, mine))
        if any(d != digest for d, _ in parts):
            import torch.distributed as dist

            dist.barrier()  # every process raises this error: none leaves while a peer still gathers
            raise NastoolsError(
                "the processes of the distributed search disagree on the archs to evaluate: give every "
                "process the same files (run, latency tables) and options"
            )
        for _, done in parts:
            cache.update(done)
        if self.is_main and saved is not None:
            saved()
        return [cache[a.id] for a in archs]

    def leave(self, wait: bool = True) -> None:
        """Leave the process group (when this search joined it), after waiting for the others
        (a process that tears its gloo threads down while a peer is still in a collective with
        it makes the peer abort); ``wait=False`` after an error in this process, whose peers
        may be in another collective: they fail at once rather than after :data:`TIMEOUT`."""
        import torch.distributed as dist

        if self._owns_group and dist.is_initialized():
            if wait:
                try:
                    dist.barrier()
                except RuntimeError:  # a peer already gone (it failed): leave anyway
                    pass
            dist.destroy_process_group()


def join_search_group(device: str = "cpu") -> SearchGroup | None:
    """Join the process group torchrun set up (gloo for ``device`` cpu, nccl for cuda, each
    process on ``cuda:LOCAL_RANK``); None for a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch
    import torch.distributed as dist

    from nastools.machine import check_torch_device

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = str(device).startswith("cuda")
    if cuda:
        device = check_torch_device(f"cuda:{local}")
        torch.cuda.set_device(local)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if cuda else "gloo", timeout=TIMEOUT)
    return SearchGroup(rank, world, local, "cuda:" + str(local) if cuda else "cpu", owns_group=owns)


def merge_timing(parts: Sequence[Mapping[str, float]]) -> dict:
    """One timing record of the evaluators of all processes (``parts``, by rank): ``archs``
    summed, per-arch seconds averaged over all archs, with ``world_size`` and every
    process's own record under ``ranks``."""
    n = sum(int(p.get("archs", 0)) for p in parts)
    keys = [k for k, v in parts[0].items() if k != "archs" and isinstance(v, (int, float)) and not isinstance(v, bool)]
    mean = {k: sum(p[k] * p.get("archs", 0) for p in parts) / max(n, 1) for k in keys}
    return {"archs": n, **mean, "world_size": len(parts), "ranks": [dict(p) for p in parts]}
