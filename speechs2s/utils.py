"""Small shared helpers: device and thread selection, tensor -> NumPy, atomic file replacement."""
import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def select_device(name: str | torch.device | None = None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ... or a ``torch.device``) checked against this machine or,
    when None, CUDA if available else CPU. Every loader (``load_asr``, ``load_tts``, ...) uses it."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    from speechs2s.errors import SpeechS2SError

    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpeechS2SError(f"device {name!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SpeechS2SError(f"device {name!r} requested but CUDA is not available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SpeechS2SError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def free_cores(sample_seconds: float = 0.05) -> int:
    """CPU cores of this process's affinity mask that other processes leave free: the mask's size minus
    the cores' busy time over ``sample_seconds`` (two reads of ``/proc/stat``; a busy loop counts as one
    core wherever the scheduler moves it). Without ``/proc/stat`` (not Linux): every core."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    try:
        before = _cpu_ticks(cores)
        time.sleep(sample_seconds)
        after = _cpu_ticks(cores)
    except OSError:
        return len(cores)
    busy = sum((after[cpu][0] - before[cpu][0]) / max(after[cpu][1] - before[cpu][1], 1) for cpu in after)
    return max(1, len(cores) - int(busy + 0.5))


def _cpu_ticks(cores: set[int]) -> dict[int, tuple[int, int]]:
    """``{cpu: (busy ticks, all ticks)}`` since boot for the CPUs in ``cores``, from ``/proc/stat``."""
    ticks = {}
    with open("/proc/stat") as stat:
        for line in stat:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                counts = [int(value) for value in values[:8]]  # user nice system idle iowait irq softirq steal
                ticks[int(name[3:])] = (sum(counts) - counts[3] - counts[4], sum(counts))
    return ticks


def set_threads(threads: int | None = None) -> int:
    """Give torch ``threads`` CPU threads (the CLIs' ``--threads``); by default torch's own count capped to
    :func:`free_cores`. A thread that shares its core with a busy process stalls the others at every
    parallel op: beside one busy loop on 2 cores, a 2-minute file took 65.7 s with 2 threads and 3.3 s with
    1. Returns the count."""
    if threads is None:
        threads = torch.get_num_threads()
        if threads > 1:
            threads = min(threads, free_cores())
    torch.set_num_threads(threads)
    return threads


def to_numpy(array) -> np.ndarray:
    """A tensor (any device, float dtype, grad or not) or array-like -> float32 NumPy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float32)


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; it replaces ``path`` in one rename when the
    ``with`` block ends without an error, and is removed otherwise (an error, Ctrl-C), so ``path``
    is never seen half-written."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_error_reason(error: OSError) -> str:
    """Why a file could not be written, in a few words (for an ``error:`` line)."""
    if isinstance(error, FileExistsError):  # creating a folder met a file of that name
        return f"{error.filename} is not a folder"
    if isinstance(error, NotADirectoryError) and error.filename:  # ... or a file above it
        return f"{Path(error.filename).parent} is not a folder"
    return error.strerror or one_line(error)


def one_line(error: Exception) -> str:
    """An exception's message on one line (its type name when empty)."""
    return " ".join(str(error).split()) or type(error).__name__
