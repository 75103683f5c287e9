"""An adversarial mel loss for text-to-mel models (GANSpeech, Multi-SpectroGAN style).

The L1/L2 mel loss is minimised by the mean of the plausible spectra of a phone, an over-smoothed
mel (muffled after Griffin-Lim). A discriminator that tells patches of real (frames x mel bins)
from generated ones rewards the fine spectral and temporal structure the mean loses. It trains as
the GAN vocoders do (:func:`speechs2s.models.vocoder.gan_losses`: LSGAN plus feature matching, one
backward giving each network only its own gradients), on a random window of each item's valid frames.
"""
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from speechs2s.models.vocoder import scan_convs


class MelDiscriminator(nn.Module):
    """Four weight-normed 3x3 2-D convolutions with leaky ReLU over a ``(B, frames, M)`` mel, ``channels / 4``,
    ``/ 2``, ``channels`` and ``channels`` wide, strided x2 along the mel bins by the first three and along
    time by the second and third, then a 3x3 convolution to one logit per patch: ``(B, frames, M)`` ->
    ``[(logits (B, N), feature maps)]``, one discriminator in the vocoders' format (61 K weights at 64)."""

    def __init__(self, channels: int = 64):
        super().__init__()
        widths = [1, channels // 4, channels // 2, channels, channels]
        strides = [(1, 2), (2, 2), (2, 2), (1, 1)]
        self.convs = nn.ModuleList(weight_norm(nn.Conv2d(c_in, c_out, 3, stride, padding=1))
                                   for c_in, c_out, stride in zip(widths, widths[1:], strides))
        self.conv_post = weight_norm(nn.Conv2d(channels, 1, 3, padding=1))

    def forward(self, mels: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [scan_convs(self, mels.unsqueeze(1))]


def random_windows(real: torch.Tensor, fake: torch.Tensor, lengths: torch.Tensor,
                   frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same random window of ``S = min(frames, shortest length)`` valid frames of each item of ``real``
    and ``fake`` ``(B, T, M)`` -> two ``(B, S, M)``: the discriminator never sees padding."""
    size = min(frames, int(lengths.min()))
    starts = (torch.rand(lengths.shape, dtype=torch.float64, device=lengths.device) * (lengths - size + 1)).long()
    index = (starts[:, None] + torch.arange(size, device=lengths.device))[..., None].expand(-1, -1, real.size(2))
    return real.gather(1, index), fake.gather(1, index)
