"""Device and dtype checks shared by the command-line tools (``hybridstyle stylize`` and ``hybridstyle video``), and
the app's choice of dtype.

Torch is imported inside the checks, not here: the CLI imports this module while parsing, and ``--help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def check_device(name: str) -> torch.device:
    """The torch device ``name``, if it exists on this machine; otherwise a ValueError listing the ones that do."""
    import torch

    available = ["cpu"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        available.append("mps")
    hint = f"devices here: {', '.join(available)}; pass e.g. --device cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"--device {name!r} is not a torch device name; {hint}") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this PyTorch build has no CUDA support" if torch.version.cuda is None else "no CUDA GPU was found"
            raise ValueError(f"--device {name}: CUDA is not available ({why}); {hint}")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA devices; {hint}")
        return device
    backend = getattr(torch.backends, device.type, None) or getattr(torch, device.type, None)
    is_available = getattr(backend, "is_available", None)
    if not (callable(is_available) and is_available()):
        raise ValueError(f"--device {name}: {device.type} is not available on this machine; {hint}")
    return device


def check_dtype(device: torch.device, dtype_name: str) -> None:
    """A ValueError for a dtype this device runs too slowly to be useful (float16 on a CPU)."""
    if device.type == "cpu" and dtype_name == "float16":
        # CPUs have no fast float16 convolutions: one image took over 11 minutes (bfloat16: 15 s).
        raise ValueError("--dtype float16 is extremely slow on a CPU (minutes per image); pass --dtype bfloat16 (half the "
                         "memory of float32, CPU-friendly) or --dtype float32, or use float16 with --device cuda")


SERVING_DTYPES = ("auto", "float32", "bfloat16", "float16")
# CPU flags of native bfloat16 matrix arithmetic (AVX512-BF16, AMX). Without them oneDNN emulates bfloat16 and a
# stylization is slower than in float32 (1.7x on one such CPU); with them, hybridstyle-base at 512 px takes 0.84 s
# instead of 1.90 s, its output 51 dB PSNR from float32's and its judged style distance the same (8 held-out pairs).
FAST_BFLOAT16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_fast_bfloat16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (``FAST_BFLOAT16_CPU_FLAGS``); ``False`` where that cannot be read."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in FAST_BFLOAT16_CPU_FLAGS)


def serving_dtype(device: torch.device | str, choice: str = "auto") -> torch.dtype:
    """The dtype to serve a model in on ``device``: ``choice``, or for ``"auto"`` bfloat16 on a CPU that computes it
    natively and float32 everywhere else (float16 on a GPU is the user's call: some models overflow in it).

    Parameters:
        device: where the model runs.
        choice: one of ``SERVING_DTYPES``.
    """
    import torch

    if choice not in SERVING_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(SERVING_DTYPES)}, got {choice!r}")
    device = torch.device(device)
    if choice == "auto":
        return torch.bfloat16 if device.type == "cpu" and cpu_has_fast_bfloat16() else torch.float32
    check_dtype(device, choice)
    return getattr(torch, choice)
