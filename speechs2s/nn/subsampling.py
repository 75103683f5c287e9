"""Convolutional time subsampling of feature sequences (Transformer / Conformer front-ends)."""
import torch
import torch.nn.functional as F
from torch import nn


class Conv2dSubsampling(nn.Module):
    """``n_layers`` Conv2d(3x3, stride 2) + ReLU over (time, mel), then a linear projection:
    ``(B, T, M) -> (B, T', D)`` with ``T' = T`` reduced ``2**n_layers`` times (``(T - 1) // 2`` per layer).

    ``channels`` sets the cost: the conv stack dominates CPU time for small models (keep it 8-32
    on CPU; 256 as in ESPnet for GPU training)."""

    def __init__(self, n_mels: int, d_model: int, channels: int, n_layers: int = 2):
        super().__init__()
        layers, in_channels, freq = [], 1, n_mels
        for _ in range(n_layers):
            layers += [nn.Conv2d(in_channels, channels, 3, stride=2), nn.ReLU()]
            in_channels, freq = channels, (freq - 1) // 2
        if freq < 1:
            raise ValueError(f"n_mels={n_mels} is too small for {n_layers} stride-2 convolutions")
        self.n_layers = n_layers
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Linear(channels * freq, d_model)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frame counts after subsampling, ``(B,) -> (B,)``; at least 1 so that an utterance shorter
        than the receptive field in a padded batch cannot produce an all-masked (NaN) attention row."""
        for _ in range(self.n_layers):
            lengths = (lengths - 1).div(2, rounding_mode="floor")
        return lengths.clamp(min=1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """``x (B, T, M)``, ``lengths (B,)`` -> ``(B, T', D)``, ``lengths (B,)``. A batch shorter than
        the receptive field, ``2**(n_layers + 1) - 1`` frames (7 for ×4, i.e. clips under ~70 ms), is
        zero-padded to it, giving one output frame."""
        x = F.pad(x, (0, 0, 0, max(0, 2 ** (self.n_layers + 1) - 1 - x.size(1))))
        x = self.convs(x[:, None])  # (B, C, T', F')
        return self.proj(x.transpose(1, 2).flatten(2)), self.output_lengths(lengths)
