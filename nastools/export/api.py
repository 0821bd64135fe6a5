"""``export_subnet``: a run's supernet + an arch -> a deployable, verified model + sidecar.

Steps: load the checkpoint, decode the arch (default: the run's ``search/best.json``),
extract the static subnet, recalibrate its BatchNorm on training images, measure its
PyTorch top-1 on the test set, write the model (ONNX with BN folded, int8 QDQ or fp16
ONNX, a TensorRT engine, or TorchScript), run the written file on real test images and
record parity and accuracy in a JSON sidecar beside it (``<model>.json``). Image folders
are read at the arch's resolution, and BN recalibrated, as the run's image recipe says
(:class:`nastools.data.ImageRecipe`), as ``nastools eval`` reads them.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from nastools.checkpoint import checkpoint_space, find_checkpoint, load_checkpoint, run_dir, run_splits
from nastools.constants import FORMATS, PRECISIONS
from nastools.data import NO_TEST_SPLIT, NO_TEST_SPLIT_IMPORTED, image_recipe, normalisation
from nastools.errors import NastoolsError
from nastools.io import atomic_write, atomic_write_json, read_json, writable_file
from nastools.lock import OutputLock
from nastools.runtime import SUFFIX_BACKEND
from nastools.space import Arch, load_arch

SIDECAR_FORMAT = "nastools.export/1"
SUFFIX = {"onnx": ".onnx", "trt": ".engine", "torchscript": ".pt"}
BENCH_BACKEND = {"onnx": "ort", "trt": "trt", "torchscript": "torch"}  # the runtime bench uses for each format
DEFAULT_RUN = "default"


@dataclass
class ExportResult:
    """What :func:`export_subnet` wrote: the model, its sidecar, and the sidecar's content."""

    path: Path
    sidecar_path: Path
    sidecar: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.sidecar.get("parity", {}).get("passed", False))


def default_arch_path(run: str | Path) -> Path:
    """Where ``nastools search`` leaves the chosen arch of a run."""
    return run_dir(run) / "search" / "best.json"


def sidecar_path(model_path: str | Path) -> Path:
    """The JSON sidecar of a model file: ``<model>.json`` beside it."""
    p = Path(model_path)
    return p.with_name(p.name + ".json")


def default_output(run: str | Path, arch: Arch, fmt: str, precision: str) -> Path:
    tag = "" if precision == "fp32" else f"-{precision}"
    return run_dir(run) / "export" / f"{arch.id}{tag}{SUFFIX[fmt]}"


def resolve_arch(run: str | Path, arch: Arch | str | Path | None, space) -> tuple[Arch, dict[str, Any]]:
    """The arch to export, validated against the run's space (one-line errors otherwise),
    and the extra fields its file carried (``top1`` of a search result, ...)."""
    if isinstance(arch, Arch):
        return space.validate(arch), {}
    if arch is None:
        path = default_arch_path(run)
        if not path.is_file():
            raise NastoolsError(
                f"no --arch given and the run has no search result at {str(path)!r}: run nastools search first or pass --arch ARCH.json"
            )
        arch = path
    source: Any = arch
    path = Path(str(arch))
    if not str(arch).lstrip().startswith("{") and path.exists():
        data = read_json(path, "arch file")  # a folder, a device, a binary or malformed file: one line
        # a search result may wrap the arch: {"arch": {...}, "accuracy": ...}
        source = data["arch"] if isinstance(data, dict) and isinstance(data.get("arch"), dict) else data
    info = {k: v for k, v in source.items() if k in ("top1", "id")} if isinstance(source, dict) else {}
    return load_arch(source, space), info


