"""Data augmentation: SpecAugment on features; speed, noise and reverberation on waveforms.

Every random choice draws from an optional ``torch.Generator`` so a seeded pipeline is reproducible.
"""
from dataclasses import dataclass

import torch
import torchaudio


@dataclass
class SpecAugment:
    """Frequency and time masking (Park et al., 2019) on one utterance's features ``(frames, M)``.

    ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
    ``time_width_ratio * frames`` frames are set to the utterance's mean value (a neutral level
    for log-mel features, which are normalised later inside the model). Returns a new tensor.
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width_ratio: float = 0.05

    def __call__(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        frames, bins = features.shape
        keep = torch.ones(frames, bins, dtype=torch.bool, device=features.device)
        for _ in range(self.freq_masks):
            start, stop = _random_span(bins, self.freq_width, generator)
            keep[:, start:stop] = False
        for _ in range(self.time_masks):
            start, stop = _random_span(frames, int(self.time_width_ratio * frames), generator)
            keep[start:stop, :] = False
        return torch.where(keep, features, features.mean())


def _random_span(size: int, max_width: int, generator: torch.Generator | None) -> tuple[int, int]:
    """``[start, stop)`` of width uniform in ``[0, min(max_width, size)]`` at a uniform position."""
    width = int(torch.randint(0, min(max_width, size) + 1, (), generator=generator))
    start = int(torch.randint(0, size - width + 1, (), generator=generator))
    return start, start + width


def speed_perturb(wav: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """Play ``wav`` ``(..., T)`` ``factor`` times faster, changing tempo and pitch together like
    Kaldi/sox ``speed``: resampled to ``sample_rate / factor`` and read at ``sample_rate``, so the
    result has about ``T / factor`` samples."""
    if factor == 1.0:
        return wav
    return torchaudio.functional.resample(wav, round(sample_rate * factor), sample_rate)


def add_noise(
    wav: torch.Tensor, snr_db: float, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``wav`` ``(T,)`` plus noise at a signal-to-noise ratio of ``snr_db`` decibels.

    ``noise`` ``(T_noise,)`` is a recording (e.g. MUSAN), looped if shorter and cut at a random
    offset; without it, white Gaussian noise is used.
    """
    if noise is None:
        noise = torch.randn(wav.shape, generator=generator).to(wav)
    else:
        noise = noise.to(wav).repeat(-(-wav.numel() // noise.numel()) + 1)
        offset = int(torch.randint(0, noise.numel() - wav.numel() + 1, (), generator=generator))
        noise = noise[offset : offset + wav.numel()]
    signal_power = wav.square().mean()
    noise_power = noise.square().mean().clamp(min=1e-10)
    return wav + noise * (signal_power / (noise_power * 10 ** (snr_db / 10))).sqrt()


def reverberate(wav: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve ``wav`` ``(T,)`` with a room impulse response ``rir`` ``(K,)``.

    The output ``(T,)`` stays time-aligned with the input (shifted back by the RIR's direct-path
    peak) and keeps the input's RMS level.
    """
    rir = rir.to(wav)
    peak = int(rir.abs().argmax())
    wet = torchaudio.functional.fftconvolve(wav, rir / rir.norm())[peak : peak + wav.numel()]
    return wet * (wav.square().mean() / wet.square().mean().clamp(min=1e-10)).sqrt()
