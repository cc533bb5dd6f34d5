"""Hand-written plumbing (not exported from a notebook): pick the device, seed everything, print versions."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

from dsmini_helpers.profiles import get_profile


def get_device(prefer: str | None = None) -> torch.device:
    """CUDA, then Apple MPS, then CPU; `prefer` or $DSMINI_DEVICE overrides (e.g. "cpu")."""
    prefer = prefer or os.environ.get("DSMINI_DEVICE")
    if prefer:
        return torch.device(prefer)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def synchronize(device: torch.device | str) -> None:
    """Wait until `device` has finished its queued work, so a wall-clock timer measures it (no-op on the CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and PyTorch (all devices) so a chapter prints the same numbers each run."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def describe_environment() -> str:
    """One line with the versions and the device, printed once at the top of each chapter."""
    device = get_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (
        f"python {sys.version.split()[0]} | torch {torch.__version__} | device {name} | "
        f"profile {get_profile().name} | threads {torch.get_num_threads()}"
    )


def peak_memory_mb() -> float:
    """This process's peak resident memory in MB (nan where the system cannot say).

    On Linux `ru_maxrss` also counts what a process inherited from the program that started it (a kernel
    started by `jupyter-book` reports the build's peak), so read the process's own high-water mark, VmHWM.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        pass
    try:
        import resource  # Unix only
    except ImportError:
        return float("nan")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**2 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, kilobytes elsewhere