def check_export_memory(space, arch: Arch, batch: int | None, format: str) -> int:
    """Refuse, before any work, a fixed ``batch`` whose export would not fit in memory: the
    export traces the subnet on a whole batch, and the parity check runs the written model
    (padded to its static batch) the same way. Estimated from the arch's blocks (input, and
    the largest block's input, expanded and output tensors), against this machine's available
    memory (and the GPU's free memory for TensorRT), as ``nastools bench`` does; where the
    available memory is unknown, the input is capped at ``MAX_INPUT_GIB``. Returns the
    estimate in bytes (0 for a dynamic batch)."""
    from nastools.export.bench import MAX_INPUT_GIB, _gib
    from nastools.machine import available_memory

    if batch is None:
        return 0
    image = 4 * space.input_channels * arch.resolution**2
    acts = 4 * max(b.size**2 * (b.in_chs + 2 * b.mid_chs) + b.out_size**2 * b.out_chs for b in space.blocks(arch))
    need = batch * (2 * image + acts)  # the input, its padded copy, the largest block's tensors
    free = available_memory()
    if free is None and batch * image > MAX_INPUT_GIB * 2**30:
        raise NastoolsError(
            f"--batch {batch}: the input alone would take {_gib(batch * image)} (at most {_gib(MAX_INPUT_GIB * 2**30)}); "
            f"pass a smaller --batch or --batch dynamic"
        )
    if free is not None and need > free:
        raise NastoolsError(
            f"--batch {batch}: exporting arch {arch.id} needs about {_gib(need)} for its input and activations; this "
            f"machine has {_gib(free)} available: pass a smaller --batch or --batch dynamic"
        )
    if format == "trt":
        try:
            import torch

            gpu_free = torch.cuda.mem_get_info()[0] if torch.cuda.is_available() else None
        except RuntimeError:
            gpu_free = None
        if gpu_free is not None and batch * (image + acts) > gpu_free:
            raise NastoolsError(
                f"--batch {batch}: a TensorRT engine for it needs about {_gib(batch * (image + acts))} of GPU memory; "
                f"the GPU has {_gib(gpu_free)} free: pass a smaller --batch or --batch dynamic"
            )
    return need


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise NastoolsError(f"{what} {value!r}: expected one of {', '.join(choices)}")


