import os

import pytest

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
