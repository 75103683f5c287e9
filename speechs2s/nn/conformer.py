"""Conformer encoder blocks (Gulati et al. 2020, "Conformer: Convolution-augmented Transformer for
Speech Recognition"), with rotary positions in self-attention.

A block, pre-LN throughout::

    x = x + 1/2 FeedForward(x)          macaron half-step feed-forward (SiLU)
    x = x + SelfAttention(x)            multi-head, queries and keys rotated by their positions
    x = x + Convolution(x)              pointwise -> GLU -> depthwise (kernel k) -> norm -> SiLU -> pointwise
    x = x + 1/2 FeedForward(x)
    x = LayerNorm(x)

Padded frames never reach valid ones: attention masks them as keys, the depthwise convolution sees
them as zeros, and the convolution module's norm takes its batch statistics from valid frames only.
For streaming (chunk-wise attention masks) the depthwise convolution can be causal: it then sees
the ``kernel - 1`` frames before a frame instead of ``kernel // 2`` on either side.
"""
from typing import Literal

import torch
from torch import nn

from speechs2s.nn.attention import MultiHeadAttention, rotary_embedding
from speechs2s.nn.masks import sequence_mask
from speechs2s.nn.transformer import FeedForward


class ConvolutionModule(nn.Module):
    """``LayerNorm -> Linear(D, 2D) -> GLU -> depthwise Conv1d(kernel) -> BatchNorm|LayerNorm -> SiLU ->
    Linear(D, D) -> Dropout`` (the pointwise convolutions are per-frame linear layers); ``causal``: the
    depthwise convolution sees only the current and past frames."""

    def __init__(self, d_model: int, kernel_size: int, dropout: float = 0.0, norm: Literal["batch", "layer"] = "batch",
                 causal: bool = False):
        super().__init__()
        self.input_norm = nn.LayerNorm(d_model)
        self.pointwise_in = nn.Linear(d_model, 2 * d_model)
        self.causal_padding = kernel_size - 1 if causal else 0  # past frames padded on the left (causal)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel_size, padding=0 if causal else kernel_size // 2, groups=d_model)
        self.norm = nn.BatchNorm1d(d_model) if norm == "batch" else nn.LayerNorm(d_model)
        self.pointwise_out = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``x (B, T, D)``, ``valid (B, T)`` bool -> ``(B, T, D)``, zero on padded frames."""
        h = nn.functional.glu(self.pointwise_in(self.input_norm(x)), dim=-1)
        h = h.masked_fill(~valid[..., None], 0.0).transpose(1, 2)
        h = self.depthwise(nn.functional.pad(h, (self.causal_padding, 0))).transpose(1, 2)
        normed = self.norm(h[valid])  # (frames, D): statistics of valid frames only
        h = normed.new_zeros(h.shape).index_put((valid,), normed)
        return self.dropout(self.pointwise_out(nn.functional.silu(h)))


class ConformerBlock(nn.Module):
    """One Conformer block (see the module docstring)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, kernel_size: int, dropout: float = 0.0,
                 conv_norm: Literal["batch", "layer"] = "batch", causal_conv: bool = False):
        super().__init__()
        self.ff_in_norm = nn.LayerNorm(d_model)
        self.ff_in = FeedForward(d_model, d_ff, dropout, activation=nn.SiLU)
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.convolution = ConvolutionModule(d_model, kernel_size, dropout, conv_norm, causal_conv)
        self.ff_out_norm = nn.LayerNorm(d_model)
        self.ff_out = FeedForward(d_model, d_ff, dropout, activation=nn.SiLU)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, valid, rotary, mask):
        """``x (B, T, D)``, ``valid (B, T)`` bool, ``rotary``: :func:`rotary_embedding` of ``T`` positions,
        ``mask`` bool self-attention mask broadcastable to ``(B, H, T, T)`` -> ``(B, T, D)``."""
        x = x + 0.5 * self.dropout(self.ff_in(self.ff_in_norm(x)))
        h = self.attention_norm(x)
        x = x + self.dropout(self.attention(h, h, h, mask, rotary=rotary)[0])
        x = x + self.convolution(x, valid)
        x = x + 0.5 * self.dropout(self.ff_out(self.ff_out_norm(x)))
        return self.norm(x)


class ConformerEncoder(nn.Module):
    """Dropout on the (subsampled) input, then a stack of :class:`ConformerBlock`; every block ends in a
    LayerNorm, so no final norm is needed."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, kernel_size: int,
                 dropout: float = 0.0, conv_norm: Literal["batch", "layer"] = "batch", causal_conv: bool = False):
        super().__init__()
        self.head_dim = d_model // n_heads
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(ConformerBlock(d_model, n_heads, d_ff, kernel_size, dropout, conv_norm, causal_conv)
                                    for _ in range(n_layers))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, keep: list[int] = (), chunks: torch.Tensor | None = None):
        """``x (B, T, D)``, ``lengths (B,)``, ``chunks``: a ``(T, T)`` :func:`chunk_mask` or None (full context)
        -> ``(x (B, T, D), [outputs (B, T, D) of the blocks numbered in keep, 1-based]``), e.g. for
        intermediate CTC losses."""
        valid = sequence_mask(lengths, x.size(1))
        mask = valid[:, None, None, :] if chunks is None else valid[:, None, None, :] & chunks
        rotary = rotary_embedding(x.size(1), self.head_dim, x.device)
        x, kept = self.dropout(x), []
        for number, layer in enumerate(self.layers, start=1):
            x = layer(x, valid, rotary, mask)
            if number in keep:
                kept.append(x)
        return x, kept
