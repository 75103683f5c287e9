"""Small shared helpers: device selection."""
import torch


def select_device(name: str | None = None) -> torch.device:
    """``name`` ("cpu", "cuda", "cuda:1", ...) or, when None, CUDA if available else CPU."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from speechs2s.errors import SpeechS2SError

        raise SpeechS2SError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)
