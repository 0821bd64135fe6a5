"""Every file nastools reads is validated before use.

Per loader (arch JSON, space YAML, latency table, checkpoint, predictor file, budget strings):
the classes of bad input that once ended in a traceback or were used silently each give one
``NastoolsError`` line naming the file, and a hypothesis sweep of corrupted inputs checks that
the only outcomes are a valid, usable object or such a line, never another exception.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner
from conftest import TINY_SPACE
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nastools.checkpoint import check_train_state, checkpoint_space, load_checkpoint, save_checkpoint
from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.io import parse_json, read_json, read_text
from nastools.latency.table import LatencyTable
from nastools.latency.workload import blocks_for
from nastools.search.budget import parse_budgets, parse_latency
from nastools.space import Arch, SearchSpace, load_arch, load_space, space_from_dict
from nastools.supernet import Supernet
from nastools.train.accuracy_predictor import AccuracyPredictor, read_measured_archs

SWEEP = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
_n = itertools.count()


def one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert isinstance(exc, NastoolsError) and msg and "\n" not in msg, repr(exc)
    return msg


def refused(exc: BaseException) -> None:
    """A sweep's outcome: a one-line error (counted, so ``--hypothesis-show-statistics``
    shows that both outcomes occur)."""
    one_line(exc)
    event("refused")


def cli(*args: str):
    r = CliRunner().invoke(main, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r


def cli_error(*args: str) -> str:
    r = cli(*args)
    out = r.output.strip()
    assert r.exit_code == 1 and out.startswith("Error: ") and "\n" not in out, r.output
    return out


# --------------------------------------------------------------------------- corruption strategies

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    # no drawn subnormals: hypothesis refuses them once an ONNX Runtime session has set
    # flush-to-zero on this thread (nastools.runtime.session_options); one stands in the list
    | st.floats(allow_nan=True, allow_subnormal=False)
    | st.text(max_size=6)
    | st.sampled_from([0, -1, 1e308, 5e-324, float("inf"), float("nan"), "x", "../x", "a/b", [], {}]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _paths(v, prefix + (i,))


@st.composite
def corrupted(draw, doc):
    """``doc`` (JSON-like) with one place deleted, or replaced by junk (or, now and then,
    left as it is: the sweeps see valid input too)."""
    doc = json.loads(json.dumps(doc))
    if draw(st.integers(0, 9)) == 0:
        return doc
    path = draw(st.sampled_from(list(_paths(doc))))
    value = draw(junk)
    if not path:
        return value
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


@st.composite
def mangled_text(draw, good: str):
    """A file's text broken the ways a file breaks: cut short, spliced with junk, binary,
    an integer of thousands of digits, nesting deeper than Python reads, a line doubled."""
    kind = draw(st.sampled_from(["cut", "splice", "binary", "bigint", "deep", "double", "empty"]))
    i = draw(st.integers(0, len(good)))
    if kind == "cut":
        return good[:i]
    if kind == "splice":
        return good[:i] + draw(st.text(max_size=10)) + good[i + draw(st.integers(0, 10)) :]
    if kind == "binary":
        return draw(st.binary(min_size=1, max_size=40))
    if kind == "bigint":
        return good[:i] + "1" * 5000 + good[i:]
    if kind == "deep":
        return "[" * 20000 + "]" * 20000
    if kind == "double":
        lines = good.splitlines(keepends=True)
        j = draw(st.integers(0, max(0, len(lines) - 1)))
        return "".join(lines[: j + 1] + lines[j:])
    return draw(st.sampled_from(["", "  \n"]))


def write(folder: Path, name: str, content) -> Path:
    path = folder / f"{next(_n)}-{name}"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogateescape")
    return path


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("validation")


@pytest.fixture(scope="module")
def tiny() -> SearchSpace:
    return space_from_dict(TINY_SPACE, source="tiny")


# --------------------------------------------------------------------------- the reading helpers


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is empty"),
        (b" \n", "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "is not UTF-8 text"),
        (b"{" + b"1" * 5000 + b"}", "is not valid JSON"),
        (b'{"a": ' + b"1" * 5000 + b"}", "more than 4300 digits"),
        (b"[" * 100000, "nested too deeply"),
        (b'{"a": 1, "a": 2}', "the key 'a' appears twice"),
        (b'{"a": 1', "is not valid JSON: Expecting"),
    ],
)
def test_read_json_turns_every_bad_file_into_one_line_naming_it(tmp_path, content, message):
    path = tmp_path / "f.json"
    path.write_bytes(content)
    with pytest.raises(NastoolsError, match=message) as exc:
        read_json(path, "thing")
    assert str(path) in one_line(exc.value)


def test_read_text_names_what_is_wrong_with_a_path(tmp_path):
    with pytest.raises(NastoolsError, match="'/dev/null' is a character device, not a regular file"):
        read_text("/dev/null", "arch file")
    with pytest.raises(NastoolsError, match="is a folder"):
        read_text(tmp_path, "arch file")
    with pytest.raises(NastoolsError, match="not found: make one"):
        read_text(tmp_path / "none", "arch file", hint="make one")
    (tmp_path / "bom.json").write_bytes(b'\xef\xbb\xbf{"a": 1}')  # an editor's byte-order mark is fine
    assert read_json(tmp_path / "bom.json", "x") == {"a": 1}
    assert parse_json('{"a": [1, {"b": NaN}]}', "x")["a"][0] == 1


# --------------------------------------------------------------------------- arch JSON


def test_arch_json_needs_its_format_and_a_plain_space_name(fmnist):
    d = fmnist.sample(0).to_dict()
    assert load_arch(dict(d)) == fmnist.sample(0)
    with pytest.raises(NastoolsError, match="arch.format: missing"):
        load_arch({k: v for k, v in d.items() if k != "format"})
    for name in ("../fmnist", "a/b", "/etc/passwd", "fm:nist", ""):
        with pytest.raises(NastoolsError, match="arch.space: got"):
            load_arch({**d, "space": name})


def test_space_cost_of_dev_null_says_what_it_is():
    out = cli_error("space", "cost", "/dev/null")
    assert "character device, not a regular file" in out and "not found" not in out


@given(st.data())
@SWEEP
def test_sweep_arch_json_files(scratch, fmnist, data):
    good = fmnist.sample(data.draw(st.integers(0, 10**6))).to_dict()
    if data.draw(st.booleans()):
        text = json.dumps(data.draw(corrupted(good)))
    else:
        text = data.draw(mangled_text(json.dumps(good, indent=1)))
    path = write(scratch, "arch.json", text)
    try:
        arch = load_arch(str(path))
    except NastoolsError as exc:
        refused(exc)
    else:
        event("valid")
        assert isinstance(arch, Arch) and load_space(arch.space).validate(arch) == arch
        assert load_space(arch.space).flops(arch) > 0


# --------------------------------------------------------------------------- space YAML


def test_space_yaml_with_a_duplicate_key_is_refused(tmp_path):
    text = yaml.safe_dump(TINY_SPACE, sort_keys=False)
    path = tmp_path / "dup.yaml"
    path.write_text(text + "dropout: 0.1\ndropout: 0.2\n")
    with pytest.raises(NastoolsError, match="duplicate key 'dropout'") as exc:
        load_space(str(path))
    assert str(path) in one_line(exc.value)
    nested = text.replace("  kernel: 3\n", "  kernel: 3\n  kernel: 5\n", 1)
    assert nested != text
    path.write_text(nested)
    with pytest.raises(NastoolsError, match="duplicate key 'kernel'"):
        load_space(str(path))


@pytest.mark.parametrize("name", ["../../etc/x", "a/b", "..", "a..b", "/abs", ".hidden", "", "x" * 65, "a b", "a:b"])
def test_a_space_name_cannot_be_a_path(name):
    with pytest.raises(NastoolsError, match="name: got"):
        space_from_dict({**TINY_SPACE, "name": name})


@pytest.mark.parametrize(
    "change, message",
    [
        ({"resolutions": [10**6]}, "resolutions: got 1000000, expected at most 4096"),
        ({"head": {"widths": [64], "expand": 10**9}}, "head.expand: got 1000000000, expected at most 64"),
        ({"stages": [{**TINY_SPACE["stages"][0], "expands": [1e308]}]}, "expands: got"),
        ({"stages": [{**TINY_SPACE["stages"][0], "depths": [1, 10**9]}]}, "depths: got 1000000000, expected at most 64"),
    ],
)
def test_absurd_space_values_are_refused_before_costs_overflow(change, message):
    with pytest.raises(NastoolsError, match=message.replace("(", r"\(")):
        space_from_dict({**TINY_SPACE, **change})


def test_a_space_path_that_is_no_file_says_so():
    assert "character device" in cli_error("space", "show", "/dev/null")


@given(st.data())
@SWEEP
def test_sweep_space_yaml_files(scratch, data):
    if data.draw(st.booleans()):
        text = yaml.safe_dump(data.draw(corrupted(TINY_SPACE)), sort_keys=False)
    else:
        text = data.draw(mangled_text(yaml.safe_dump(TINY_SPACE, sort_keys=False)))
    path = write(scratch, "space.yaml", text)
    try:
        sp = load_space(str(path))
    except NastoolsError as exc:
        refused(exc)
    else:  # a space that loads is usable: archs, costs, fingerprint
        event("valid")
        assert isinstance(sp, SearchSpace) and len(sp.fingerprint) == 12
        for arch in (sp.min_arch(), sp.max_arch(), sp.sample(0)):
            flops, params = sp.cost(sp.validate(arch))
            assert flops > 0 and params > 0


# --------------------------------------------------------------------------- latency tables


LT_SPACE = {**TINY_SPACE, "name": "tinylt", "resolutions": [16]}


def _table(space: SearchSpace) -> dict:
    t = LatencyTable.new(space, device="Test CPU", backend="ort", version="0", precision="fp32", batch=1, threads=1)
    rng = random.Random(0)
    for b in blocks_for(space):
        ms = rng.uniform(0.01, 0.1)
        t.set(b, {"median_ms": ms, "p10_ms": ms * 0.9, "p90_ms": ms * 1.2, "n": 30, "passes": 2})
    runs = [{"arch": a.key, "measured_ms": 0.5, **t.features(a)} for a in (space.sample(i) for i in range(6))]
    t.calibration = {
        "scale": 1.1,
        "per_block_ms": 0.001,
        "per_mparam_ms": 0.01,
        "per_melem_ms": 0.0,
        "per_mexpanded_ms": 0.0,
        "offset_ms": 0.01,
        "runs": runs,
    }
    return t.to_dict()


@pytest.fixture(scope="module")
def lt_space():
    return space_from_dict(LT_SPACE, source="tinylt")


@pytest.mark.parametrize(
    "where, value, message",
    [
        (("calibration",), "fast", "calibration: got 'fast', expected an object"),
        (("calibration", "scale"), "1.1", "calibration.scale: got '1.1', expected a number"),
        (("calibration", "scale"), -1.0, "calibration.scale: got -1.0, expected a positive number"),
        (("meta", "statistic"), "p50_ms", "meta.statistic: got 'p50_ms', expected one of p10_ms, median_ms"),
        (("meta", "target"), "tpu", "meta.target: got 'tpu', expected one of cpu, gpu"),
        (("meta", "space"), "../x", "meta.space: got '../x'"),
        (("meta", "batch"), 0, "meta.batch: got 0, expected an integer >= 1"),
        (("entry", "p10_ms"), "0.1", "p10_ms is '0.1', expected a positive number of ms"),
        (("entry", "p10_ms"), float("nan"), "p10_ms is nan, expected a positive number of ms"),
        (("entry", "p10_ms"), -14.0, "p10_ms is -14.0, expected a positive number of ms"),
        (("entry", "median_ms"), float("inf"), "median_ms is inf"),
        (("entry",), [1, 2], "expected an object of latencies"),
    ],
)
def test_a_bad_latency_table_is_one_line_naming_it(tmp_path, lt_space, where, value, message):
    d = _table(lt_space)
    if where[0] == "entry":
        key = next(iter(d["entries"]))
        if len(where) == 1:
            d["entries"][key] = value
        else:
            d["entries"][key][where[1]] = value
    elif len(where) == 1:
        d[where[0]] = value
    else:
        d[where[0]][where[1]] = value
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))
    with pytest.raises(NastoolsError, match=message.replace("(", r"\(")) as exc:
        LatencyTable.load(path, lt_space)
    assert str(path) in one_line(exc.value)


def test_a_table_is_used_only_for_its_space_name_and_target(tmp_path, lt_space):
    from nastools.search.runner import resolve_table

    path = tmp_path / "t.json"
    path.write_text(json.dumps(_table(lt_space)))
    table = LatencyTable.load(path, lt_space)
    assert table.predict(lt_space.sample(1)) > 0
    d = _table(lt_space)
    d["meta"]["space"] = "tinyother"  # same choices, another name
    path.write_text(json.dumps(d))
    with pytest.raises(NastoolsError, match="names space 'tinyother', not 'tinylt'"):
        LatencyTable.load(path, lt_space)
    path.write_text(json.dumps(_table(lt_space)))  # a cpu table
    assert resolve_table(lt_space, "cpu", {"cpu": str(path)}).meta["target"] == "cpu"
    with pytest.raises(NastoolsError, match="profiled on cpu .* but the budget is on gpu") as exc:
        resolve_table(lt_space, "gpu", {"gpu": str(path)})
    one_line(exc.value)
    assert resolve_table(lt_space, "jetson", {"jetson": str(path)}) is not None  # a named device: the user's choice


def test_a_calibration_that_predicts_a_negative_latency_is_refused(tmp_path, lt_space):
    d = _table(lt_space)
    d["calibration"]["offset_ms"] = -100.0
    path = tmp_path / "t.json"
    path.write_text(json.dumps(d))
    table = LatencyTable.load(path, lt_space)
    with pytest.raises(NastoolsError, match="predicts -.* ms for arch"):
        table.predict(lt_space.sample(0))


@given(st.data())
@SWEEP
def test_sweep_latency_tables(scratch, lt_space, data):
    good = _table(lt_space)
    if data.draw(st.booleans()):
        doc = data.draw(corrupted(good))
        try:
            text = json.dumps(doc)
        except ValueError:
            return
    else:
        text = data.draw(mangled_text(json.dumps(good, indent=1)))
    path = write(scratch, "table.json", text)
    try:
        table = LatencyTable.load(path, lt_space)
        ms = table.predict(lt_space.sample(data.draw(st.integers(0, 100))))
    except NastoolsError as exc:
        refused(exc)
    else:
        event("valid")
        assert math.isfinite(ms) and ms > 0


# --------------------------------------------------------------------------- checkpoints


def _train_state(net: Supernet) -> dict:
    from nastools.train.trainer import param_groups

    opt = torch.optim.SGD(param_groups(net, 1e-5), lr=0.1, momentum=0.9)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for p in net.parameters():
        p.grad = None
    return {
        "config": {"dataset": "fashion-mnist", "seed": 0, "val_size": 5000},
        "step": 1,
        "optimizer": opt.state_dict(),
        "sampler_rng": random.Random(0).getstate(),
        "torch_rng": torch.get_rng_state(),
        "history": [],
    }


@pytest.fixture(scope="module")
def good_ckpt(tiny, tmp_path_factory):
    torch.manual_seed(0)
    net = Supernet(tiny)
    path = tmp_path_factory.mktemp("ckpt") / "run" / "supernet.pt"
    save_checkpoint(path, net, train=_train_state(net))
    return path


def _raw(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _broken(tmp_path: Path, good: Path, change) -> Path:
    data = _raw(good)
    change(data)
    path = tmp_path / "run" / "supernet.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return path


def _first_weight(d: dict) -> str:
    return next(k for k, v in d["model"].items() if v.is_floating_point() and v.ndim > 1)


BROKEN = {
    "no model": (lambda d: d.pop("model"), "has no 'model' entry"),
    "no space": (lambda d: d.pop("space"), "has no 'space' entry"),
    "bad space": (lambda d: d["space"].update(name="../x"), "its space.name: got '../x'"),
    "missing tensor": (lambda d: d["model"].pop(_first_weight(d)), "weight tensors of space 'tiny' are missing"),
    "wrong shape": (lambda d: d["model"].update({_first_weight(d): torch.zeros(3, 3)}), r"has shape \[3, 3\], expected"),
    "not a tensor": (lambda d: d["model"].update({_first_weight(d): [1.0]}), "is a list, expected a tensor"),
    "int weights": (lambda d: d["model"].update({_first_weight(d): d["model"][_first_weight(d)].long()}), "is torch.int64"),
    "all NaN": (lambda d: [v.fill_(float("nan")) for v in d["model"].values() if v.is_floating_point()], "hold NaN or infinite values"),
    "one inf": (lambda d: d["model"][_first_weight(d)].view(-1)[0].fill_(float("inf")), "1 of .* hold NaN or infinite values"),
    "extra tensor": (lambda d: d["model"].update({"stages.9.x": torch.zeros(1)}), "unexpected weight tensor 'stages.9.x'"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_damaged_checkpoint_is_one_line_naming_it(tmp_path, good_ckpt, case):
    change, message = BROKEN[case]
    path = _broken(tmp_path, good_ckpt, change)
    with pytest.raises(NastoolsError, match=message) as exc:
        load_checkpoint(path)
    assert str(path) in one_line(exc.value)


@pytest.mark.parametrize(
    "case, says",
    [
        ("no model", "has no 'model' entry"),
        ("wrong shape", "has shape [3, 3]"),
        ("all NaN", "NaN or infinite"),
        ("missing tensor", "are missing"),
    ],
)
def test_eval_search_export_and_resume_refuse_a_damaged_checkpoint_in_one_line(tmp_path, good_ckpt, tiny, case, says):
    path = _broken(tmp_path, good_ckpt, BROKEN[case][0])
    run = str(path.parent)
    arch = tmp_path / "a.json"
    tiny.min_arch().save(arch)
    for args in (
        ("eval", "--arch", str(arch), "--run", run),
        ("search", "--run", run, "--flops", "10M"),
        ("export", "--run", run, "--arch", str(arch)),
        ("train", "--run", run, "--resume"),
    ):
        out = cli_error(*args)
        assert str(path) in out and says in out, (args, out)


def test_a_good_checkpoint_loads_and_its_training_state_checks(good_ckpt, tiny):
    data = load_checkpoint(good_ckpt, train=True)
    net = Supernet(checkpoint_space(data))
    net.load_state_dict(data["model"])
    assert checkpoint_space(data).fingerprint == tiny.fingerprint


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda s: s.update(step=-1), "has step -1"),
        (lambda s: s.pop("optimizer"), "has no optimizer state"),
        (lambda s: s["optimizer"]["param_groups"][0]["params"].pop(), "covers .* weights, expected the supernet's"),
        (lambda s: s["optimizer"]["state"][0].update(momentum_buffer=torch.zeros(2)), "momentum_buffer of shape \\[2\\]"),
        (lambda s: s.update(sampler_rng="x"), "no valid sampler random state"),
        (lambda s: s.update(torch_rng=torch.zeros(3)), "no valid torch random state"),
        (lambda s: s["config"].update(seed="zero"), "training config seed is 'zero'"),
    ],
)
def test_a_damaged_training_state_refuses_a_resume(tmp_path, good_ckpt, change, message):
    path = _broken(tmp_path, good_ckpt, lambda d: change(d["train"]))
    with pytest.raises(NastoolsError, match=message) as exc:
        load_checkpoint(path, train=True)
    one_line(exc.value)
    if "config" not in message:
        load_checkpoint(path)  # eval, search and export do not need it


@given(st.data())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_sweep_checkpoints(scratch, good_ckpt, tiny, data):
    d = _raw(good_ckpt)
    kind = data.draw(st.sampled_from(["top", "tensor", "space", "train", "optimizer", "bytes"]))
    if kind == "top":
        key = data.draw(st.sampled_from(sorted(d)))
        if data.draw(st.booleans()):
            d.pop(key)
        else:
            d[key] = data.draw(junk)
    elif kind == "tensor":
        key = data.draw(st.sampled_from(sorted(d["model"])))
        t = d["model"][key]
        d["model"][key] = data.draw(
            st.sampled_from(
                [
                    t.flatten(),
                    t.reshape(-1)[:1],
                    torch.zeros(*t.shape, 2),
                    t.double(),
                    t.half(),
                    t.int(),
                    torch.full_like(t.float(), float("nan")),
                    torch.tensor(1.0),
                    "weights",
                    None,
                    t.clone(),
                ]
            )
        )
    elif kind == "space":
        d["space"] = data.draw(corrupted(d["space"]))
    elif kind == "train":  # the JSON-like part of the training state; the tensors kept
        tensors = {k: d["train"][k] for k in ("optimizer", "torch_rng")}
        bad = data.draw(corrupted({k: v for k, v in d["train"].items() if k not in tensors}))
        d["train"] = {**bad, **tensors} if isinstance(bad, dict) else bad
    elif kind == "optimizer":
        opt = d["train"]["optimizer"]
        i = data.draw(st.sampled_from(sorted(opt["state"])))
        buf = opt["state"][i]["momentum_buffer"]
        change = data.draw(st.sampled_from(["shape", "index", "group", "junk"]))
        if change == "shape":
            opt["state"][i]["momentum_buffer"] = buf.flatten()[:1]
        elif change == "index":
            opt["state"][len(opt["state"]) + 5] = opt["state"].pop(i)
        elif change == "group":
            opt["param_groups"][data.draw(st.integers(0, 1))]["params"].append(10**6)
        else:
            d["train"]["optimizer"] = data.draw(junk)
    path = scratch / f"{next(_n)}" / "supernet.pt"
    path.parent.mkdir()
    if kind == "bytes":
        raw = good_ckpt.read_bytes()
        cut = data.draw(st.integers(0, len(raw)))
        path.write_bytes(raw[:cut] + data.draw(st.binary(max_size=20)))
    else:
        torch.save(d, path)
    try:
        got = load_checkpoint(path, train=data.draw(st.booleans()))
    except NastoolsError as exc:
        refused(exc)
    else:  # what loads is usable: the weights fit the space's supernet and are finite
        event("valid")
        net = Supernet(checkpoint_space(got))
        net.load_state_dict(got["model"])
        assert all(torch.isfinite(v).all() for v in net.state_dict().values() if v.is_floating_point())
        if "train" in got:
            check_train_state(got["train"], got["model"], checkpoint_space(got), resume=False)


# --------------------------------------------------------------------------- predictor files


def _records(space: SearchSpace, n: int = 4) -> list[dict]:
    return [{**space.sample(i).to_dict(), "top1": 70.0 + i} for i in range(n)]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"\x80\x81binary\x00", "is not UTF-8 text"),
        (b'{"top1": ' + b"9" * 5000 + b"}\n", "more than 4300 digits"),
        (b"", "is empty"),
        (b'{"a": 1}\n', "record 1: no top1 field"),
    ],
)
def test_a_bad_predictor_file_is_one_line_naming_it(tmp_path, tiny, content, message):
    path = tmp_path / "p.jsonl"
    path.write_bytes(content)
    with pytest.raises(NastoolsError, match=message) as exc:
        AccuracyPredictor.fit_file(path, tiny)
    assert str(path) in one_line(exc.value)


def test_predictor_records_need_a_usable_top1_and_an_arch_of_the_space(tmp_path, tiny, fmnist):
    path = tmp_path / "p.jsonl"
    for bad, message in ((float("nan"), "top1 is nan"), ("72", "top1 is '72'"), (140, "top1 is 140"), (True, "top1 is True")):
        recs = _records(tiny)
        recs[2]["top1"] = bad
        path.write_text("\n".join(json.dumps(r) for r in recs))
        with pytest.raises(NastoolsError, match=f"record 3: {message}"):
            AccuracyPredictor.fit_file(path, tiny)
    path.write_text(json.dumps(_records(tiny) + [{**fmnist.sample(0).to_dict(), "top1": 1}]))
    with pytest.raises(NastoolsError, match="record 5: .*fmnist"):
        AccuracyPredictor.fit_file(path, tiny)


def test_a_predictor_file_may_hold_pretty_printed_records_one_after_another(tmp_path, tiny):
    # what `nastools eval --json >> measured.jsonl` leaves: indented objects, not one per line
    recs = _records(tiny)
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps(r, indent=2) for r in recs) + "\n")
    archs, accs = read_measured_archs(path, tiny)
    assert [a.key for a in archs] == [tiny.arch_from_dict(r).key for r in recs] and accs == [r["top1"] for r in recs]
    path.write_text(json.dumps(recs[0], indent=2) + "\n" + json.dumps(recs[1], indent=2)[:-3])
    with pytest.raises(NastoolsError, match=r"is not valid JSON: .* at line (1[0-9]|[2-9][0-9])") as exc:
        read_measured_archs(path, tiny)
    assert str(path) in one_line(exc.value)


@given(st.data())
@SWEEP
def test_sweep_predictor_files(scratch, tiny, data):
    recs = _records(tiny)
    as_list = data.draw(st.booleans())
    if data.draw(st.booleans()):
        recs = data.draw(corrupted(recs))
        try:
            text = json.dumps(recs) if as_list or not isinstance(recs, list) else "\n".join(json.dumps(r) for r in recs)
        except ValueError:
            return
    else:
        text = data.draw(mangled_text("\n".join(json.dumps(r) for r in recs)))
    path = write(scratch, "pred.jsonl", text)
    try:
        pred = AccuracyPredictor.fit_file(path, tiny)
    except NastoolsError as exc:
        refused(exc)
    else:
        event("valid")
        assert math.isfinite(pred.predict(tiny.sample(0)))


# --------------------------------------------------------------------------- budget strings


def test_latency_budgets_take_the_units_bench_takes_and_only_finite_values():
    assert parse_latency("1h") == 3.6e6 and parse_latency("2min") == 1.2e5 and parse_latency("3µs") == pytest.approx(0.003)
    for bad, message in (
        ("1e400ms", "expected a finite time"),
        ("1e400", "add a unit"),
        ("5m", "'m' is ambiguous"),
        ("1e-400ms", "expected a positive time"),
        ("nanms", "expected a number with a unit"),
    ):
        with pytest.raises(NastoolsError, match=message):
            parse_latency(bad)
    with pytest.raises(NastoolsError, match="expected a positive number"):
        parse_budgets((), ("1e400",))
    r = cli("search", "--run", "none", "--latency", "1e400ms")  # a bad option value: exit 2, one line
    assert r.exit_code == 2 and r.output.strip().startswith("Error: --latency: latency '1e400ms'") and r.output.count("\n") == 1, r.output


budget_text = st.one_of(
    st.text(max_size=12),
    st.builds(
        lambda n, u: f"{n:g}{u}", st.floats(1e-3, 1e6, allow_subnormal=False), st.sampled_from(["ms", "us", "s", "min", "h", "M", "G"])
    ),
    st.builds(
        lambda n, u: f"{n}{u}",
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=False),  # see junk above
            st.integers(-10, 10**30),
            st.sampled_from(["1e400", "-0", ".5", "1.", "1e-400", "5e-324", "1" * 400]),
        ),
        st.sampled_from(["", "ms", "us", "µs", "s", "min", "h", "m", "MS", " ms", "K", "M", "G", "x"]),
    ),
)


@given(
    st.lists(budget_text, max_size=3),
    st.lists(budget_text, max_size=2),
    st.lists(budget_text, max_size=2),
    st.sampled_from(["", "cpu=", "gpu=", "=", "a=b="]),
)
@settings(max_examples=200, deadline=None)
def test_sweep_budget_strings(latency, flops, params, prefix):
    try:
        budgets = parse_budgets(tuple(prefix + ",".join(latency) for _ in latency[:1]), tuple(flops), tuple(params))
    except NastoolsError as exc:
        refused(exc)
    else:
        event("valid")
        assert all(math.isfinite(b.limit) and b.limit > 0 for b in budgets)


# --------------------------------------------------------------------------- export, profile, search state


def test_export_refuses_a_batch_that_does_not_fit_in_memory_before_allocating(tmp_path, good_ckpt, tiny, monkeypatch):
    from nastools.export.api import check_export_memory, export_subnet

    arch = tiny.max_arch()
    assert check_export_memory(tiny, arch, None, "onnx") == 0
    assert 0 < check_export_memory(tiny, arch, 1, "onnx") < 2**20
    with pytest.raises(NastoolsError, match="--batch 1000000000: exporting arch .* needs about .* GiB") as exc:
        export_subnet(good_ckpt, arch, batch=10**9, out=tmp_path / "m.onnx", progress=False)
    one_line(exc.value)
    assert not (tmp_path / "m.onnx").exists()
    import nastools.machine

    monkeypatch.setattr(nastools.machine, "available_memory", lambda: None)
    with pytest.raises(NastoolsError, match="the input alone would take"):
        check_export_memory(tiny, arch, 10**9, "onnx")
    monkeypatch.undo()
    a = tmp_path / "a.json"
    arch.save(a)
    out = cli_error("export", "--run", str(good_ckpt.parent), "--arch", str(a), "--batch", "1000000000")
    assert "--batch 1000000000" in out


def test_profile_checks_everything_before_it_announces(tmp_path):
    bad = tmp_path / "t.json"
    bad.write_text('{"format": "nastools.latency-table/1", "meta": {}, "entries": {}}')
    for args in (("profile", "--out", str(bad)), ("profile", "--space", "/dev/null"), ("profile", "--out", "/dev/null/x.json")):
        r = cli(*args)
        text = r.output  # stdout and stderr, as a terminal shows them
        assert r.exit_code == 1 and len(text.strip().splitlines()) == 1 and "profiling" not in text, text


def test_a_damaged_search_state_is_one_line(tmp_path, fmnist):
    from nastools.search.evolution import EvolutionSearch, SearchConfig

    state = tmp_path / "state.json"

    def engine():
        return EvolutionSearch(
            fmnist,
            lambda a: 50.0,
            {"flops": fmnist.flops},
            {"flops": 30e6},
            "flops",
            SearchConfig(population=4, generations=1, seed=0),
            state_path=state,
        )

    engine().run()
    good = json.loads(state.read_text())
    for change, message in (
        (lambda s: s["evaluated"][0].update(top1=float("nan")), "top1 nan"),
        (lambda s: s["evaluated"][0]["costs"].pop("flops"), "expected finite numbers for flops"),
        (lambda s: s["evaluated"][0]["arch"].update(stem=999), "candidate 0: arch.stem"),
        (lambda s: s.update(population=["nope"]), "population names archs it has not evaluated"),
        (lambda s: s.update(rng=[1, 2]), "random state"),
        (lambda s: s.update(generation="2"), "generation '2'"),
    ):
        s = json.loads(json.dumps(good))
        change(s)
        state.write_text(json.dumps(s))
        with pytest.raises(NastoolsError, match=message) as exc:
            engine().run()
        assert str(state) in one_line(exc.value)
    state.write_text('{"evaluated": ' + "1" * 5000 + "}")
    with pytest.raises(NastoolsError, match="more than 4300 digits"):
        engine().run()


@pytest.mark.parametrize("text,seconds", [("800us", 8e-4), ("2ms", 2e-3), ("1.5s", 1.5), ("2min", 120.0), ("1h", 3600.0)])
def test_every_time_option_reads_a_written_time_alike(text, seconds):
    """Latency budgets, bench durations and training durations share one parser."""
    from nastools.export.bench import parse_duration as bench_duration
    from nastools.search.budget import parse_latency
    from nastools.train.trainer import parse_duration as train_duration

    assert parse_latency(text) == pytest.approx(seconds * 1e3)
    assert bench_duration(text, "--duration", max_s=1e9) == pytest.approx(seconds)
    if not text.endswith(("us", "ms")):  # training durations are whole seconds and up
        assert train_duration(text) == pytest.approx(seconds)
