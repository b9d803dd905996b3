"""Device and dtype checks shared by the command-line tools (``hybridstyle stylize`` and ``hybridstyle video``).

Torch is imported inside the checks, not here: the CLI imports this module while parsing, and ``--help`` stays fast.
"""

from __future__ import annotations

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
