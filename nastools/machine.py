"""What machine this is: CPU model, cores, library versions (for tables and results)."""

from __future__ import annotations

import datetime as _dt
import functools
import os
import platform
import re
import subprocess
import sys
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


#: Arm CPU implementer codes (``CPU implementer`` in Linux /proc/cpuinfo) and the cores named
#: by (implementer, ``CPU part``): the common server, cloud and single-board cores. Numbers
#: from the Linux kernel's arch/arm64/include/asm/cputype.h; a core not listed is named by its
#: numbers ('ARM implementer 0x41 part 0xd8f').
_ARM_VENDORS = {0x41: "ARM", 0x4E: "NVIDIA", 0x61: "Apple", 0x6D: "Microsoft", 0xC0: "Ampere"}
_ARM_CORES = {
    (0x41, 0xD03): "Cortex-A53",  # Raspberry Pi 3
    (0x41, 0xD05): "Cortex-A55",
    (0x41, 0xD07): "Cortex-A57",  # Jetson Nano
    (0x41, 0xD08): "Cortex-A72",  # Raspberry Pi 4, AWS Graviton (A1)
    (0x41, 0xD0B): "Cortex-A76",  # Raspberry Pi 5
    (0x41, 0xD0C): "Neoverse-N1",  # AWS Graviton 2, Ampere Altra
    (0x41, 0xD40): "Neoverse-V1",  # AWS Graviton 3
    (0x41, 0xD42): "Cortex-A78AE",  # Jetson Orin
    (0x41, 0xD49): "Neoverse-N2",
    (0x41, 0xD4F): "Neoverse-V2",  # AWS Graviton 4, NVIDIA Grace, Google Axion
    (0x41, 0xD83): "Neoverse-V3AE",
    (0x41, 0xD84): "Neoverse-V3",
    (0x41, 0xD8E): "Neoverse-N3",
    (0x4E, 0x004): "Carmel",  # Jetson Xavier
    (0x61, 0x022): "M1 Icestorm",  # Apple silicon under Asahi Linux: efficiency and performance cores
    (0x61, 0x023): "M1 Firestorm",
    (0x61, 0x024): "M1 Pro Icestorm",
    (0x61, 0x025): "M1 Pro Firestorm",
    (0x61, 0x028): "M1 Max Icestorm",
    (0x61, 0x029): "M1 Max Firestorm",
    (0x61, 0x032): "M2 Blizzard",
    (0x61, 0x033): "M2 Avalanche",
    (0x6D, 0xD49): "Azure Cobalt 100",
    (0xC0, 0xAC3): "AmpereOne",
    (0xC0, 0xAC4): "AmpereOne-A",
}

#: x86 extensions (Linux ``flags``), widest first: the int8 and fp32 kernels ONNX Runtime picks
#: follow them.
_X86_ISAS = ("amx_int8", "avx512_vnni", "avx512f", "avx_vnni", "avx2", "avx", "sse4_2")

#: Arm extensions (Linux ``Features``), the one that matters most first. ONNX Runtime's int8
#: GEMMs run on SME2 where there is one (its KleidiAI kernels), else i8mm's matrix
#: instructions (SMMLA/UMMLA), else the dot product (asimddp: SDOT/UDOT), else plain NEON
#: (asimd); PyTorch and oneDNN/ACL pick SVE kernels for fp32 where SVE is there, and SVE2
#: marks the later generation (Neoverse N2/V2, 128-bit vectors) apart from SVE alone (V1,
#: 256-bit, which PyTorch's SVE256 kernels serve). Every SVE server core but the A64FX also
#: has i8mm and the dot product, so sve and sve2 stand above i8mm without hiding an int8 path.
_ARM_ISAS = ("sme2", "sve2", "sve", "i8mm", "asimddp", "asimd")

