"""``nastools import attentivenas``: safe loading, tensor mapping, errors, and logit parity
with the AttentiveNAS reference code.

``tests/data/attentivenas_reference.pt`` holds what the reference code computes
(``tests/data/make_attentivenas_reference.py`` made it; the reference code is not needed
here): every state_dict name and shape of the reference supernet, and for A0-A6, the min,
max and 12 random subnets the reference's FLOPs and the logits of its extracted subnet in
eval mode, with every weight filled by a formula of its name (``fill``) and inputs from a
formula (``images``).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import sys
import types
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from nastools.checkpoint import load_checkpoint, load_supernet
from nastools.cli import main
from nastools.errors import NastoolsError
from nastools.importers import attentivenas as an
from nastools.importers.safe_pickle import Foreign, plain, safe_torch_load
from nastools.resources import shipped_arch
from nastools.space import load_space
from nastools.supernet import Supernet

DATA = Path(__file__).parent / "data"
TOL = 1e-4


def _maker():
    spec = importlib.util.spec_from_file_location("make_attentivenas_reference", DATA / "make_attentivenas_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MAKER = _maker()


@pytest.fixture(scope="module")
def reference():
    return torch.load(DATA / "attentivenas_reference.pt", weights_only=True)


@pytest.fixture(scope="module")
def ref_state(reference):
    """The reference supernet's state_dict, filled as the fixture's reference model was."""
    return {name: MAKER.fill(name, tuple(shape)) for name, shape in reference["keys"]}


@pytest.fixture(scope="module")
def supernet(ref_state):
    mapped, _ = an.map_state(ref_state, "fixture")
    net = Supernet("attentivenas")
    net.load_state_dict(mapped)
    return net.eval()


def _logits(net: Supernet, reference, name: str) -> torch.Tensor:
    arch = an.reference_arch(reference["archs"][name])
    with torch.no_grad():
        return net.extract(arch).eval()(MAKER.images(reference["sizes"][name]))


# ---------------------------------------------------------------------------- parity


def test_static_subnets_match_reference_logits(supernet, reference):
    names = list(reference["logits"])
    assert {"a0", "a1", "a2", "a3", "a4", "a5", "a6", "min", "max"} <= set(names)
    assert sum(n.startswith("random") for n in names) >= 10
    errors = {n: float((_logits(supernet, reference, n) - reference["logits"][n]).abs().max()) for n in names}
    assert max(errors.values()) <= TOL, errors


def test_supernet_forward_matches_reference_logits(supernet, reference):
    for name in ("a0", "a6"):
        arch = an.reference_arch(reference["archs"][name])
        supernet.set_active(arch)
        with torch.no_grad():
            y = supernet(MAKER.images(arch.resolution))
        assert float((y - reference["logits"][name]).abs().max()) <= TOL, name


def test_fixture_is_sensitive_to_one_weight(ref_state, reference):
    """A 1% change of one BatchNorm weight deep in the net moves A0's logits far past the
    tolerance, so the parity above checks every mapped tensor that A0 uses."""
    mapped, _ = an.map_state(ref_state, "fixture")
    mapped["stages.5.1.expand_bn.weight"] = mapped["stages.5.1.expand_bn.weight"] * 1.01
    net = Supernet("attentivenas")
    net.load_state_dict(mapped)
    err = float((_logits(net.eval(), reference, "a0") - reference["logits"]["a0"]).abs().max())
    assert err > 3 * TOL


def test_flops_equal_the_reference_count_and_the_published_figures(reference):
    sp = load_space("attentivenas")
    for name, a in reference["archs"].items():
        assert sp.flops(an.reference_arch(a, sp)) / 1e6 == pytest.approx(reference["flops"][name], rel=1e-9), name
    for name, mflops in an.PUBLISHED_MFLOPS.items():
        assert sp.flops(an.reference_arch(an.PARETO[name], sp)) / 1e6 == pytest.approx(mflops, rel=0.01), name
        assert an.PARETO[name] == reference["archs"][name]


# ---------------------------------------------------------------------------- mapping


def test_every_reference_tensor_is_mapped_or_listed_as_unused(ref_state):
    mapped, unused = an.map_state(ref_state, "fixture")
    names = an.name_map()
    assert set(mapped) == set(names)
    used = {v for v in names.values() if v is not None}
    assert used | set(unused) == set(ref_state) and not used & set(unused)
    assert all(".bn_tracking." in n or ".shortcut.conv." in n for n in unused)
    # every stage's first block keeps its shortcut conv; the 30 later blocks' are unused
    assert sum(".shortcut." in n for n in unused) == sum(max(s.depths) - 1 for s in load_space("attentivenas").stages)
    assert mapped["head.mix.bias"].abs().sum() == 0


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda s: s.pop("blocks.9.mobile_inverted_conv.depth_conv.se.fc.reduce.bias"),
            "tensor 'blocks.9.mobile_inverted_conv.depth_conv.se.fc.reduce.bias' is missing (nastools 'stages.2.2.se.reduce.bias')",
        ),
        (
            lambda s: s.update({"first_conv.conv.conv.weight": torch.zeros(32, 3, 3, 3)}),
            "tensor 'first_conv.conv.conv.weight' has shape [32, 3, 3, 3], expected [24, 3, 3, 3]",
        ),
        (
            lambda s: s.update({"classifier.linear.linear.bias": torch.full((1000,), float("nan"))}),
            "tensor 'classifier.linear.linear.bias' holds NaN or infinite values",
        ),
        (
            lambda s: s.update({"blocks.0.extra.weight": torch.zeros(3)}),
            "tensor 'blocks.0.extra.weight' is not part of an AttentiveNAS supernet",
        ),
        (
            lambda s: s.update({"blocks.0.shortcut.conv.conv.weight": torch.zeros(24, 24, 1, 1, dtype=torch.long)}),
            "tensor 'blocks.0.shortcut.conv.conv.weight' is torch.int64 (torch.strided), expected torch.float32",
        ),
    ],
    ids=["missing", "shape", "nan", "extra", "kind"],
)
def test_mapping_errors_are_one_line_naming_the_tensor(ref_state, change, message):
    state = dict(ref_state)
    change(state)
    with pytest.raises(NastoolsError) as exc:
        an.map_state(state, "checkpoint 'x.pth'")
    text = str(exc.value)
    assert message in text and "\n" not in text and text.startswith("checkpoint 'x.pth': ")


def test_prefix_and_layouts():
    t = torch.zeros(1)
    assert an.strip_prefix({"module.a": t, "module.b": t}, "f") == ({"a": t, "b": t}, "module.")
    assert an.strip_prefix({"a": t}, "f") == ({"a": t}, "")
    with pytest.raises(NastoolsError, match="both with and without"):
        an.strip_prefix({"module.a": t, "a": t}, "f")
    assert an.find_state_dict({"state_dict": {"a": t}, "args": None}, "f") == ({"a": t}, "state_dict")
    assert an.find_state_dict({"model": {"a": t}}, "f") == ({"a": t}, "model")
    assert an.find_state_dict({"a": t}, "f") == ({"a": t}, "")
    with pytest.raises(NastoolsError, match="has no 'state_dict' or 'model' entry"):
        an.find_state_dict({"epoch": 3}, "f")
    # a run's supernet.pt holds its weights under 'model' too, with nastools' names
    with pytest.raises(NastoolsError, match="is a nastools checkpoint already: eval, search and export take it as it is"):
        an.find_state_dict({"format": "nastools.checkpoint/1", "model": {"stem.conv.weight": t}}, "f")


def test_reference_arch_checks_its_input():
    arch = an.reference_arch(an.PARETO["a0"])
    assert arch.resolution == 192 and arch.stem == 16 and arch.head == 1792 and len(arch.stages) == 7
    with pytest.raises(NastoolsError, match="expected 9 widths"):
        an.reference_arch({**an.PARETO["a0"], "width": [16, 16]})
    with pytest.raises(NastoolsError):
        an.reference_arch({**an.PARETO["a0"], "resolution": 100})


# ---------------------------------------------------------------------------- files


def _fake_reference_modules():
    """Stand-ins for the reference's ``utils.config`` module, to pickle a config object of
    that class; they are removed again before anything is loaded."""
    mod = types.ModuleType("utils.config")

    class AttrDict(dict):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.__dict__ = self
            for k, v in self.items():
                if isinstance(v, dict):
                    self[k] = AttrDict(v)

    class Config(AttrDict):
        pass

    for cls in (AttrDict, Config):
        cls.__module__, cls.__qualname__ = "utils.config", cls.__name__
        setattr(mod, cls.__name__, cls)
    return mod


def _supernet_config(**changes):
    sp = load_space("attentivenas")
    cfg = {
        "use_v3_head": True,
        "resolutions": list(sp.resolutions),
        "first_conv": {"c": list(sp.stem_widths), "act_func": "swish", "s": 2},
        "last_conv": {"c": list(sp.head_widths), "act_func": "swish"},
    }
    for name, s in zip(("mb1", "mb2", "mb3", "mb4", "mb5", "mb6", "mb7"), sp.stages):
        cfg[name] = {
            "c": list(s.widths),
            "d": list(s.depths),
            "k": list(s.kernels),
            "t": [int(e) for e in s.expands],
            "s": s.stride,
            "act_func": "swish",
            "se": s.se,
        }
    cfg.update(changes)
    return cfg


def _save_with_config(obj_fn, path: Path, *, legacy: bool) -> None:
    """torch.save ``obj_fn(Config)`` with the reference's config class importable only
    while saving."""
    mods = {"utils": types.ModuleType("utils"), "utils.config": _fake_reference_modules()}
    old = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        with open(path, "wb") as f:
            torch.save(obj_fn(mods["utils.config"].Config), f, _use_new_zipfile_serialization=not legacy)
    finally:
        for k, v in old.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _RunsCode:
    """Pickles as a call of ``os.system``: loading it with plain pickle runs a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_code_in_a_pickle_does_not_run(tmp_path, legacy):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save(
            {"state_dict": {"module.w": torch.ones(2)}, "args": [_RunsCode(marker)], "epoch": 1},
            f,
            _use_new_zipfile_serialization=not legacy,
        )
    data = safe_torch_load(path)
    assert not marker.exists()
    assert torch.equal(data["state_dict"]["module.w"], torch.ones(2))
    evil = data["args"][0]
    assert isinstance(evil, Foreign) and evil.qualname in ("posix.system", "os.system")
    assert plain(data["args"]) == [{"__class__": evil.qualname, "args": [f"touch {marker}"]}]
    # plain torch.load would run it; weights_only refuses the whole file
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)


