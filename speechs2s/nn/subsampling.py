"""Convolutional time subsampling of feature sequences (Transformer / Conformer front-ends)."""
import torch
import torch.nn.functional as F
from torch import nn

# (kernel, stride) of each Conv2d for a subsampling factor (×6 = 2 × 3, as in ESPnet's Conv2dSubsampling6)
CONV_LAYERS = {4: [(3, 2), (3, 2)], 6: [(3, 2), (5, 3)], 8: [(3, 2), (3, 2), (3, 2)]}


class Conv2dSubsampling(nn.Module):
    """Conv2d + ReLU layers over (time, mel), then a linear projection: ``(B, T, M) -> (B, T', D)`` with
    ``T`` reduced ``factor`` times (4: two 3x3 stride-2 layers, ``T' = ((T - 1) // 2 - 1) // 2``;
    6: 3x3 stride 2 then 5x5 stride 3; 8: three 3x3 stride 2).

    ``channels`` sets the cost: the conv stack dominates CPU time for small models (keep it 8-32
    on CPU; 256 as in ESPnet for GPU training)."""

    def __init__(self, n_mels: int, d_model: int, channels: int, factor: int = 4):
        super().__init__()
        if factor not in CONV_LAYERS:
            raise ValueError(f"subsampling factor must be one of {', '.join(map(str, CONV_LAYERS))}, got {factor}")
        self.factor, self.kernels_strides = factor, CONV_LAYERS[factor]
        layers, in_channels, freq = [], 1, n_mels
        for kernel, stride in self.kernels_strides:
            layers += [nn.Conv2d(in_channels, channels, kernel, stride=stride), nn.ReLU()]
            in_channels, freq = channels, (freq - kernel) // stride + 1
        if freq < 1:
            raise ValueError(f"n_mels={n_mels} is too small for ×{factor} convolutional subsampling")
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * freq, d_model)
        self.receptive_field, step = 1, 1  # input frames seen by one output frame; input frames per step
        for kernel, stride in self.kernels_strides:
            self.receptive_field, step = self.receptive_field + (kernel - 1) * step, step * stride

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts after subsampling, ``(B,) -> (B,)``; at least 1 so that an utterance shorter
        than the receptive field in a padded batch cannot produce an all-masked (NaN) attention row."""
        for kernel, stride in self.kernels_strides:
            lengths = (lengths - kernel).div(stride, rounding_mode="floor") + 1
        return lengths.clamp(min=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """``x (B, T, M)``, ``lengths (B,)`` -> ``(B, T', D)``, ``lengths (B,)``. A batch shorter than
        the receptive field (7 frames for ×4, 11 for ×6, 15 for ×8, i.e. clips under ~70-150 ms) is
        zero-padded to it, giving one output frame."""
        x = F.pad(x, (0, 0, 0, max(0, self.receptive_field - x.size(1))))
        x = self.convs(x[:, None])  # (B, C, T', F')
        return self.proj(x.transpose(1, 2).flatten(2)), self.output_lengths(lengths)