#: the macOS ``sysctl`` flag of each Arm extension Apple silicon can have (it has no SVE)
_MAC_ARM_FEATURES = {
    "sme2": "hw.optional.arm.FEAT_SME2",
    "i8mm": "hw.optional.arm.FEAT_I8MM",
    "asimddp": "hw.optional.arm.FEAT_DotProd",
    "asimd": "hw.optional.neon",
}

#: the names an Intel Mac's ``machdep.cpu.features`` / ``leaf7_features`` give the x86 extensions
_MAC_X86_FEATURES = {"AVX512VNNI": "avx512_vnni", "AVX512F": "avx512f", "AVX2": "avx2", "AVX1.0": "avx", "SSE4.2": "sse4_2"}


def _cpuinfo_text() -> str:
    """The first processor's record of Linux ``/proc/cpuinfo`` ('' where there is none: macOS)."""
    lines: list[str] = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if not line.strip():
                    if lines:
                        break  # the first processor's record is enough
                    continue
                lines.append(line)
    except OSError:
        return ""
    return "".join(lines)


def _cpuinfo() -> dict[str, str]:
    """The fields of :func:`_cpuinfo_text` ('model name', 'flags' on x86; 'CPU implementer',
    'CPU part', 'Features' on Arm)."""
    fields: dict[str, str] = {}
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


