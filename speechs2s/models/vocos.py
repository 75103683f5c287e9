"""Vocos generator (Siuzdak, 2023): the waveform from a spectrum predicted at frame rate.

log-mel (B, M, frames) -> Conv1d -> ConvNeXt blocks -> Linear -> per frame ``n_fft // 2 + 1`` log
magnitudes and phases -> complex STFT -> inverse STFT (hop ``hop_length``) -> wav (B, 1, (frames - 1) * hop)

Every layer runs at the frame rate (86 frames/s at 22.05 kHz, hop 256), not at the sample rate as
HiFi-GAN's upsampling convolutions do, so it is far cheaper to train and to run on a CPU; the inverse
STFT places the samples. Trained as a GAN like HiFi-GAN (:class:`speechs2s.models.vocoder.Vocos`).
"""
import torch
import torch.nn.functional as F
from torch import nn


class ConvNeXtBlock(nn.Module):
    """``(B, C, T) -> (B, C, T)``: depthwise conv (kernel ``kernel_size``), LayerNorm, pointwise
    ``C -> hidden -> C`` with GELU, scaled by a learned per-channel ``gamma`` (starts small), residual."""

    def __init__(self, channels: int, hidden: int, kernel_size: int, layer_scale: float):
        super().__init__()
        self.depthwise = nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2, groups=channels)
        self.norm = nn.LayerNorm(channels, eps=1e-6)
        self.expand = nn.Linear(channels, hidden)
        self.project = nn.Linear(hidden, channels)
        self.gamma = nn.Parameter(torch.full((channels,), layer_scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.depthwise(x).transpose(1, 2))
        y = self.project(F.gelu(self.expand(y))) * self.gamma
        return x + y.transpose(1, 2)


class VocosGenerator(nn.Module):
    """``mel (B, M, frames) -> wav (B, 1, (frames - 1) * hop_length)`` in [-1, 1] (clipped), through an
    inverse STFT of ``n_fft`` points with a Hann window of ``n_fft`` (frame ``i`` centred on sample ``i * hop``)."""

    def __init__(self, n_mels: int, n_fft: int, hop_length: int, channels: int, hidden: int, layers: int,
                 kernel_size: int = 7):
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.embed = nn.Conv1d(n_mels, channels, kernel_size, padding=kernel_size // 2)
        self.norm_in = nn.LayerNorm(channels, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(channels, hidden, kernel_size, 1.0 / layers) for _ in range(layers))
        self.norm_out = nn.LayerNorm(channels, eps=1e-6)
        self.head = nn.Linear(channels, n_fft + 2)  # log magnitude and phase of n_fft // 2 + 1 bins
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.norm_in(self.embed(mel).transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        log_magnitude, phase = self.head(self.norm_out(x.transpose(1, 2))).float().chunk(2, dim=-1)  # (B, T, F) each
        spectrum = torch.polar(log_magnitude.clamp(max=7.0).exp(), phase).transpose(1, 2)  # (B, F, T)
        wav = torch.istft(spectrum, self.n_fft, self.hop_length, self.n_fft, self.window, center=True)
        return wav.clamp(-1.0, 1.0).unsqueeze(1)