def test_code_as_the_whole_file_is_a_one_line_error(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save(_RunsCode(marker), path)
    with pytest.raises(NastoolsError) as exc:
        an.import_attentivenas(path, tmp_path / "run")
    assert "holds a pickled" in str(exc.value) and "\n" not in str(exc.value)
    assert not marker.exists() and not (tmp_path / "run").exists()
    raw = tmp_path / "raw.pkl"  # a bare pickle, not a torch.save file
    raw.write_bytes(pickle.dumps(_RunsCode(marker)))
    with pytest.raises(NastoolsError, match="truncated, damaged or not a torch.save file"):
        safe_torch_load(raw)
    assert not marker.exists()


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reference_config_becomes_plain_data(tmp_path, legacy):
    path = tmp_path / "cfg.pth"
    _save_with_config(
        lambda Config: {"args": Config({"n_classes": 1000, "supernet_config": _supernet_config()}), "state_dict": {}}, path, legacy=legacy
    )
    data = safe_torch_load(path)
    assert "utils.config" not in sys.modules and "utils" not in sys.modules
    cfg = plain(data["args"])
    assert cfg["__class__"] == "utils.config.Config" and cfg["n_classes"] == 1000
    assert cfg["supernet_config"]["mb3"]["c"] == [32, 40]
    an.check_config(cfg, "f")  # the attentivenas space's own choices


def test_config_of_another_space_is_refused(tmp_path):
    cfg = {"supernet_config": _supernet_config(mb3={"c": [32, 48], "d": [3], "k": [3], "t": [4], "s": 2, "se": True})}
    with pytest.raises(NastoolsError, match=r"supernet_config.mb3.c = \[32, 48\], the 'attentivenas' space has \[32, 40\]"):
        an.check_config(cfg, "checkpoint 'x'")


def test_truncated_and_foreign_files_are_one_line_errors_and_write_nothing(tmp_path):
    run = tmp_path / "run"
    good = io.BytesIO()
    torch.save({"state_dict": {"module.conv1.weight": torch.zeros(4, 3, 3, 3)}}, good, _use_new_zipfile_serialization=False)
    cases = {
        "truncated.pth": (good.getvalue()[: len(good.getvalue()) // 2], "truncated, damaged or not a torch.save file"),
        "resnet.pth": (good.getvalue(), "tensor 'first_conv.conv.conv.weight' is missing"),
        "empty.pth": (b"", "truncated, damaged or not a torch.save file"),
    }
    for name, (blob, message) in cases.items():
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(NastoolsError) as exc:
            an.import_attentivenas(tmp_path / name, run)
        assert message in str(exc.value) and "\n" not in str(exc.value), name
        assert not run.exists(), name
    with pytest.raises(NastoolsError, match="does not exist"):
        an.import_attentivenas(tmp_path / "nothing.pth", run)


def test_wrong_shape_writes_nothing(tmp_path, ref_state, monkeypatch):
    state = {f"module.{k}": v for k, v in ref_state.items()}
    state["module.last_conv.feature_mix_layer.conv.conv.weight"] = torch.zeros(1984, 1344)
    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", lambda path: {"state_dict": state})
    with pytest.raises(
        NastoolsError,
        match=r"'last_conv.feature_mix_layer.conv.conv.weight' has shape \[1984, 1344\], "
        r"expected \[1984, 1344, 1, 1\]",
    ):
        an.import_attentivenas(tmp_path / "x.pth", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_existing_run_is_kept_without_force(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "supernet.pt").write_bytes(b"trained")
    with pytest.raises(NastoolsError, match="already has a supernet .* pass --force"):
        an.import_attentivenas(tmp_path / "nothing.pth", run)
    assert (run / "supernet.pt").read_bytes() == b"trained"


def test_cli_imports_a_published_layout_checkpoint_into_a_run(tmp_path, ref_state, reference):
    """The published layout end to end: a legacy-format file of {"state_dict" with
    "module." names, "args": <config object>, optimizer, ...} through ``nastools import``;
    the run loads as any other and its subnets give the reference's logits."""
    path = tmp_path / "attentive_nas_pretrained.pth.tar"
    state = {f"module.{k}": v for k, v in ref_state.items()}
    _save_with_config(
        lambda Config: {
            "epoch": 360,
            "state_dict": state,
            "optimizer": {"state": {}, "param_groups": []},
            "args": Config({"n_classes": 1000, "supernet_config": _supernet_config()}),
        },
        path,
        legacy=True,
    )
    run = tmp_path / "runs" / "an"
    r = CliRunner().invoke(main, ["import", "attentivenas", str(path), "--run", str(run), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert report["layout"] == "state_dict" and report["prefix"] == "module." and report["mapped"] == 772
    assert len(report["unused"]) == len(ref_state) - 772 and report["zeroed"] == ["head.mix.bias"]
    assert "utils.config" not in sys.modules
    data = load_checkpoint(run, "attentivenas")
    assert data["imported"]["from"] == str(path) and data["trained"]["config"]["dataset"] == "imagefolder"
    assert report["image_recipe"] == data["trained"]["config"]["image_recipe"] == "attentivenas"
    assert (run / "archs" / "a0.json").read_text() == shipped_arch("a0", "attentivenas").read_text()
    assert data["imported"]["config"]["supernet_config"]["mb7"]["c"] == [216, 224]
    net = load_supernet(run).eval()
    arch = load_space("attentivenas").arch_from_dict(json.loads((run / "archs" / "a0.json").read_text()))
    with torch.no_grad():
        y = net.extract(arch).eval()(MAKER.images(arch.resolution))
    assert float((y - reference["logits"]["a0"]).abs().max()) <= TOL
    again = CliRunner().invoke(main, ["import", "attentivenas", str(path), "--run", str(run)])
    assert again.exit_code == 1 and "already has a supernet" in again.output and len(again.output.strip().splitlines()) == 1
    forced = CliRunner().invoke(main, ["import", "attentivenas", str(path), "--run", str(run), "--force", "--image-recipe", "alphanet"])
    assert forced.exit_code == 0 and "as alphanet's evaluation does" in forced.output, forced.output
    assert load_checkpoint(run, "attentivenas")["trained"]["config"]["image_recipe"] == "alphanet"


def test_recipe_follows_the_training_config():
    assert an.detect_recipe(None) == an.detect_recipe({"exp_name": "attentive_nas_dynamic_model_bestup3"}) == "attentivenas"
    assert an.detect_recipe({"alpha_min": -1.0, "alpha_max": 1.0}) == an.detect_recipe({"exp_name": "alphanet"}) == "alphanet"


def test_an_unwritable_run_is_refused_before_the_checkpoint_is_read(tmp_path, monkeypatch):
    afile = tmp_path / "afile"
    afile.write_text("x")

    def never(path):
        raise AssertionError("the checkpoint was read before --run was checked")

    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", never)
    for run, message in ((afile, "is a file, not a folder"), (afile / "run", "cannot write there")):
        with pytest.raises(NastoolsError, match=f"--run .*{message}"):
            an.import_attentivenas(tmp_path / "x.pth", run)


def test_an_import_stopped_midway_leaves_no_supernet_and_runs_again(tmp_path, ref_state, monkeypatch):
    """Ctrl-C while the arch files are written: no supernet.pt (the checkpoint is written
    last), so the run does not look complete and the next import needs no --force."""
    from nastools.space import Arch

    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", lambda path: {"state_dict": ref_state})
    save, calls = Arch.save, []

    def interrupted(self, path, **extra):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return save(self, path, **extra)

    monkeypatch.setattr(Arch, "save", interrupted)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        an.import_attentivenas(tmp_path / "x.pth", run)
    assert not (run / "supernet.pt").exists()
    monkeypatch.setattr(Arch, "save", save)
    report = an.import_attentivenas(tmp_path / "x.pth", run)
    assert (run / "supernet.pt").is_file() and len(report.archs) == len(an.PARETO)


@pytest.mark.parametrize("imported", [True, False], ids=["imported", "trained"])
def test_imported_runs_need_imagenet_class_ids_as_class_folders(tmp_path, monkeypatch, imported):
    """An imported supernet's output i is the i-th ImageNet class in sorted WordNet-id order:
    an image folder whose 1000 class folders are named otherwise (their sorted order is
    another) is a one-line error, not a top-1 on labels that are not the model's. A run
    trained here labels its own classes, whatever their names."""
    from nastools.checkpoint import run_splits
    from nastools.data import DataSplits

    sp = load_space("attentivenas")
    named = tuple(f"class {i:04d}" for i in range(1000))
    wnids = tuple(f"n{1440764 + i:08d}" for i in range(1000))
    ckpt = {"space": sp.definition(), "trained": {"config": {"dataset": "imagefolder", "data": None, "image_recipe": "attentivenas"}}}
    if imported:
        ckpt["imported"] = {"from": "x.pth"}
    for classes in (wnids, named):
        splits = DataSplits("imagefolder", [], [], [], 1000, 3, 224, classes=classes)
        monkeypatch.setattr("nastools.data.load_splits", lambda *a, **k: splits)
        if classes == named and imported:
            with pytest.raises(NastoolsError) as exc:
                run_splits(ckpt, None, tmp_path / "imagenet")
            text = str(exc.value)
            assert "'class 0000', 'class 0001', 'class 0002' and 997 more are not ImageNet class ids" in text and "\n" not in text
        else:
            assert run_splits(ckpt, None, tmp_path / "imagenet") is splits


def test_eval_of_an_imported_run_without_val_says_its_images_were_trained_on(tmp_path, ref_state, monkeypatch):
    """Without DIR/val, eval scores the slice held out of train/; the published supernet was
    trained on all of ImageNet's train/, so the note says the top-1 is not a test accuracy."""
    from nastools.data import IMAGENET_MEAN, IMAGENET_STD, DataSplits, TensorImages
    from nastools.train.evaluate import evaluate_subnet

    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", lambda path: {"state_dict": ref_state})
    run = tmp_path / "run"
    an.import_attentivenas(tmp_path / "x.pth", run, arch_files=False)
    images = TensorImages(torch.zeros(2, 3, 32, 32, dtype=torch.uint8), torch.tensor([0, 1]), IMAGENET_MEAN, IMAGENET_STD)
    splits = DataSplits("imagefolder", images, images, images, 1000, 3, 192, test_split="val")
    meta = evaluate_subnet("a0", run, splits=splits)["meta"]
    assert meta["split"] == "val" and "which the imported supernet was trained on: not a test accuracy" in meta["note"]


def test_eval_shows_its_progress_in_images(tmp_path, ref_state, monkeypatch, capsys):
    """BN recalibration on 16384 ImageNet images and the 50000 of val/ take long: eval
    shows a bar on stderr through both, in images."""
    from nastools.data import IMAGENET_MEAN, IMAGENET_STD, DataSplits, TensorImages
    from nastools.train.evaluate import evaluate_subnet

    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", lambda path: {"state_dict": ref_state})
    run = tmp_path / "run"
    an.import_attentivenas(tmp_path / "x.pth", run, arch_files=False)
    images = TensorImages(torch.zeros(6, 3, 32, 32, dtype=torch.uint8), torch.arange(6), IMAGENET_MEAN, IMAGENET_STD)
    splits = DataSplits("imagefolder", images, images, images, 1000, 3, 192)
    evaluate_subnet("a0", run, splits=splits, calib_images=4, max_images=3)
    assert capsys.readouterr().err == ""
    evaluate_subnet("a0", run, splits=splits, calib_images=4, max_images=3, progress=True)
    err = capsys.readouterr().err
    assert "BN recalibration" in err and "top-1 on test" in err and "4/7" in err, err


def test_a_file_without_training_config_says_the_recipe_was_not_read_from_it(tmp_path, ref_state, monkeypatch):
    """A bare state_dict (or a re-saved one) does not tell AttentiveNAS from AlphaNet: the
    import says so and how to choose AlphaNet's evaluation; with --image-recipe it does not."""
    monkeypatch.setattr("nastools.importers.safe_pickle.safe_torch_load", lambda path: dict(ref_state))
    r = CliRunner().invoke(main, ["import", "attentivenas", str(tmp_path / "x.pth"), "--run", str(tmp_path / "a")])
    assert r.exit_code == 0 and "as attentivenas's evaluation does" in r.output, r.output
    assert r.output.splitlines()[-1].startswith("note: the file has no training config") and "--image-recipe alphanet --force" in r.output
    r = CliRunner().invoke(
        main, ["import", "attentivenas", str(tmp_path / "x.pth"), "--run", str(tmp_path / "b"), "--image-recipe", "alphanet"]
    )
    assert r.exit_code == 0 and "as alphanet's evaluation does" in r.output and "note:" not in r.output, r.output


def test_a_folder_too_small_for_an_imported_run_does_not_advise_training(tmp_path):
    """An imported run cannot be trained with another --val-size: its error on an image
    folder smaller than the 5000 images it holds out says so instead."""
    from PIL import Image

    from nastools.checkpoint import run_splits

    for i in range(3):
        (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "imagenet" / "train" / "n01440764" / f"{i}.JPEG")
    cfg = {"dataset": "imagefolder", "data": None, "image_recipe": "attentivenas"}
    ckpt = {"space": load_space("attentivenas").definition(), "trained": {"config": cfg}}
    for imported in (False, True):
        if imported:
            ckpt["imported"] = {"from": "x.pth"}
        with pytest.raises(NastoolsError) as exc:
            run_splits(ckpt, None, tmp_path / "imagenet")
        text = str(exc.value)
        assert "is too small" in text and "at least 5001 images" in text and "\n" not in text
        assert ("nastools train --val-size" in text) is not imported and ("an imported supernet's run" in text) is imported, text
