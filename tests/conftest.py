import os

import pytest
from hypothesis import HealthCheck, settings

# A tiny space (2 stages, 28 px, 10 classes) whose supernet trains in seconds: for tests of
# whole pipelines (search, demo) on real Fashion-MNIST.
TINY_SPACE = {
    "name": "tiny",
    "input_channels": 1,
    "num_classes": 10,
    "resolutions": [28],
    "act": "swish",
    "stem": {"widths": [8, 16], "kernel": 3, "stride": 2},
    "stages": [
        {"name": "mb1", "widths": [8, 16], "depths": [1, 2], "kernels": [3], "expands": [1], "stride": 1, "se": False},
        {"name": "mb2", "widths": [16, 24], "depths": [1, 2], "kernels": [3, 5], "expands": [2, 4], "stride": 2, "se": True},
    ],
    "head": {"widths": [64, 128], "expand": 2},
}

# Two cores: keep torch from oversubscribing when several test processes run.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# No timing assertions in tests: Hypothesis' per-example deadline (200 ms) and its slow-input
# health check fail tests on a loaded machine, so both are off; the number of examples still
# bounds each test's time.
settings.register_profile("nastools", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("nastools")


# GPU tests: ``@pytest.mark.gpu`` needs a CUDA GPU; ``@pytest.mark.gpu("ort-cuda")`` also
# onnxruntime-gpu's CUDA provider, ``@pytest.mark.gpu("tensorrt")`` also TensorRT. Where a piece
# is missing the test is skipped, and the reason names that piece and how to install it.
GPU_NEEDS = ("ort-cuda", "tensorrt")
GPU_EXTRA = "pip install 'nastools[gpu]'"


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def _tensorrt_missing() -> str | None:
    """Why TensorRT cannot run here (not installed, or older than 10), or None."""
    import nastools.runtime.trt as rt
    from nastools.errors import NastoolsError

    if not rt.tensorrt_installed():
        return f"{GPU_EXTRA} on a CUDA host or use the Docker image"
    try:
        rt.import_tensorrt()
    except NastoolsError as e:
        return str(e)
    return None


def gpu_skip_reason(needs=()) -> str | None:
    """Why a test marked ``gpu(*needs)`` cannot run here, naming the first missing piece and
    how to add it; None when it can run."""
    unknown = sorted(set(needs) - set(GPU_NEEDS))
    if unknown:
        raise ValueError(f"pytest.mark.gpu({', '.join(map(repr, unknown))}): expected needs among {', '.join(GPU_NEEDS)}")
    if not _has_cuda():
        return "needs a CUDA GPU (torch.cuda.is_available() is False)"
    if "ort-cuda" in needs:
        from nastools.runtime import onnxrt

        why = onnxrt.cuda_provider_missing()
        if why:
            return f"needs onnxruntime-gpu ({why})"
    if "tensorrt" in needs:
        why = _tensorrt_missing()
        if why:
            return f"needs TensorRT ({why})"
    return None


def pytest_collection_modifyitems(config, items):
    reasons: dict[tuple[str, ...], str | None] = {}
    for item in items:
        marks = list(item.iter_markers("gpu"))
        if not marks:
            continue
        needs = tuple(sorted({need for m in marks for need in m.args}))
        if needs not in reasons:
            try:
                reasons[needs] = gpu_skip_reason(needs)
            except ValueError as e:
                raise pytest.UsageError(f"{item.nodeid}: {e}") from None
        if reasons[needs]:
            item.add_marker(pytest.mark.skip(reason=reasons[needs]))


@pytest.fixture(scope="session")
def fmnist():
    from nastools.space import load_space

    return load_space("fmnist")


@pytest.fixture(scope="session")
def attentivenas():
    from nastools.space import load_space

    return load_space("attentivenas")


@pytest.fixture(scope="session")
def attentivenas_small():
    """The AttentiveNAS space at small resolutions, to keep CPU tests fast."""
    from nastools.space import load_space, space_from_dict

    d = load_space("attentivenas").definition()
    d["resolutions"] = [64, 96]
    return space_from_dict(d)


def synthetic_table(space, path, *, resolutions=None, device="Test CPU", drop: int = 0, calibrated: bool = True):
    """A CPU latency table of ``space`` saved at ``path`` and loaded again, nothing timed:
    every block at ``resolutions`` (default: all) but the last ``drop`` (a profile stopped
    early), 10 us + 1 us per block in enumeration order, and a flat calibration (scale 1,
    offset 10 us) unless not ``calibrated``."""
    from nastools.latency import LatencyTable
    from nastools.latency.workload import blocks_for

    t = LatencyTable.new(space, device=device, backend="ort", version="0", precision="fp32", batch=1, threads=1, resolutions=resolutions)
    blocks = blocks_for(space, resolutions)
    for i, b in enumerate(blocks[: len(blocks) - drop]):
        ms = 0.01 + 0.001 * i
        t.set(b, {"median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2, "n": 30, "passes": 2})
    if calibrated:
        flat = {"scale": 1.0, "per_block_ms": 0.0, "per_mparam_ms": 0.0, "per_melem_ms": 0.0, "per_mexpanded_ms": 0.0}
        t.calibration = {**flat, "offset_ms": 0.01, "runs": []}
    path.parent.mkdir(parents=True, exist_ok=True)
    t.save(path)
    return LatencyTable.load(path, space)


def train_tiny_run(run_dir, steps: int):
    """A supernet of :data:`TINY_SPACE` trained for ``steps`` sandwich steps (max, one random,
    min) on real Fashion-MNIST and saved as the run ``run_dir``; returns its space. Subnets
    then differ in accuracy, so searches have something to rank."""
    import random

    import torch
    import torch.nn.functional as F

    from nastools.checkpoint import save_checkpoint
    from nastools.data import iter_batches, load_splits
    from nastools.space import space_from_dict
    from nastools.supernet import Supernet

    torch.manual_seed(0)
    space = space_from_dict(TINY_SPACE)
    net = Supernet(space).train()
    splits = load_splits()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    rng = random.Random(0)
    order = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))
    for i, (x, y) in enumerate(iter_batches(splits.train, 64, order=order)):
        if i == steps:
            break
        opt.zero_grad()
        for arch in (space.max_arch(), space.sample(rng), space.min_arch()):
            net.set_active(arch)
            F.cross_entropy(net(x), y).backward()
        opt.step()
    save_checkpoint(run_dir / "supernet.pt", net)
    return space
