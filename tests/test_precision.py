"""Mixed precision in training: fp32 by default, bf16 autocast (with fp32 depthwise
convolutions on CPUs) when asked, kept across resume; old runs resume in fp32."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY_SPACE

from nastools.errors import NastoolsError
from nastools.supernet.dynamic import DynamicConv2d
from nastools.train.trainer import TrainConfig, Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import yaml

    p = tmp_path_factory.mktemp("space") / "tiny.yaml"
    p.write_text(yaml.safe_dump(TINY_SPACE))
    return str(p)


@pytest.fixture(scope="module")
def splits():
    from nastools.data import load_splits

    s = load_splits("fashion-mnist")
    s.train = s.train.subset(torch.arange(96))  # 3 steps of 32 per epoch
    return s


def config(space, **kw):
    return TrainConfig(**{**dict(space=space, batch_size=32, epochs=2, eval_images=50, calib_images=50, warmup_epochs=0.2), **kw})


def test_fp32_is_the_default_and_other_precisions_are_refused():
    assert TrainConfig().precision == "fp32"
    with pytest.raises(NastoolsError, match="--precision 'fp16': expected one of fp32, bf16"):
        TrainConfig(precision="fp16").check()


@pytest.mark.parametrize("kernel", [3, 5])
def test_depthwise_convolutions_run_in_fp32_under_cpu_autocast(kernel):
    torch.manual_seed(0)
    dw = DynamicConv2d(16, 16, 5, depthwise=True)
    pw = DynamicConv2d(16, 8, 1)
    x = torch.randn(4, 16, 8, 8).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dw(x, 16, kernel)
        z = pw(x.float(), 8)
    assert y.dtype == z.dtype == torch.bfloat16
    # the depthwise result is the fp32 convolution of the same input, rounded once to bf16
    w = dw.active_weight(16, 16, kernel)
    assert torch.equal(y, F.conv2d(x.float(), w, None, 1, kernel // 2, 1, 16).to(torch.bfloat16))
    # and outside autocast nothing changes
    assert dw(x.float(), 16, kernel).dtype == torch.float32


def test_a_bf16_step_is_close_to_fp32_and_keeps_fp32_weights(tiny, splits, tmp_path):
    steps = {}
    for p in ("fp32", "bf16"):
        t = Trainer(config(tiny, precision=p), tmp_path / p, splits=splits)
        assert t.config.precision == p
        steps[p] = (t.train_step(*next(t.batches(0, 0))), t)
    (a, _), (b, tb) = steps["fp32"], steps["bf16"]
    assert a.archs == b.archs  # the same sandwich: the arithmetic does not touch the samplers' streams
    assert all(torch.isfinite(torch.tensor(b.losses)))
    assert a.losses != b.losses  # bf16 arithmetic was used ...
    assert b.losses == pytest.approx(a.losses, rel=0.02)  # ... and is close
    assert all(p.dtype == torch.float32 for p in tb.model.parameters())
    assert all(p.grad is None or p.grad.dtype == torch.float32 for p in tb.model.parameters())


def test_a_resumed_run_keeps_its_precision(tiny, splits, tmp_path):
    Trainer(config(tiny, precision="bf16"), tmp_path / "run", splits=splits).fit(max_steps=1, progress=False, evaluate=False)
    assert Trainer.resume(tmp_path / "run", splits=splits).config.precision == "bf16"
    assert Trainer.resume(tmp_path / "run", splits=splits, precision="bf16").step == 1  # the run's own value again
    with pytest.raises(NastoolsError, match=r"--precision fp32 \(the run's: bf16\) cannot change"):
        Trainer.resume(tmp_path / "run", splits=splits, precision="fp32")


def test_a_bf16_run_resumes_to_the_same_weights(tiny, splits, tmp_path):
    cfg = config(tiny, precision="bf16")
    Trainer(cfg, tmp_path / "a", splits=splits).fit(max_steps=4, progress=False, evaluate=False)
    Trainer(cfg, tmp_path / "b", splits=splits).fit(max_steps=2, progress=False, evaluate=False)
    torch.manual_seed(99)
    Trainer.resume(tmp_path / "b", splits=splits).fit(max_steps=4, progress=False, evaluate=False)
    wa, wb = (torch.load(tmp_path / r / "supernet.pt", weights_only=True)["model"] for r in "ab")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_run_from_before_precision_existed_resumes_in_fp32(tiny, splits, tmp_path):
    Trainer(config(tiny), tmp_path / "old", splits=splits).fit(max_steps=1, progress=False, evaluate=False)
    path = tmp_path / "old" / "supernet.pt"
    data = torch.load(path, weights_only=True)
    del data["train"]["config"]["precision"]  # as written before --precision existed
    torch.save(data, path)
    assert Trainer.resume(tmp_path / "old", splits=splits).config.precision == "fp32"


def test_cli_trains_in_bf16_when_asked(tiny, tmp_path):
    from click.testing import CliRunner

    from nastools.cli import main

    args = ["train", "--space", tiny, "--run", str(tmp_path / "r"), "--steps", "1", "--no-progress", "--eval-images", "50"]
    r = CliRunner().invoke(main, [*args, "--precision", "bf16", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["precision"] == "bf16"
    assert torch.load(tmp_path / "r" / "supernet.pt", weights_only=True)["train"]["config"]["precision"] == "bf16"
    r = CliRunner().invoke(main, [*args, "--precision", "fp16"])
    assert r.exit_code == 2 and "'fp16' is not one of 'fp32', 'bf16'" in r.output


@pytest.mark.parametrize(
    "flags, device, precision, expect",
    [
        ("fpu sse4_2 avx2", "cpu", "bf16", "no bf16 instructions"),
        ("fpu sse4_2 avx2 avx512f avx512_bf16", "cpu", "bf16", "AVX-512 BF16 but no AMX"),
        ("fpu sse4_2 avx2 avx512f avx512_bf16 amx_bf16", "cpu", "bf16", None),
        ("fpu sse4_2 avx2", "cpu", "fp32", None),
        ("fpu sse4_2 avx2", "cuda", "bf16", None),
        ("", "cpu", "bf16", None),  # extensions unknown (macOS): nothing said
    ],
)
def test_bf16_on_a_cpu_without_amx_gets_a_note(monkeypatch, flags, device, precision, expect):
    import nastools.machine as m
    from nastools.train.precision import precision_note

    monkeypatch.setattr(m, "_cpuinfo", lambda: {"flags": flags} if flags else {})
    note = precision_note(precision, torch.device(device))
    if expect is None:
        assert note is None
    else:
        assert expect in note and "--precision fp32" in note and "\n" not in note


def test_a_bf16_run_on_a_cpu_without_amx_says_so_once(tiny, tmp_path, monkeypatch):
    import nastools.machine as m
    from nastools.train.trainer import train

    monkeypatch.setattr(m, "_cpuinfo", lambda: {"flags": "fpu sse4_2 avx2"})
    lines: list[str] = []
    cfg = TrainConfig(space=tiny, precision="bf16", eval_images=50)
    train(cfg, tmp_path / "r", max_steps=1, progress=False, log=lines.append)
    assert sum("no bf16 instructions" in line for line in lines) == 1
    lines.clear()
    train(TrainConfig(space=tiny, eval_images=50), tmp_path / "f", max_steps=1, progress=False, log=lines.append)
    assert not any("bf16" in line for line in lines)
