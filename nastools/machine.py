"""What machine this is: CPU model, cores, library versions (for tables and results)."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from typing import Any


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


def machine_info() -> dict[str, Any]:
    """A record of the machine and software a measurement was taken on."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_isa": cpu_isa(),
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
