"""Where to compute (``auto``, ``cpu``, ``cuda``) and in which number format to train.

**Precision** of training (``fp32``, ``bf16`` or ``auto``): ``bf16`` runs the training
forward pass under bfloat16 autocast on channels-last inputs; weights, optimiser, loss,
soft labels, gradients, attacks and every evaluation stay float32. ``auto`` chooses
``bf16`` only where the hardware computes bfloat16 natively (a CPU with AVX-512 BF16 or
AMX, a CUDA device with bfloat16 support) and float32 elsewhere: on a CPU without those
units bfloat16 is emulated and slower than float32 (docs/training.md).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from defdistill.names import Precision, values

PRECISIONS = values(Precision)
RESOLVED_PRECISIONS = ("fp32", "bf16")
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # /proc/cpuinfo names of the native units
CPUINFO = Path("/proc/cpuinfo")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` picks CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    return dev


def cpu_flags(cpuinfo: str | None = None) -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (``cpuinfo``: its text); empty if unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:  # not Linux
            return frozenset()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def machine(cpuinfo: str | None = None) -> dict[str, Any]:
    """What computed a run, recorded beside its timings: the CPU's model name (``/proc/cpuinfo``,
    or ``cpuinfo`` its text; else :func:`platform.processor`), the logical CPUs, whether it
    computes bfloat16 natively, and the GPU's name when CUDA is available."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            cpuinfo = ""
    names = [line.partition(":")[2].strip() for line in cpuinfo.splitlines()
             if line.partition(":")[0].strip() == "model name"]  # fmt: skip
    return {
        "cpu": names[0] if names else platform.processor() or "unknown",
        "cpus": os.cpu_count(),
        "cpu_native_bf16": cpu_has_native_bf16(cpuinfo or None),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def machine_label(found: dict[str, Any] | None = None) -> str:
    """:func:`machine` (or ``found``, a dict it returned) in a few words: the CPU's model, its
    logical CPUs and the GPU, e.g. ``AMD EPYC (2 CPUs)``; what every timing is named with."""
    found = machine() if found is None else found
    gpu = f", GPU {found['gpu']}" if found.get("gpu") else ""
    return f"{found.get('cpu') or 'an unnamed CPU'} ({found.get('cpus')} CPUs{gpu})"


def cpu_has_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX).

    Reads the flags of ``/proc/cpuinfo`` (or ``cpuinfo``, its text); where they are
    unreadable, asks torch's own CPU detection.
    """
    flags = cpu_flags(cpuinfo)
    if flags:
        return bool(flags & CPU_BF16_FLAGS)
    if cpuinfo is not None:
        return False
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own detection
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in probes)


def has_native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (CUDA: ``torch.cuda.is_bf16_supported()``)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """``fp32`` or ``bf16``: what ``precision`` (``fp32``, ``bf16``, ``auto``) means on ``device``.

    Raises:
        ValueError: an unknown precision, or ``bf16`` on a GPU without bfloat16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("precision 'bf16' needs bfloat16 support, which this GPU lacks; "
                         "use precision 'fp32' or 'auto'")  # fmt: skip
    return precision