@functools.lru_cache(maxsize=None)
def _sysctl(name: str) -> str:
    """``sysctl -n name`` on macOS; '' elsewhere, for an unknown name, or where it fails."""
    if sys.platform != "darwin":
        return ""
    try:
        run = subprocess.run(["/usr/sbin/sysctl", "-n", name], capture_output=True, text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return run.stdout.strip() if run.returncode == 0 else ""


def _hex(value: str, digits: int) -> str:
    """A /proc/cpuinfo number ('0x41', '0xd0c') as '0x' and ``digits`` lower-case hex digits;
    the text itself where it is no number."""
    try:
        return f"0x{int(value, 16):0{digits}x}"
    except ValueError:
        return value


def _arm_numbers(info: Mapping[str, str]) -> str:
    """'implementer 0x41 part 0xd0c' of an Arm /proc/cpuinfo record."""
    return f"implementer {_hex(info.get('CPU implementer', ''), 2)} part {_hex(info.get('CPU part', ''), 3)}"


def _arm_name(info: Mapping[str, str]) -> str:
    """The core an Arm /proc/cpuinfo record names, e.g. 'ARM Neoverse-N1', or its numbers."""
    try:
        implementer, part = int(info.get("CPU implementer", ""), 16), int(info.get("CPU part", ""), 16)
    except ValueError:
        implementer = part = -1
    core = _ARM_CORES.get((implementer, part))
    return f"{_ARM_VENDORS[implementer]} {core}" if core else f"ARM {_arm_numbers(info)}"


def cpu_name() -> str:
    """The CPU model string, e.g. 'AMD EPYC 7B13' (x86 Linux: ``model name``), 'ARM Neoverse-V1'
    (Arm Linux: the core its implementer and part numbers name), 'Apple M2 Pro' (macOS: the
    brand string); else the platform's name."""
    info = _cpuinfo()
    if "CPU implementer" in info:
        return _arm_name(info)
    if "model name" in info:
        return re.sub(r"\s+", " ", info["model name"]).strip()
    brand = re.sub(r"\s+", " ", _sysctl("machdep.cpu.brand_string")).strip()
    return brand or platform.processor() or platform.machine()


def _mac_isa() -> str:
    """:func:`cpu_isa` on macOS, from ``sysctl`` ('' elsewhere)."""
    if _sysctl("hw.optional.arm64") == "1":
        return next((isa for isa in _ARM_ISAS if isa in _MAC_ARM_FEATURES and _sysctl(_MAC_ARM_FEATURES[isa]) == "1"), "")
    names = f"{_sysctl('machdep.cpu.features')} {_sysctl('machdep.cpu.leaf7_features')}".split()
    flags = {_MAC_X86_FEATURES[n] for n in names if n in _MAC_X86_FEATURES}
    return next((isa for isa in _X86_ISAS if isa in flags), "")


def cpu_flags() -> frozenset[str]:
    """The extensions the CPU reports under Linux (``flags`` on x86, ``Features`` on Arm); empty
    where /proc/cpuinfo is not there (macOS)."""
    info = _cpuinfo()
    return frozenset(info.get("Features" if "CPU implementer" in info else "flags", "").split())


def cpu_isa() -> str:
    """The widest vector / int8 dot-product extension the CPU reports, e.g. 'avx512_vnni' or
    'avx2' (x86), 'sve' or 'asimddp' (Arm: dot product), 'i8mm' (Apple M2 and later); ''
    where none is known: a VM's model name ('AMD EPYC') can hide which generation it runs
    on, and the int8 and fp32 kernels ONNX Runtime and PyTorch pick follow this."""
    info = _cpuinfo()
    if not info:
        return _mac_isa()
    arm = "CPU implementer" in info
    have = set(info.get("Features" if arm else "flags", "").split())
    return next((isa for isa in (_ARM_ISAS if arm else _X86_ISAS) if isa in have), "")


def _mac_id() -> str:
    """:func:`cpu_id` on macOS, from ``sysctl`` ('' elsewhere)."""
    if _sysctl("hw.optional.arm64") == "1":
        try:  # e.g. 0x1b588bb3 for the M1's Firestorm and Icestorm cores
            return f"Apple cpufamily 0x{int(_sysctl('hw.cpufamily')) & 0xFFFFFFFF:08x}"
        except ValueError:
            return ""
    vendor, family, model = (_sysctl(f"machdep.cpu.{k}") for k in ("vendor", "family", "model"))
    return f"{vendor} family {family} model {model}" if vendor and family and model else ""


def cpu_id() -> str:
    """The CPU's vendor, family and model numbers, e.g. 'AuthenticAMD family 26 model 2' (x86),
    'ARM implementer 0x41 part 0xd40 variant 0x1' (Arm Linux), 'Apple cpufamily 0x1b588bb3'
    (Apple silicon); '' where none is known: two generations can share both a model name and
    a vector extension (Zen 4 and Zen 5 VMs both report 'AMD EPYC' with avx512_vnni)."""
    info = _cpuinfo()
    if not info:
        return _mac_id()
    if {"vendor_id", "cpu family", "model"} <= info.keys():
        return f"{info['vendor_id']} family {info['cpu family']} model {info['model']}"
    if {"CPU implementer", "CPU part", "CPU variant"} <= info.keys():
        return f"ARM {_arm_numbers(info)} variant {_hex(info['CPU variant'], 1)}"
    return ""


#: :func:`cpu_id` patterns and the short tags they give
_GENERATION_TAGS = (
    (r"family (\d+) model (\d+)", "f{}m{}"),
    (r"implementer 0x([0-9a-f]+) part 0x([0-9a-f]+) variant 0x([0-9a-f]+)", "i{}p{}v{}"),
    (r"cpufamily 0x([0-9a-f]+)", "cf{}"),
)


def generation_tag(cpu_id: str) -> str:
    """A short file-name tag of a :func:`cpu_id`: 'f26m2' (x86 family and model), 'i41pd40v1'
    (Arm implementer, part and variant), 'cf1b588bb3' (Apple cpufamily); '' for none."""
    for pattern, tag in _GENERATION_TAGS:
        m = re.search(pattern, cpu_id)
        if m:
            return tag.format(*m.groups())
    return ""


def cpu_tag() -> str:
    """A short file-name tag of this CPU's generation, e.g. 'avx512-vnni-f26m2' or
    'sve-i41pd40v1'."""
    isa = cpu_isa().replace("_", "-")
    return "-".join(x for x in (isa, generation_tag(cpu_id())) if x)


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
