"""Tacotron 2 (Shen et al. 2018) with forward attention (Zhang et al. 2018) and a reduction factor.

Text: embedding -> 3 conv layers -> BiLSTM. Each decoder step: prenet(previous frame) ->
attention LSTM -> location-sensitive attention, made monotonic by forward attention with a
transition agent -> decoder LSTM -> ``r`` mel frames and ``r`` stop logits. A conv postnet refines
the whole spectrogram. Training, the loss and synthesis are shared with TransformerTTS
(:class:`~speechs2s.models.tts_blocks.AttentionAcousticModel`, :mod:`speechs2s.decode.tts`).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from speechs2s.models.tts_blocks import AttentionAcousticModel, AttentionLossConfig, ConvStack, Prenet
from speechs2s.nn.attention import LocationSensitiveAttention
from speechs2s.nn.masks import sequence_mask


@dataclass
class Tacotron2Config(AttentionLossConfig):
    embedding_dim: int = 512  # also the encoder width (BiLSTM: embedding_dim // 2 per direction)
    encoder_conv_layers: int = 3
    encoder_kernel_size: int = 5
    prenet_dim: int = 256
    attention_rnn_dim: int = 1024
    decoder_rnn_dim: int = 1024
    attention_dim: int = 128
    location_filters: int = 32
    location_kernel_size: int = 31
    forward_attention: bool = True  # also during training, so the transition agent learns
    dropout: float = 0.5  # encoder convs and postnet (the prenet always uses 0.5)
    decoder_dropout: float = 0.1  # on the LSTM outputs


class Tacotron2(AttentionAcousticModel):
    def __init__(self, config: Tacotron2Config):
        super().__init__(config)
        c = config
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        self.encoder_convs = ConvStack(c.embedding_dim, c.embedding_dim, c.embedding_dim, c.encoder_conv_layers,
                                       c.encoder_kernel_size, dropout=c.dropout)
        self.encoder_lstm = nn.LSTM(c.embedding_dim, c.embedding_dim // 2, batch_first=True, bidirectional=True)
        self.prenet = Prenet(c.n_mels, c.prenet_dim)
        self.attention_rnn = nn.LSTMCell(c.prenet_dim + c.embedding_dim, c.attention_rnn_dim)
        self.attention = LocationSensitiveAttention(c.attention_rnn_dim, c.embedding_dim, c.attention_dim,
                                                    location_filters=c.location_filters,
                                                    location_kernel=c.location_kernel_size)
        self.transition_agent = nn.Linear(c.embedding_dim + c.attention_rnn_dim + c.prenet_dim, 1)
        self.decoder_rnn = nn.LSTMCell(c.attention_rnn_dim + c.embedding_dim, c.decoder_rnn_dim)
        self.mel_proj = nn.Linear(c.decoder_rnn_dim + c.embedding_dim, c.n_mels * c.reduction_factor)
        self.stop_proj = nn.Linear(c.decoder_rnn_dim + c.embedding_dim, c.reduction_factor)

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L)`` -> ``(B, L, embedding_dim)``."""
        x = self.encoder_convs(self.embedding(tokens), token_lengths)
        packed = pack_padded_sequence(x, token_lengths.cpu(), batch_first=True, enforce_sorted=False)
        x, _ = pad_packed_sequence(self.encoder_lstm(packed)[0], batch_first=True, total_length=tokens.size(1))
        return x

    # -- synthesis step protocol (see tts_blocks) --------------------------------------------------

    def start(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> dict:
        """Decoder state: ``memory (B, L, E)`` encoder output, ``processed_memory (B, L, A)``,
        ``memory_mask (B, L)`` valid tokens (these three fixed for an utterance); LSTM states
        ``attention_h / attention_c (B, attention_rnn_dim)``, ``decoder_h / decoder_c (B, decoder_rnn_dim)``;
        ``context (B, E)``; ``weights (B, L)`` previous alignment, ``cumulative_weights (B, L)``;
        ``alpha (B, L)`` forward-attention alignment (float32); ``transition (B, 1)`` probability
        of moving one token forward."""
        memory = self.encode(tokens, token_lengths)
        (B, L, _), c = memory.shape, self.config
        zeros = memory.new_zeros
        alpha = torch.zeros(B, L, device=memory.device)
        alpha[:, 0] = 1.0  # all mass on the first token
        return dict(memory=memory, processed_memory=self.attention.process_memory(memory),
                    memory_mask=sequence_mask(token_lengths, L),
                    attention_h=zeros(B, c.attention_rnn_dim), attention_c=zeros(B, c.attention_rnn_dim),
                    decoder_h=zeros(B, c.decoder_rnn_dim), decoder_c=zeros(B, c.decoder_rnn_dim),
                    context=zeros(B, c.embedding_dim), weights=zeros(B, L), cumulative_weights=zeros(B, L),
                    alpha=alpha, transition=memory.new_full((B, 1), 0.5))

    def step(self, previous: torch.Tensor, state: dict, allowed: torch.Tensor):
        """One decoder step: ``previous (B, M)`` -> ``(frames (B, r, M), stop_logits (B, r),
        alignment (B, L), state)``; attention only reaches the keys in ``allowed (B, L)``."""
        c, s = self.config, state
        prenet = self.prenet(previous)
        h, cell = self.attention_rnn(torch.cat([prenet, s["context"]], -1), (s["attention_h"], s["attention_c"]))
        query = F.dropout(h, c.decoder_dropout, self.training)
        location = torch.stack([s["weights"], s["cumulative_weights"]], dim=1)
        mask = allowed & s["memory_mask"]
        context, weights = self.attention(query, s["memory"], s["processed_memory"], location, mask)
        alpha = s["alpha"]
        if c.forward_attention:
            alpha = self._forward_attention(s["alpha"], weights, s["transition"], mask)
            weights = alpha.to(weights.dtype)
            context = torch.bmm(weights[:, None, :], s["memory"]).squeeze(1)
        transition = torch.sigmoid(self.transition_agent(torch.cat([context, query, prenet], -1)))
        d_h, d_c = self.decoder_rnn(torch.cat([query, context], -1), (s["decoder_h"], s["decoder_c"]))
        out = torch.cat([F.dropout(d_h, c.decoder_dropout, self.training), context], -1)
        frames = self.mel_proj(out).view(-1, c.reduction_factor, c.n_mels)
        state = dict(s, attention_h=h, attention_c=cell, decoder_h=d_h, decoder_c=d_c, context=context,
                     weights=weights, cumulative_weights=s["cumulative_weights"] + weights, alpha=alpha,
                     transition=transition)
        return frames, self.stop_proj(out), weights, state

    @staticmethod
    def _forward_attention(alpha, weights, transition, mask):
        """Zhang et al. (2018) eq. 9-10: the alignment stays or moves one token per step,
        ``alpha_t(n) ∝ ((1 - u) alpha_{t-1}(n) + u alpha_{t-1}(n - 1)) y_t(n)`` with ``y_t`` the
        attention weights (floored so a peaked ``y_t`` cannot zero the whole product)."""
        u = transition.float()
        moved = F.pad(alpha[:, :-1], (1, 0))
        alpha = ((1 - u) * alpha + u * moved) * weights.float().clamp(min=1e-12) * mask
        return alpha / alpha.sum(-1, keepdim=True).clamp(min=1e-30)

    # -- training ------------------------------------------------------------------------------

    def teacher_forcing(self, tokens, token_lengths, previous):
        state = self.start(tokens, token_lengths)
        frames, stops, alignments = [], [], []
        for t in range(previous.size(1)):
            frame, stop, weights, state = self.step(previous[:, t], state, state["memory_mask"])
            frames.append(frame)
            stops.append(stop)
            alignments.append(weights)
        B = tokens.size(0)
        return (torch.cat(frames, 1), torch.cat(stops, 1).view(B, -1),
                torch.stack(alignments, 1)[:, None])  # (B, 1, S, L)
