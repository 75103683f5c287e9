"""Transformer TTS (Li et al. 2019, "Neural Speech Synthesis with Transformer Network").

Text: embedding -> 3 conv layers -> linear -> scaled positional encoding (learned ``alpha``) ->
pre-LN Transformer encoder. Mels: prenet(previous frame) -> linear -> scaled positional encoding
-> causal Transformer decoder with cross-attention -> ``r`` mel frames and ``r`` stop logits per
step; a conv postnet refines the whole spectrogram. Guided attention (Tachibana et al. 2018)
shapes chosen cross-attention heads into a diagonal; at synthesis those heads give the alignment
that :mod:`speechs2s.decode.tts` keeps monotonic.
"""
from dataclasses import dataclass, field

import torch
from torch import nn

from speechs2s.models.tts_blocks import (
    AttentionAcousticModel,
    AttentionLossConfig,
    Prenet,
    TransformerTextEncoder,
    TransformerTextEncoderConfig,
)
from speechs2s.nn.masks import key_padding_mask, sequence_mask
from speechs2s.nn.transformer import PositionalEncoding, TransformerDecoder


@dataclass
class TransformerTTSConfig(AttentionLossConfig, TransformerTextEncoderConfig):
    decoder_layers: int = 6
    prenet_dim: int = 256
    # Cross-attention heads under guided attention (and used as the alignment at synthesis):
    # explicit [decoder_layer, head] pairs (negative layers count from the end), or, when empty,
    # every head of the last ``guided_layers`` decoder layers.
    guided_heads: list[list[int]] = field(default_factory=list)
    guided_layers: int = 2

    def __post_init__(self):
        super().__post_init__()
        if not self.guided_heads and not 1 <= self.guided_layers <= self.decoder_layers:
            raise ValueError(f"guided_layers must be in 1..decoder_layers={self.decoder_layers}")
        for pair in self.guided_heads:
            if len(pair) != 2 or not (-self.decoder_layers <= pair[0] < self.decoder_layers
                                      and 0 <= pair[1] < self.n_heads):
                raise ValueError(f"guided_heads: {pair} is not a [decoder_layer, head] pair of this model")


class TransformerTTS(TransformerTextEncoder, AttentionAcousticModel):
    def __init__(self, config: TransformerTTSConfig):
        super().__init__(config)
        c = config
        self.init_text_encoder(c)
        self.prenet = Prenet(c.n_mels, c.prenet_dim)
        self.decoder_proj = nn.Linear(c.prenet_dim, c.d_model)
        self.decoder_position = PositionalEncoding(c.d_model, c.dropout, learned_scale=True)
        self.decoder = TransformerDecoder(c.decoder_layers, c.d_model, c.n_heads, c.d_ff, c.dropout)
        self.mel_proj = nn.Linear(c.d_model, c.n_mels * c.reduction_factor)
        self.stop_proj = nn.Linear(c.d_model, c.reduction_factor)
        pairs = c.guided_heads or [(layer, head) for layer in range(-c.guided_layers, 0) for head in range(c.n_heads)]
        self.guided_heads = [(layer % c.decoder_layers, head) for layer, head in pairs]

    def decode(self, previous, memory, memory_mask, cache=None, offset: int = 0, projected_memory=None):
        """``previous (B, S, M)`` frames before each step -> ``(frames (B, S * r, M), stop_logits
        (B, S * r), guided attention (B, G, S, L), cache)``; ``memory_mask`` broadcasts to ``(B, H, S, L)``;
        ``projected_memory``: ``decoder.project_memory(memory)`` computed once (then ``memory`` may be None)."""
        x = self.decoder_position(self.decoder_proj(self.prenet(previous)), offset)
        out, cache, weights = self.decoder(x, memory, memory_mask, cache, need_weights=True,
                                           projected_memory=projected_memory)
        B = out.size(0)
        attention = torch.stack([weights[layer][:, head] for layer, head in self.guided_heads], 1)
        return self.mel_proj(out).view(B, -1, self.n_mels), self.stop_proj(out).view(B, -1), attention, cache

    def teacher_forcing(self, tokens, token_lengths, previous):
        memory = self.encode(tokens, token_lengths)
        frames, stop_logits, attention, _ = self.decode(previous, memory, key_padding_mask(token_lengths, tokens.size(1)))
        return frames, stop_logits, attention

    # -- synthesis step protocol (see tts_blocks) --------------------------------------------------

    def start(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> dict:
        memory = self.encode(tokens, token_lengths)
        return dict(projected_memory=self.decoder.project_memory(memory),
                    memory_mask=sequence_mask(token_lengths, tokens.size(1)), cache=self.decoder.empty_cache(memory))

    def step(self, previous: torch.Tensor, state: dict, allowed: torch.Tensor):
        """``previous (B, M)`` -> ``(frames (B, r, M), stop_logits (B, r), alignment (B, L), state)``.
        ``allowed (B, L)`` restricts every cross-attention head to those keys."""
        mask = (allowed & state["memory_mask"])[:, None, None, :]
        frames, stop_logits, attention, cache = self.decode(previous[:, None], None, mask, state["cache"],
                                                            offset=state["cache"].size(2),
                                                            projected_memory=state["projected_memory"])
        return frames, stop_logits, attention[:, :, 0].mean(1), dict(state, cache=cache)
