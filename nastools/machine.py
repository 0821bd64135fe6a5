"""What machine this is: CPU model, cores, library versions (for tables and results)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from pathlib import Path
from typing import Any, Mapping


def check_torch_device(device: str) -> str:
    """``device`` when torch can compute on it here: ``cpu``, ``cuda`` or ``cuda:N``;
    anything else, or CUDA on a machine without it, is a one-line :class:`NastoolsError`."""
    from nastools.errors import NastoolsError

    if not re.fullmatch(r"cpu|cuda(:\d+)?", str(device)):
        raise NastoolsError(f"--device {device!r}: expected cpu or cuda (or cuda:N)")
    if device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise NastoolsError("--device cuda: no CUDA device is available here (this torch build or machine has none); use --device cpu")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise NastoolsError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def cpu_name() -> str:
    """The CPU model string, e.g. 'AMD EPYC 7B13' (falls back to the platform's name)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest x86 vector / int8 dot-product extension the CPU reports, e.g. 'avx512_vnni'
    or 'avx2' ('' where /proc/cpuinfo gives none): a VM's model name ('AMD EPYC') can hide
    which generation it runs on, and the int8 and fp32 kernels ONNX Runtime picks follow this."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((set(line.split(":", 1)[1].split()) for line in f if line.startswith("flags")), set())
    except OSError:
        return ""
    for isa in ("amx_int8", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "avx", "sse4_2"):
        if isa in flags:
            return isa
    return ""


def cpu_id() -> str:
    """The CPU's vendor, family and model numbers, e.g. 'AuthenticAMD family 26 model 2' ('' where
    /proc/cpuinfo gives none): two generations can share both a model name and a vector
    extension (Zen 4 and Zen 5 VMs both report 'AMD EPYC' with avx512_vnni)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's record is enough
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        return ""
    if not {"vendor_id", "cpu family", "model"} <= fields.keys():
        return ""
    return f"{fields['vendor_id']} family {fields['cpu family']} model {fields['model']}"


def cpu_tag() -> str:
    """A short file-name tag of this CPU's generation, e.g. 'avx512-vnni-f26m2'."""
    isa = cpu_isa().replace("_", "-")
    m = re.search(r"family (\d+) model (\d+)", cpu_id())
    return "-".join(x for x in (isa, f"f{m[1]}m{m[2]}" if m else "") if x)


GENERATION_KEYS = ("cpu_isa", "cpu_id")


def this_generation() -> dict[str, str]:
    """This CPU's generation fields: ``cpu_isa`` and ``cpu_id``."""
    return {"cpu_isa": cpu_isa(), "cpu_id": cpu_id()}


def generation_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """The generation fields (``cpu_isa``, ``cpu_id``) two records both hold and that differ
    (records made before a field was kept compare on the others)."""
    return [k for k in GENERATION_KEYS if a.get(k) and b.get(k) and a[k] != b[k]]


def generation_mismatch(meta: Mapping[str, Any]) -> list[str]:
    """:func:`generation_diff` of a record and this CPU: a table of the same model name made
    on another CPU generation."""
    return generation_diff(meta, this_generation())


def cpu_match(meta: Mapping[str, Any]) -> int:
    """How closely a record's CPU (``device`` or ``cpu``, ``cpu_isa``, ``cpu_id``) matches
    this machine, for choosing among tables: 0 for another CPU model name; for this model name
    1, plus 1 for each generation field (vector extension, family and model) both record
    alike, so 3 for this very generation and 2 for another generation with the same vector
    extension (Zen 4 beside Zen 5)."""
    if meta.get("device", meta.get("cpu")) != cpu_name():
        return 0
    mine = this_generation()
    return 1 + sum(bool(meta.get(k)) and meta.get(k) == mine[k] for k in GENERATION_KEYS)


def machine_info() -> dict[str, Any]:
    """A record of the machine and software a measurement was taken on."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
        "cpu_id": cpu_id(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d"),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:  # pragma: no cover
        pass
    return info


def _meminfo() -> dict[str, int]:
    """Linux ``/proc/meminfo`` in bytes (``MemTotal``, ``MemAvailable``, ...)."""
    info = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if v.split():
                info[k] = int(v.split()[0]) * 1024
    return info


def available_memory() -> int | None:
    """Bytes of memory this process can still take: Linux ``MemAvailable``, or less where a
    cgroup (container) limit leaves less; None where neither can be read.

    (:func:`memory_low` answers only whether it is low; ``nastools bench`` refuses a batch
    whose activations would not fit in this.)"""
    values: list[int] = []
    try:
        values.append(_meminfo()["MemAvailable"])
    except (OSError, KeyError, ValueError, IndexError):
        pass
    for folder, limit, usage, inactive in (
        ("/sys/fs/cgroup", "memory.max", "memory.current", "inactive_file"),
        ("/sys/fs/cgroup/memory", "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file"),
    ):
        try:
            cap = Path(folder, limit).read_text().strip()
            if cap == "max" or int(cap) >= 2**60:  # no limit
                continue
            used = int(Path(folder, usage).read_text())
            for line in Path(folder, "memory.stat").read_text().splitlines():
                key, _, v = line.partition(" ")
                if key == inactive:  # page cache the kernel reclaims before it kills
                    used -= int(v)
            values.append(max(0, int(cap) - max(0, used)))
        except (OSError, ValueError):
            pass
    return min(values) if values else None


def memory_low(gpu: bool = False, keep: float = 0.15, keep_gib: float = 2.0) -> bool:
    """Whether less than ``keep`` of this machine's memory (and at least ``keep_gib`` GiB) is
    still free: system memory (Linux ``MemAvailable``), or GPU 0's with ``gpu``. False where
    it cannot be read. Used to stop loading more models at once than fit."""
    try:
        if gpu:
            import torch

            free, total = torch.cuda.mem_get_info(0)
        else:
            info = _meminfo()
            free, total = info["MemAvailable"], info["MemTotal"]
    except (OSError, KeyError, ValueError, IndexError, RuntimeError, ImportError):
        return False
    return free < max(keep * total, keep_gib * 2**30)
