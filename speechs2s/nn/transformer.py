"""Pre-LayerNorm Transformer blocks and sinusoidal positional encoding, shared by ASR and TTS models.

Pre-LN (``x + f(LayerNorm(x))``, final LayerNorm after the stack) trains stably without warmup
tricks at depth. Decoders are causal and support incremental decoding with a cache of the
self-attention keys and values of past positions, shaped ``(B, n_layers, L_past, 2 * D)``, and
the cross-attention keys/values of the memory projected once (``TransformerDecoder.project_memory``),
so a step projects only its new positions."""

import torch
from torch import nn

from speechs2s.nn.attention import MultiHeadAttention, position_frequencies
from speechs2s.nn.masks import causal_mask


def sinusoids(length: int, dim: int, offset: int = 0, device=None) -> torch.Tensor:
    """``(length, dim)`` sinusoidal encodings of positions ``offset .. offset + length - 1``
    (Vaswani et al.: sin on even channels, cos on odd ones)."""
    position = torch.arange(offset, offset + length, device=device, dtype=torch.float32)[:, None]
    frequency = position_frequencies(dim, device)
    encoding = torch.zeros(length, dim, device=device)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding


class PositionalEncoding(nn.Module):
    """``x (B, T, D) -> dropout(x * input_scale + alpha * PE)``.

    ``input_scale`` is e.g. ``sqrt(D)`` for token embeddings (Vaswani et al.); ``learned_scale=True``
    makes ``alpha`` a trained scalar initialised to 1 (Transformer-TTS "scaled positional encoding")."""

    def __init__(self, d_model: int, dropout: float = 0.0, input_scale: float = 1.0, learned_scale: bool = False):
        super().__init__()
        self.d_model, self.input_scale = d_model, input_scale
        self.alpha = nn.Parameter(torch.ones(1)) if learned_scale else None
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """``offset``: position of ``x[:, 0]`` (incremental decoding)."""
        encoding = sinusoids(x.size(1), self.d_model, offset, x.device).to(x.dtype)
        if self.alpha is not None:
            encoding = self.alpha * encoding
        return self.dropout(x * self.input_scale + encoding)


class FeedForward(nn.Sequential):
    """Position-wise ``Linear(D, d_ff) -> activation (ReLU; SiLU in Conformers) -> Dropout -> Linear(d_ff, D)``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: type[nn.Module] = nn.ReLU):
        super().__init__(nn.Linear(d_model, d_ff), activation(), nn.Dropout(dropout), nn.Linear(d_ff, d_model))


class EncoderLayer(nn.Module):
    """Pre-LN self-attention + feed-forward block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.attention_norm = nn.LayerNorm(d_model)
        self.attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None, need_weights: bool = False):
        """``x (B, T, D)``, ``mask`` broadcastable to ``(B, H, T, T)`` -> ``(x, weights (B, H, T, T) or None)``."""
        h = self.attention_norm(x)
        h, weights = self.attention(h, h, h, mask, need_weights)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.ff_norm(x))), weights


