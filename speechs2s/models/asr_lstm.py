"""Listen, Attend and Spell (Chan et al. 2016) with location-aware attention and an optional CTC head.

log-mels (B, T, 80) -> normalise -> BiLSTM, then pyramidal BiLSTMs that concatenate frame pairs
(time ÷2 each) -> enc (B, T / 2**reduction_layers, 2H) -> CTC head
LSTM decoder, per step: [embedding(prev token); previous context] -> LSTM -> query
-> location-aware attention over enc -> context -> Linear([query; context]) -> next-token logits
"""
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from speechs2s.models.asr_base import ASRHeadConfig, ASRModel
from speechs2s.nn import LocationSensitiveAttention, sequence_mask


@dataclass
class LSTMASRConfig(ASRHeadConfig):
    """Defaults are the "base" size (~15M params); ``LSTMASRConfig.preset("tiny", vocab_size=...)``
    trains on CPU in minutes."""

    encoder_hidden: int = 320       # per direction
    encoder_layers: int = 4
    reduction_layers: int = 2       # layers 1..reduction_layers halve the frame rate (×4 in all)
    embedding_dim: int = 256
    decoder_hidden: int = 512
    decoder_layers: int = 1
    attention_dim: int = 256
    location_filters: int = 32
    location_kernel: int = 15
    dropout: float = 0.2

    PRESETS: ClassVar[dict] = {
        "tiny": {"encoder_hidden": 96, "encoder_layers": 3, "reduction_layers": 2, "embedding_dim": 64,
                 "decoder_hidden": 192, "decoder_layers": 1, "attention_dim": 96, "location_filters": 16,
                 "dropout": 0.1},
        "base": {"encoder_hidden": 320, "encoder_layers": 4, "reduction_layers": 2, "embedding_dim": 256,
                 "decoder_hidden": 512, "decoder_layers": 1, "attention_dim": 256, "location_filters": 32,
                 "dropout": 0.2},
    }

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.reduction_layers < self.encoder_layers:
            raise ValueError(f"reduction_layers must be in [0, encoder_layers), got {self.reduction_layers}")
        if self.bias_phrases:
            raise ValueError("bias_phrases needs a Transformer decoder (transformer_asr or conformer_asr)")


class PyramidalBiLSTM(nn.Module):
    """BiLSTM stack; before layers ``1..reduction_layers`` adjacent frames are concatenated (time ÷2)."""

    def __init__(self, input_dim: int, hidden: int, n_layers: int, reduction_layers: int, dropout: float):
        super().__init__()
        self.reduction_layers = reduction_layers
        self.layers = nn.ModuleList(
            nn.LSTM(input_dim if i == 0 else 2 * hidden * (2 if i <= reduction_layers else 1),
                    hidden, batch_first=True, bidirectional=True)
            for i in range(n_layers))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """``x (B, T, input_dim)``, ``lengths (B,)`` -> ``(B, T // 2**r, 2 * hidden)``, ``lengths // 2**r``."""
        for i, lstm in enumerate(self.layers):
            if 1 <= i <= self.reduction_layers:
                frames = x.size(1) // 2
                x = x[:, :2 * frames].reshape(x.size(0), frames, 2 * x.size(2))
                lengths = (lengths // 2).clamp(min=1)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            x, _ = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=x.size(1))
            x = self.dropout(x)
        return x, lengths


class LSTMASR(ASRModel):
    """Attention LSTM encoder-decoder ASR. See :mod:`speechs2s.models.asr_base` for the
    training and decoding interfaces; the decoder state holds the LSTM state ``h``/``c``
    ``(B, layers, H)``, the last context and the previous and cumulative attention weights."""

    def __init__(self, config: LSTMASRConfig):
        super().__init__(config)
        enc_dim = 2 * config.encoder_hidden
        self.encoder = PyramidalBiLSTM(config.n_mels, config.encoder_hidden, config.encoder_layers,
                                       config.reduction_layers, config.dropout)
        self.ctc_head = nn.Linear(enc_dim, config.vocab_size) if config.ctc_weight > 0 else None
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.decoder = nn.LSTM(config.embedding_dim + enc_dim, config.decoder_hidden, config.decoder_layers,
                               batch_first=True, dropout=config.dropout if config.decoder_layers > 1 else 0.0)
        self.attention = LocationSensitiveAttention(config.decoder_hidden, enc_dim, config.attention_dim,
                                                    location_channels=2, location_filters=config.location_filters,
                                                    location_kernel=config.location_kernel)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.decoder_hidden + enc_dim, config.vocab_size)

    def encode(self, features: torch.Tensor, feature_lengths: torch.Tensor):
        """``features (B, T, M)``, ``feature_lengths (B,)`` -> ``enc (B, T', 2H)``, ``enc_lengths (B,)``
        with ``T' = T // 2**reduction_layers``."""
        return self.encoder(self.normalize(features), feature_lengths)

    def init_decoder_state(self, enc, enc_lengths) -> dict:
        """Zero LSTM state, context and attention weights; the processed encoder memory is computed once."""
        batch, frames = enc.shape[:2]
        hidden = enc.new_zeros(batch, self.config.decoder_layers, self.config.decoder_hidden)
        weights = enc.new_zeros(batch, frames)
        return {"enc": enc, "enc_mask": sequence_mask(enc_lengths, frames), "memory": self.attention.process_memory(enc),
                "h": hidden, "c": hidden, "context": enc.new_zeros(batch, enc.size(2)),
                "weights": weights, "cumulative_weights": weights}

    def step_logits(self, prev_tokens: torch.Tensor, state: dict):
        """One decoder step: ``prev_tokens (B,)`` -> ``logits (B, V)``, new state."""
        x = torch.cat([self.embedding(prev_tokens), state["context"]], dim=-1)[:, None]
        hidden = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        query, (h, c) = self.decoder(x, hidden)
        query = query[:, 0]
        location = torch.stack([state["weights"], state["cumulative_weights"]], dim=1)
        context, weights = self.attention(query, state["enc"], state["memory"], location, state["enc_mask"])
        logits = self.output(self.dropout(torch.cat([query, context], dim=-1)))
        return logits, {**state, "h": h.transpose(0, 1), "c": c.transpose(0, 1), "context": context,
                        "weights": weights, "cumulative_weights": state["cumulative_weights"] + weights}

    def decoder_logits(self, tokens, enc, enc_lengths) -> torch.Tensor:
        """Teacher-forced ``tokens (B, L)`` -> logits ``(B, L, V)`` (one step per token)."""
        state, logits = self.init_decoder_state(enc, enc_lengths), []
        for prev_tokens in tokens.unbind(dim=1):
            step, state = self.step_logits(prev_tokens, state)
            logits.append(step)
        return torch.stack(logits, dim=1)

    def decode_step(self, prev_tokens: torch.Tensor, state: dict):
        """``prev_tokens (B,)`` (``sos_id`` first) -> ``log_probs (B, V)`` of the next token, new state."""
        logits, state = self.step_logits(prev_tokens, state)
        return logits.float().log_softmax(dim=-1), state
