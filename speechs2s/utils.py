"""Small shared helpers: device selection, tensor -> NumPy."""
import numpy as np
import torch


def select_device(name: str | None = None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None, CUDA if available else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from speechs2s.errors import SpeechS2SError

        raise SpeechS2SError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def to_numpy(array) -> np.ndarray:
    """A tensor (any device, float dtype, grad or not) or array-like -> float32 NumPy array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    return np.asarray(array, dtype=np.float32)