class DecoderLayer(nn.Module):
    """Pre-LN causal self-attention + cross-attention over a memory + feed-forward block."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0, memory_dim: int | None = None):
        super().__init__()
        self.self_attention_norm = nn.LayerNorm(d_model)
        self.self_attention = MultiHeadAttention(d_model, n_heads, dropout)
        self.cross_attention_norm = nn.LayerNorm(d_model)
        self.cross_attention = MultiHeadAttention(d_model, n_heads, dropout, kv_dim=memory_dim)
        self.ff_norm = nn.LayerNorm(d_model)
        self.ff = FeedForward(d_model, d_ff, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, memory_key_value, memory_mask=None, self_mask=None, past=None, need_weights: bool = False):
        """``x (B, Lq, D)`` new positions, ``memory_key_value (B, T, 2 * D)`` the memory projected by
        ``cross_attention.project_key_value``, ``memory_mask`` broadcastable to ``(B, H, Lq, T)``,
        ``self_mask`` to ``(B, H, Lq, L_past + Lq)``, ``past (B, L_past, 2 * D)`` self-attention keys
        and values of earlier positions or None
        -> ``(x, self-attention keys and values (B, L_past + Lq, 2 * D), cross weights (B, H, Lq, T) or None)``."""
        h = self.self_attention_norm(x)
        key_value = self.self_attention.project_key_value(h, h)
        if past is not None:
            key_value = torch.cat([past, key_value], dim=1)
        x = x + self.dropout(self.self_attention.attend(h, key_value, self_mask)[0])
        h, weights = self.cross_attention.attend(self.cross_attention_norm(x), memory_key_value, memory_mask, need_weights)
        x = x + self.dropout(h)
        return x + self.dropout(self.ff(self.ff_norm(x))), key_value, weights


class TransformerEncoder(nn.Module):
    """Stack of pre-LN :class:`EncoderLayer` with a final LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, x, mask=None, need_weights: bool = False):
        """``x (B, T, D)``, ``mask`` e.g. ``key_padding_mask(lengths)`` -> ``(x (B, T, D), weights)``
        where ``weights`` is a list of ``(B, H, T, T)`` per layer when ``need_weights`` else ``[]``."""
        all_weights = []
        for layer in self.layers:
            x, weights = layer(x, mask, need_weights)
            if need_weights:
                all_weights.append(weights)
        return self.norm(x), all_weights


class TransformerDecoder(nn.Module):
    """Stack of causal pre-LN :class:`DecoderLayer` with a final LayerNorm."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int, dropout: float = 0.0,
                 memory_dim: int | None = None):
        super().__init__()
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout, memory_dim) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)

    def empty_cache(self, memory: torch.Tensor) -> torch.Tensor:
        """An empty incremental-decoding cache ``(B, n_layers, 0, 2 * D)`` for a batch of ``memory``."""
        d_model = self.norm.normalized_shape[0]
        return memory.new_zeros(memory.size(0), len(self.layers), 0, 2 * d_model)

    def project_memory(self, memory: torch.Tensor) -> torch.Tensor:
        """``memory (B, T, memory_dim)`` -> every layer's cross-attention keys and values
        ``(B, n_layers, T, 2 * D)``; pass it as ``projected_memory`` when decoding step by step."""
        return torch.stack([layer.cross_attention.project_key_value(memory, memory) for layer in self.layers], dim=1)

    def forward(self, x, memory, memory_mask=None, cache=None, need_weights: bool = False, projected_memory=None):
        """``x (B, L, D)`` (already embedded and position-encoded), ``memory (B, T, memory_dim)``,
        ``memory_mask`` e.g. ``key_padding_mask(memory_lengths)``; ``cache (B, n_layers, L_past, 2 * D)``
        from a previous call when ``x`` holds only the new positions ``L_past ..``;
        ``projected_memory``: ``project_memory(memory)`` computed once (then ``memory`` may be None)
        -> ``(x (B, L, D), new cache (B, n_layers, L_past + L, 2 * D), cross weights)`` where cross weights
        is a list of ``(B, H, L, T)`` per layer when ``need_weights`` else ``[]``.

        Self-attention is causal; padded positions at the end of ``x`` need no extra mask."""
        if projected_memory is None:
            projected_memory = self.project_memory(memory)
        past_len = 0 if cache is None else cache.size(2)
        # A single new position may attend to every key: no mask (faster attention kernels).
        self_mask = causal_mask(x.size(1), past_len + x.size(1), x.device) if x.size(1) > 1 else None
        new_cache, all_weights = [], []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else cache[:, i]
            x, key_value, weights = layer(x, projected_memory[:, i], memory_mask, self_mask, past, need_weights)
            new_cache.append(key_value)
            if need_weights:
                all_weights.append(weights)
        return self.norm(x), torch.stack(new_cache, dim=1), all_weights
