"""speechs2s: PyTorch toolkit for speech recognition (ASR) and speech synthesis (TTS).

>>> import speechs2s
>>> speechs2s.load_asr("default").transcribe("speech.wav").text
>>> wav, sample_rate = speechs2s.load_tts("default").synthesize("Hello there.")
"""
import importlib

__version__ = "0.1.0"

# public name -> module defining it; imported on first use so that ``import speechs2s`` stays fast
_LAZY = {"load_asr": "speechs2s.asr", "load_tts": "speechs2s.tts", "load_vocoder": "speechs2s.vocoder",
         "load_lm": "speechs2s.lm"}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'speechs2s' has no attribute {name!r}")
