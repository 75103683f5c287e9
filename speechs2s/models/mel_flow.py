"""A flow-matching mel sharpener (conditional flow matching, Lipman et al. 2023; as in Matcha-TTS, Mehta et al. 2024).

An acoustic model trained with an L1/L2 loss outputs the mean of the spectra a phone might have: an over-smoothed
mel ``mu``. The flow learns to draw a sharp one instead. It moves a sample of ``N(mu, sigma^2 I)`` to the real
mel along a straight line, ``x_t = (1 - t) x_0 + t x_1`` for ``t`` in [0, 1], and a small network ``v(x_t, mu, t)``
learns the velocity ``x_1 - x_0`` (MSE over the valid frames). Synthesis integrates ``v`` from ``t = 0`` with a few
Euler steps, starting from ``mu + temperature * sigma * noise``. Starting at ``mu`` and not at pure noise (Matcha's
prior) leaves the flow only the residual detail to draw, so a few steps suffice.

The network: a 1x1 convolution of ``[x_t, mu]``, gated dilated residual convolutions (WaveNet style) with the time
embedding added before each, and a zero-initialised 1x1 convolution out, so an untrained flow returns its start.
"""

import torch
from torch import nn

from speechs2s.nn.attention import position_frequencies
from speechs2s.nn.masks import sequence_mask


def _time_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Flow times ``t (B,)`` in [0, 1] -> ``(B, dim)`` sines and cosines of ``1000 t`` at geometric frequencies."""
    angle = 1000.0 * t.float()[:, None] * position_frequencies(dim, t.device)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


class _GatedResidualBlock(nn.Module):
    """``x (B, C, T)`` + time ``(B, C)`` -> ``x + 1x1(tanh(a) * sigmoid(b))``, ``a, b`` from one dilated convolution."""

    def __init__(self, channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.time = nn.Linear(channels, channels)
        self.conv = nn.Conv1d(channels, 2 * channels, kernel_size, padding=dilation * (kernel_size // 2), dilation=dilation)
        self.out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, time: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        a, b = self.conv((x + self.time(time)[..., None]) * mask).chunk(2, dim=1)
        return x + self.out(torch.tanh(a) * torch.sigmoid(b)) * mask


class MelFlow(nn.Module):
    """The velocity network and the two uses of it: :meth:`loss` in training, :meth:`sample` at synthesis.
    Mels are ``(B, T, M)`` normalised log-mels, ``lengths (B,)`` their valid frames. ``layers`` blocks with
    dilations 1, 2, 4, 1, 2, 4, ... over ``channels``; ``sigma``: the start's standard deviation around ``mu``."""

    def __init__(self, n_mels: int, channels: int = 128, layers: int = 6, kernel_size: int = 3, sigma: float = 1.0):
        super().__init__()
        self.sigma = sigma
        self.inp = nn.Conv1d(2 * n_mels, channels, 1)
        self.time = nn.Sequential(nn.Linear(channels, channels), nn.SiLU(), nn.Linear(channels, channels))
        self.blocks = nn.ModuleList(_GatedResidualBlock(channels, kernel_size, 2 ** (i % 3)) for i in range(layers))
        self.out = nn.Conv1d(channels, n_mels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def velocity(self, x: torch.Tensor, mu: torch.Tensor, t: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``x, mu (B, T, M)``, ``t (B,)`` -> the velocity ``(B, T, M)``, 0 past each length."""
        mask = sequence_mask(lengths, x.size(1))[:, None, :].to(x.dtype)
        h = self.inp(torch.cat([x, mu], dim=-1).transpose(1, 2))
        time = self.time(_time_embedding(t, h.size(1)).to(h.dtype))
        for block in self.blocks:
            h = block(h, time, mask)
        return (self.out(h) * mask).transpose(1, 2)

    def loss(self, target: torch.Tensor, mu: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Flow-matching MSE of real mels ``target`` given ``mu`` (both ``(B, T, M)``), over valid frames. Times and
        starts are random; in eval mode they come from a fixed seed, so validation losses compare across checkpoints."""
        generator = None if self.training else torch.Generator(target.device).manual_seed(0)
        t = torch.rand(target.size(0), device=target.device, generator=generator)
        start = mu + self.sigma * torch.randn(mu.shape, device=mu.device, generator=generator).to(mu.dtype)
        x = start + t[:, None, None].to(mu.dtype) * (target - start)
        mask = sequence_mask(lengths, target.size(1))[..., None]
        error = (self.velocity(x, mu, t, lengths) - (target - start)).float().square()
        return (error * mask).sum() / (mask.sum() * target.size(2)).clamp(min=1)

    @torch.no_grad()
    def sample(self, mu: torch.Tensor, lengths: torch.Tensor, steps: int, temperature: float,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """A sharp mel ``(B, T, M)`` for ``mu`` in ``steps`` Euler steps from ``mu + temperature * sigma * noise``
        (``generator``: the noise's seed)."""
        noise = torch.randn(mu.shape, device=mu.device, generator=generator).to(mu.dtype)
        x = mu + temperature * self.sigma * noise
        for i in range(steps):
            t = torch.full((mu.size(0),), i / steps, device=mu.device)
            x = x + self.velocity(x, mu, t, lengths) / steps
        return x * sequence_mask(lengths, mu.size(1))[..., None].to(x.dtype)
