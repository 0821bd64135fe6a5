import os

import pytest

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


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


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
