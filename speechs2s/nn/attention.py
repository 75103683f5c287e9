"""Attention layers: multi-head (Transformer) and location-sensitive (LSTM encoder-decoders).

Masks are boolean, ``True`` = may attend (see :mod:`speechs2s.nn.masks`)."""
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

# cuDNN's fused attention builds a new execution plan for every new shape (milliseconds each on an
# H200), and speech batches and decoding steps keep changing shape; the other kernels do not.
SDPA_BACKENDS = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH]


def position_frequencies(dim: int, device=None) -> torch.Tensor:
    """``(dim // 2,)`` angular frequencies ``10000 ** (-2 i / dim)`` of sinusoidal and rotary position codes
    (Vaswani et al. 2017): one per pair of ``dim`` channels, geometric from 1 down to nearly 1/10000."""
    return torch.exp(torch.arange(0, dim - 1, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))


def rotary_embedding(length: int, dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary position embedding (Su et al. 2021, RoFormer) of positions ``0 .. length - 1`` for heads
    of ``dim`` (even) channels: ``(cos, sin)``, each ``(length, dim)``; channel ``i`` and ``i + dim/2``
    form a pair rotated by ``position * 10000 ** (-2 i / dim)``."""
    angles = torch.arange(length, device=device, dtype=torch.float32)[:, None] * position_frequencies(dim, device)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, rotary: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate ``x (..., L, dim)`` by :func:`rotary_embedding` ``(cos, sin)``: the dot product of a rotated
    query and key then depends on their positions only through their distance."""
    cos, sin = (t.to(x.dtype) for t in rotary)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention.

    Uses ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels) unless
    ``need_weights=True``, in which case the softmax weights are computed explicitly and returned
    (for alignment plots and guided-attention losses)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0, kv_dim: int | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        kv_dim = kv_dim or d_model
        self.n_heads, self.dropout = n_heads, dropout
        self.query = nn.Linear(d_model, d_model)
        self.key = nn.Linear(kv_dim, d_model)
        self.value = nn.Linear(kv_dim, d_model)
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, L, D) -> (B, H, L, D/H)``."""
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)

    def project_key_value(self, key, value) -> torch.Tensor:
        """``key/value (B, Lk, kv_dim)`` -> projected keys and values side by side ``(B, Lk, 2 * D)``
        for :meth:`attend`. A decoder projects a fixed memory once, and caches the projections of
        its past positions (concatenated along ``Lk``), instead of re-projecting them at every step."""
        return torch.cat([self.key(key), self.value(value)], dim=-1)

    def attend(self, query, key_value, mask=None, need_weights: bool = False, rotary=None):
        """``query (B, Lq, D)``, ``key_value (B, Lk, 2 * D)`` from :meth:`project_key_value`,
        ``mask`` bool broadcastable to ``(B, H, Lq, Lk)``, ``rotary``: :func:`rotary_embedding` ``(cos, sin)``
        of self-attention (``Lq == Lk``) to rotate queries and keys by their positions, or None
        -> ``(out (B, Lq, D), weights (B, H, Lq, Lk) or None)``."""
        q = self._heads(self.query(query))
        k, v = key_value.unflatten(-1, (2, self.n_heads, -1)).permute(2, 0, 3, 1, 4)  # (B, H, Lk, D/H) each
        if rotary is not None:
            q, k = apply_rotary(q, rotary), apply_rotary(k, rotary)
        dropout = self.dropout if self.training else 0.0
        if need_weights:
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = scores.float().softmax(dim=-1).to(q.dtype)
            context = F.dropout(weights, dropout, self.training) @ v
        else:
            weights = None
            with sdpa_kernel(SDPA_BACKENDS):
                context = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.out(context.transpose(1, 2).flatten(2)), weights

    def forward(self, query, key, value, mask=None, need_weights: bool = False, rotary=None):
        """``query (B, Lq, D)``, ``key/value (B, Lk, kv_dim)``, ``mask`` bool broadcastable to
        ``(B, H, Lq, Lk)``, ``rotary`` as in :meth:`attend` -> ``(out (B, Lq, D), weights (B, H, Lq, Lk) or None)``."""
        return self.attend(query, self.project_key_value(key, value), mask, need_weights, rotary)


class LocationSensitiveAttention(nn.Module):
    """Additive attention with location features (Chorowski et al. 2015; Tacotron 2).

    Energies ``e = w·tanh(W q + V m + U conv(location))`` where ``location (B, C, T)`` holds the
    previous attention weights and optionally their running sum (``C = location_channels``)."""

    def __init__(self, query_dim: int, memory_dim: int, attention_dim: int = 128,
                 location_channels: int = 2, location_filters: int = 32, location_kernel: int = 31):
        super().__init__()
        self.query_proj = nn.Linear(query_dim, attention_dim, bias=False)
        self.memory_proj = nn.Linear(memory_dim, attention_dim, bias=True)
        self.location_conv = nn.Conv1d(location_channels, location_filters, location_kernel,
                                       padding=location_kernel // 2, bias=False)
        self.location_proj = nn.Linear(location_filters, attention_dim, bias=False)
        self.energy = nn.Linear(attention_dim, 1, bias=False)

    def process_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """``memory (B, T, memory_dim) -> (B, T, attention_dim)``; compute once per utterance."""
        return self.memory_proj(memory)

    def forward(self, query, memory, processed_memory, location, mask):
        """``query (B, query_dim)``, ``memory (B, T, memory_dim)``, ``processed_memory (B, T, A)``,
        ``location (B, C, T)``, ``mask (B, T)`` bool valid frames
        -> ``(context (B, memory_dim), weights (B, T))``."""
        location_features = self.location_proj(self.location_conv(location).transpose(1, 2))
        energies = self.energy(torch.tanh(
            self.query_proj(query)[:, None, :] + processed_memory + location_features)).squeeze(-1)
        weights = energies.float().masked_fill(~mask, float("-inf")).softmax(dim=-1).to(memory.dtype)
        context = torch.bmm(weights[:, None, :], memory).squeeze(1)
        return context, weights
