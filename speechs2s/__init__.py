"""speechs2s: PyTorch toolkit for speech recognition (ASR) and speech synthesis (TTS)."""
__version__ = "0.1.0"