def _check_counts(**counts: int | None) -> None:
    """Image counts and sizes given as ``--name N``: each an integer >= 1 where given (the
    opset >= 17), as the command line's options are."""
    for name, value in counts.items():
        least = 17 if name == "opset" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise NastoolsError(f"--{name.replace('_', '-')} {value!r}: expected an integer >= {least}")


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torch

    from nastools import __version__

    return {"nastools": __version__, "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}


def _prepared(subnet, dataset, max_images: int | None, batch_size: int = 500):
    """(inputs as float32 numpy at the subnet's resolution, labels) batches of ``dataset``."""
    from nastools.data import iter_batches
    from nastools.train.evaluate import prepare_input

    for images, labels in iter_batches(dataset, batch_size, max_images=max_images):
        yield prepare_input(subnet, images, None).cpu().numpy().astype(np.float32), labels.numpy()


def _calibration_arrays(subnet, dataset, images: int, seed: int = 1, batch_size: int = 100):
    """Training images for int8 calibration, prepared like the model's inputs."""
    from nastools.train.evaluate import calibration_batches, prepare_input

    for batch in calibration_batches(dataset, batch_size, images, seed):
        yield prepare_input(subnet, batch[0], None).cpu().numpy().astype(np.float32)


def output_path(out: str | Path | None, format: str) -> Path | None:
    """``out`` with the file name ending of ``format`` (appended when ``out`` has none or an
    unknown one); an ending of another format (``--format trt --out m.onnx``) is a user error,
    since ``bench`` and the parity check pick the runtime by the ending."""
    if out is None:
        return None
    if not str(out).strip():
        raise NastoolsError("--out: empty path")
    out = Path(out)
    suffix = out.suffix.lower()
    owner = next((f for f, b in BENCH_BACKEND.items() if SUFFIX_BACKEND.get(suffix) == b), None)
    if owner is None:
        return out.with_name(out.name + SUFFIX[format])
    if owner != format:
        raise NastoolsError(
            f"--out {out}: a {suffix} file is a {owner} model, not --format {format}; name it {out.with_suffix(SUFFIX[format]).name}"
        )
    return out


def export_subnet(
    run: str | Path = DEFAULT_RUN,
    arch: Arch | str | Path | None = None,
    *,
    format: str = "onnx",
    precision: str = "fp32",
    batch: int | None = None,
    out: str | Path | None = None,
    dataset: str | None = None,
    data: str | Path | None = None,
    calib_images: int | None = None,
    parity_images: int = 1000,
    eval_images: int | None = None,
    opset: int = 17,
    max_batch: int = 256,
    workspace: int | None = None,
    timing_cache: str | Path | None = None,
    progress: bool = True,
) -> ExportResult:
    """Export ``arch`` of ``run``'s supernet as ``format`` at ``precision``; verify it.

    ``batch=None`` exports a dynamic batch axis (TensorRT: profile 1..``max_batch``).
    ``calib_images`` training images recalibrate BN (and calibrate int8; default: the run's
    image recipe's, :class:`~nastools.data.ImageRecipe`: 2000, 16384 for the reference
    recipes of imported runs); image folders are read at the arch's resolution as that recipe
    says;
    ``parity_images`` test images check parity; ``eval_images`` test images (all by default)
    give top-1 accuracy. ``run`` is a run name or folder, or a shipped supernet's name;
    ``arch`` an :class:`~nastools.space.Arch`, an Arch JSON file or a shipped arch's name
    (None: the run's ``search/best.json``); ``out`` the model's path (default
    ``<run>/export/<arch id>[-<precision>].<ending>``). TensorRT only: ``workspace`` is the
    builder's memory limit in bytes (None: 1 GiB), ``timing_cache`` a file read and written
    by the build. ``progress`` shows a bar on stderr. Returns the written paths and the
    sidecar (:class:`ExportResult`); user errors are :class:`~nastools.errors.NastoolsError`.
    """
    from tqdm import tqdm

    from nastools.runtime.trt import import_tensorrt
    from nastools.train.evaluate import run_recipe

    _check_choice("--format", format, FORMATS)
    _check_choice("--precision", precision, PRECISIONS)
    if format == "torchscript" and precision != "fp32":
        raise NastoolsError(
            f"--format torchscript --precision {precision}: TorchScript export is fp32 only; use --format onnx or trt for {precision}"
        )
    if batch is not None and (isinstance(batch, bool) or not isinstance(batch, int) or batch < 1):
        raise NastoolsError(f"--batch {batch!r}: expected a batch size >= 1 or 'dynamic'")
    _check_counts(calib_images=calib_images, parity_images=parity_images, eval_images=eval_images, max_batch=max_batch, opset=opset)
    if format == "torchscript" and batch is not None:
        raise NastoolsError(f"--format torchscript --batch {batch}: a traced TorchScript model takes any batch size; leave --batch out")
    if workspace is not None and workspace < 1:
        raise NastoolsError(f"--workspace {workspace >> 20} MiB: expected a limit >= 1 MiB")
    trt = import_tensorrt() if format == "trt" else None  # fail fast, before any work
    out = output_path(out, format)

    ckpt = load_checkpoint(run)
    space = checkpoint_space(ckpt)
    arch, arch_info = resolve_arch(run, arch, space)
    check_export_memory(space, arch, batch, format)
    out = writable_file(out or default_output(run, arch, format, precision), "--out")  # before any work
    splits = run_splits(ckpt, dataset, data, image_size=arch.resolution)
    recipe = run_recipe(ckpt, splits)
    calib_images = recipe.calib_images if calib_images is None else calib_images
    steps = tqdm(total=6, desc="export", unit="step", disable=not progress, leave=False)
    try:
        job = ExportJob(
            run=run, arch=arch, arch_info=arch_info, format=format, precision=precision, batch=batch, out=out, splits=splits,
            space=space, ckpt=ckpt, calib_images=calib_images, parity_images=parity_images, eval_images=eval_images, opset=opset,
            max_batch=max_batch, workspace=workspace, timing_cache=timing_cache, trt=trt, recipe=recipe,
        )  # fmt: skip
        with OutputLock(out, "export output", folder=False, elsewhere="pass another --out"):
            return _export(steps, job)
    finally:
        steps.close()


@dataclass
class ExportJob:
    """The checked inputs of one export: what :func:`export_subnet` resolved before any work."""

    run: str | Path
    arch: Arch
    arch_info: dict[str, Any]  # extra fields of the arch file (``top1`` of a search result)
    format: str
    precision: str
    batch: int | None  # None: a dynamic batch axis
    out: Path
    splits: Any  # the run's dataset splits (``run_splits``) at the arch's resolution: .name, .train, .test
    space: Any
    ckpt: dict[str, Any]
    calib_images: int = 2000
    parity_images: int = 1000
    eval_images: int | None = None
    opset: int = 17
    max_batch: int = 256
    workspace: int | None = None
    timing_cache: str | Path | None = None
    trt: Any = None  # the tensorrt module, for --format trt
    recipe: Any = field(default_factory=image_recipe)  # the run's ImageRecipe (``run_recipe``)

    @property
    def ds_name(self) -> str:
        return self.splits.name


@dataclass
class ExportContext:
    """One export under way: its job, the recalibrated subnet, the parity inputs and their
    PyTorch reference logits, the sidecar being filled, a scratch folder, the progress bar and
    where the exporter writes the model (in the scratch folder, with the output's name; moved
    to the output once checked)."""

    job: ExportJob
    subnet: Any
    parity_x: np.ndarray
    reference: np.ndarray
    sidecar: dict[str, Any]
    tmp: Path
    steps: Any
    model: Path

    def eval_batches(self):
        """The test images that give top-1 accuracy, prepared like the model's inputs."""
        return _prepared(self.subnet, self.job.splits.test, self.job.eval_images)


def _export(steps, job: ExportJob) -> ExportResult:
    """The work of :func:`export_subnet` once its inputs are checked: prepare the subnet,
    write the model with its format's exporter, verify the written file, write the sidecar."""
    import torch

    subnet, seen, torch_top1 = _prepare_subnet(job, steps)
    job.out = Path(job.out) if job.out else default_output(job.run, job.arch, job.format, job.precision)
    job.out.parent.mkdir(parents=True, exist_ok=True)

    parity_x = np.concatenate([x for x, _ in _prepared(subnet, job.splits.test, job.parity_images)])
    with torch.no_grad():
        reference = subnet(torch.from_numpy(parity_x)).numpy()
    sidecar = _base_sidecar(job, subnet, seen, torch_top1)

    # the model is written and checked in a scratch folder beside the output, and only then
    # moved into place: an error, Ctrl-C or a kill leaves the previous model and its sidecar
    # as they were, never an unchecked model where the checked one goes
    scratch = f".{job.out.name}.export."
    for old in job.out.parent.glob(scratch + "*"):  # left by an export that was killed (the lock is ours)
        shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=job.out.parent, prefix=scratch) as tmp:
        (Path(tmp) / "out").mkdir()
        ctx = ExportContext(job, subnet, parity_x, reference, sidecar, Path(tmp), steps, Path(tmp) / "out" / job.out.name)
        EXPORTERS[job.format].write(ctx)
        steps.update()
        _verify(ctx)
        steps.update()
        sidecar_path(job.out).unlink(missing_ok=True)  # a sidecar never describes another model than the one beside it
        os.replace(ctx.model, job.out)
    side = atomic_write_json(sidecar_path(job.out), sidecar)
    return ExportResult(job.out, side, sidecar)


