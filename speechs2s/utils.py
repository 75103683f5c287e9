"""Small shared helpers: device selection, tensor -> NumPy, atomic file replacement."""
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch


def select_device(name: str | None = None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None, CUDA if available else CPU."""
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
