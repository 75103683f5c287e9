"""Vocoder API: ``load_vocoder(...)`` -> a vocoder with ``generate(log_mel) -> wav``.

>>> vocoder = load_vocoder("griffin-lim")        # or a HiFi-GAN checkpoint folder
>>> wav = vocoder.generate(mel)                   # (frames, M) raw LogMel -> (frames * hop,)
"""
from pathlib import Path

import torch

from speechs2s.audio import TTS_FEATURES, FeatureConfig
from speechs2s.errors import ConfigError
from speechs2s.models.vocoder import GANVocoder, GriffinLim


def load_vocoder(name_or_dir: str | Path = "griffin-lim", device: str | torch.device | None = None,
                 features: FeatureConfig | None = None) -> GriffinLim | GANVocoder:
    """``"griffin-lim"`` or a GAN vocoder checkpoint (HiFi-GAN or Vocos; directory, training ``out_dir`` or bundled name)
    -> a vocoder on ``device`` (default: CUDA if available), ready for inference.

    ``features`` are those of the mels you will feed (default ``TTS_FEATURES``); a HiFi-GAN
    trained on other features raises ``ConfigError`` instead of producing noise.
    """
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device

    device, features = select_device(device), features or TTS_FEATURES
    if str(name_or_dir) == "griffin-lim":
        return GriffinLim(features).to(device)
    model, _, _ = load_checkpoint(name_or_dir, device, task="vocoder")
    if model.features != features:
        raise ConfigError(f"{name_or_dir}: vocoder trained on features {model.features.to_dict()}, "
                          f"but the mels have {features.to_dict()}")
    return model.for_inference()