def _prepare_subnet(job: ExportJob, steps) -> tuple[Any, int, float]:
    """The job's static subnet, BatchNorm recalibrated on training images (the recipe's,
    :func:`~nastools.train.evaluate.calibration_set`), in eval mode; the number of
    recalibration images it saw, and its PyTorch top-1 on the test set."""
    from nastools.supernet import Supernet
    from nastools.train.evaluate import calibration_batches, calibration_set, evaluate_top1, recalibrate_bn

    net = Supernet(job.space)
    net.load_state_dict(job.ckpt["model"])
    subnet = net.extract(job.arch).eval()
    del net
    steps.update()

    calib_set, calib_batch = calibration_set(job.splits, job.recipe, job.arch.resolution)
    seen = recalibrate_bn(subnet, calibration_batches(calib_set, calib_batch, job.calib_images))
    subnet.eval()
    torch_top1 = evaluate_top1(subnet, job.splits.test, max_images=job.eval_images)
    steps.update()
    return subnet, seen, torch_top1


def _base_sidecar(job: ExportJob, subnet, seen: int, torch_top1: float) -> dict[str, Any]:
    """The sidecar's fields known before the model is written (the exporter and the verify
    step add theirs)."""
    arch, space, ds_name, batch = job.arch, job.space, job.ds_name, job.batch
    return {
        "format": SIDECAR_FORMAT,
        "model": job.out.name,
        "model_format": job.format,
        "precision": job.precision,
        "arch_id": arch.id,
        "arch": arch.to_dict(),
        "space": {"name": space.name, "fingerprint": space.fingerprint},
        "flops": space.flops(arch),
        "params": space.params(arch),
        "input": _input_record(job, subnet),
        "classes": list(job.splits.classes),
        "batch": "dynamic" if batch is None else batch,
        "source": {"run": str(job.run), "checkpoint": str(find_checkpoint(job.run))},
        "batchnorm": {"folded": True, "recalibrated": True, "recalibration_images": seen, "recalibration_split": f"{ds_name} train" + (" (training-time augmentation)" if job.recipe.calib_augment else "")},
        "accuracy": {"dataset": ds_name, "split": job.splits.test_split, **({"note": NO_TEST_SPLIT_IMPORTED if job.ckpt.get("imported") else NO_TEST_SPLIT} if job.splits.test_split != "test" else {}), "torch_top1": torch_top1, **({"search_top1": job.arch_info["top1"]} if "top1" in job.arch_info else {})},
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip


def _input_record(job: ExportJob, subnet) -> dict[str, Any]:
    """The sidecar's ``input``: the model's input shape, how images become inputs, and the
    numbers a deployment needs (colour, per-channel mean and std of [0, 1] pixels)."""
    from nastools.export.to_onnx import INPUT_NAME

    mean, std = normalisation(job.ds_name, job.splits.channels)
    return {
        **({"name": INPUT_NAME} if job.format != "torchscript" else {}),
        "shape": ["batch" if job.batch is None else job.batch, *subnet.input_shape],
        "preprocessing": _preprocessing(job),
        "color": "RGB" if job.splits.channels == 3 else "grayscale",
        "layout": "NCHW",
        "mean": list(mean),
        "std": list(std),
    }


def _preprocessing(job: ExportJob) -> str:
    """How the model's inputs are made from images (the sidecar's ``input.preprocessing``):
    for image folders, the run's image recipe at the arch's resolution."""
    r, res = job.recipe, job.arch.resolution
    if job.ds_name != "imagefolder":
        return f"{job.ds_name} images scaled to [0,1], normalised with the dataset mean/std, bilinear resize to {res}"
    crop = r.crop or res
    resample = f", {r.resample or r.interpolation} resize to {res}" if crop != res else ""
    gray = job.splits.channels == 1
    return (
        f"image recipe {r.name}: {'converted to grayscale (PIL L), ' if gray else ''}"
        f"shorter side resized to {r.resize or int(res * 1.14)} ({r.interpolation}), centre crop {crop}, "
        f"scaled to [0,1], normalised with the ImageNet mean/std{' weighted by luminance' if gray else ''}{resample}"
    )


def _write_onnx(ctx: ExportContext, onnx_out: Path) -> None:
    """Export the subnet to ONNX and write it to ``onnx_out`` at the job's precision (int8
    QDQ, fp16, or fp32 as exported); fill the sidecar's ``onnx`` (and ``quantization``)."""
    from nastools.export.parity import top1
    from nastools.export.precision import convert_fp16, quantize_int8
    from nastools.export.to_onnx import check_onnx, export_onnx
    from nastools.runtime import make_runner
    from nastools.runtime.trt import strongly_typed

    job, sidecar = ctx.job, ctx.sidecar
    fp32_path = ctx.tmp / "fp32.onnx"
    export_onnx(ctx.subnet, fp32_path, batch=job.batch, opset=job.opset)
    ctx.steps.update()
    if job.precision == "int8":
        with make_runner(fp32_path, "ort") as r:
            fp32_top1, _ = top1(r, ctx.eval_batches())
        calibration = _calibration_arrays(ctx.subnet, job.splits.train, min(job.calib_images, 1000))
        quantize_int8(fp32_path, onnx_out, calibration, target="trt" if job.format == "trt" else "ort")
        sidecar["quantization"] = {
            "method": "onnxruntime.quantization static QDQ, MinMax calibration, int8 symmetric per-channel weights, "
            + ("symmetric int8 activations (TensorRT)" if job.format == "trt" else "7-bit weight range (reduce_range), asymmetric uint8 activations (x86 U8S8 kernels)"),
            "calibration_images": min(job.calib_images, 1000),
            "calibration_split": f"{job.ds_name} train",
        }  # fmt: skip
        sidecar["accuracy"]["fp32_top1"] = fp32_top1
    elif job.precision == "fp16" and (job.format == "onnx" or strongly_typed(job.trt)):
        convert_fp16(fp32_path, onnx_out)
    else:
        atomic_write(onnx_out, lambda f: f.write(fp32_path.read_bytes()), mode="wb")
    info = check_onnx(onnx_out)
    sidecar["onnx"] = {"file": onnx_out.name, "opset": info["opset"], "ops": info["ops"], "checker": "passed", "exporter": "torch.onnx (TorchScript, dynamo=False)"}  # fmt: skip
    ctx.steps.update()


def _export_onnx(ctx: ExportContext) -> None:
    """``--format onnx``: the ONNX model is the output."""
    _write_onnx(ctx, ctx.model)


def _export_trt(ctx: ExportContext) -> None:
    """``--format trt``: an ONNX model beside the output (``<name>.onnx``), built into a
    TensorRT engine; fill the sidecar's ``tensorrt`` and ``gpu``."""
    from nastools.export.tensorrt import build_engine
    from nastools.runtime.trt import DEFAULT_WORKSPACE, BatchProfile

    job, sidecar = ctx.job, ctx.sidecar
    onnx_out = job.out.with_suffix(".onnx")
    _write_onnx(ctx, onnx_out)
    profile = BatchProfile.for_batch(job.batch, max_batch=job.max_batch)
    cache = Path(job.timing_cache) if job.timing_cache else job.out.parent / "timing.cache"
    sidecar["tensorrt"] = build_engine(
        onnx_out, ctx.model, precision=job.precision, profile=profile, workspace=job.workspace or DEFAULT_WORKSPACE, timing_cache=cache
    )
    sidecar["versions"]["tensorrt"] = sidecar["tensorrt"]["tensorrt"]
    sidecar["gpu"] = sidecar["tensorrt"]["gpu"]


def _export_torchscript(ctx: ExportContext) -> None:
    """``--format torchscript``: the subnet with BatchNorm folded, traced, with its input
    shape and arch in the file's extra files."""
    import torch

    from nastools.export.fold import fold_batchnorm
    from nastools.runtime import TORCHSCRIPT_META

    subnet = ctx.subnet
    folded = fold_batchnorm(subnet).cpu()
    meta = json.dumps({"input_chw": list(subnet.input_shape), "arch": ctx.job.arch.to_dict()})
    ts_tmp = ctx.tmp / "model.pt"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still the portable format
        traced = torch.jit.trace(folded, torch.from_numpy(ctx.parity_x[:2]))
        torch.jit.save(traced, str(ts_tmp), _extra_files={TORCHSCRIPT_META: meta})
    atomic_write(ctx.model, lambda f: f.write(ts_tmp.read_bytes()), mode="wb")
    ctx.steps.update(2)


def _torchscript_runtime(sidecar: dict[str, Any]) -> str:
    import torch

    return f"torch {torch.__version__} TorchScript CPU"


@dataclass(frozen=True)
class Exporter:
    """One format: ``write`` puts the model at ``ctx.model`` (filling its sidecar sections);
    ``runtime`` names, from the sidecar, what runs the written file in the parity check;
    ``chunk`` is the batch that check runs it with."""

    write: Callable[[ExportContext], None]
    runtime: Callable[[dict[str, Any]], str]
    chunk: Callable[[ExportJob], int] = lambda job: 500


EXPORTERS: dict[str, Exporter] = {
    "onnx": Exporter(_export_onnx, lambda sidecar: f"onnxruntime {sidecar['versions']['onnxruntime']} CPU"),
    "trt": Exporter(
        _export_trt,
        lambda sidecar: f"TensorRT {sidecar.get('tensorrt', {}).get('tensorrt')} on {sidecar.get('gpu')}",
        lambda job: min(500, job.max_batch),  # within the engine's batch profile
    ),
    "torchscript": Exporter(_export_torchscript, _torchscript_runtime),
}


def _verify(ctx: ExportContext) -> None:
    """Run the written model on the parity images and the test set: fill the sidecar's
    ``parity`` (against the PyTorch reference) and ``accuracy`` (the model's top-1, and for
    int8 the drop from fp32)."""
    from nastools.export.parity import parity, run_batched, top1
    from nastools.runtime import make_runner

    job, sidecar = ctx.job, ctx.sidecar
    exporter = EXPORTERS[job.format]
    with make_runner(ctx.model) as runner:
        chunk = exporter.chunk(job)
        logits = run_batched(runner, ctx.parity_x, chunk)
        model_top1, n_eval = top1(runner, ctx.eval_batches(), chunk)
    sidecar["parity"] = {"reference": "PyTorch fp32 subnet (BN not folded), eval mode", "runtime": exporter.runtime(sidecar), **parity(ctx.reference, logits, job.precision)}  # fmt: skip
    sidecar["accuracy"].update({"model_top1": model_top1, "images": n_eval})
    if job.precision == "int8":
        sidecar["accuracy"]["int8_top1"] = model_top1
        sidecar["accuracy"]["drop_points"] = 100.0 * (sidecar["accuracy"]["fp32_top1"] - model_top1)


__all__ = ["DEFAULT_RUN", "ExportResult", "FORMATS", "PRECISIONS", "default_arch_path", "export_subnet", "resolve_arch", "sidecar_path"]
