"""Transformer encoder-decoder ASR with a joint CTC head (Karita et al. 2019, as in ESPnet).

log-mels (B, T, 80) -> normalise -> Conv2d subsampling ×4 -> + positional encoding
-> pre-LN Transformer encoder -> enc (B, T/4, D) -> CTC head (B, T/4, V)
                                                 -> causal pre-LN Transformer decoder over tokens -> (B, L, V)

Streaming (WeNet U2, Zhang et al. 2020): with ``chunk_size > 0`` the encoder's self-attention is
chunk-wise: a frame sees the frames of its chunk and ``left_chunks`` chunks before it, never later
ones, so the encoder output of a chunk is final once its audio has arrived (``decode/stream.py``).
``dynamic_chunk_training`` draws the chunk size per batch, so that one model serves any chunk size.
The subsampling convolutions look 3 input frames (30 ms) past their last 4-frame step.
"""
import math
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from speechs2s.models.asr_base import ASRHeadConfig, ASRModel
from speechs2s.models.asr_bias import PhraseBias, Phrases
from speechs2s.nn import (
    Conv2dSubsampling,
    PositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
    chunk_mask,
    key_padding_mask,
)


@dataclass
class TransformerASRConfig(ASRHeadConfig):
    """Defaults are the "base" size (≈ ESPnet LibriSpeech-100 Transformer, ~30M params with 5k BPE);
    ``TransformerASRConfig.preset("tiny", vocab_size=...)`` gives a ~1M-param model that trains on CPU."""

    d_model: int = 256
    n_heads: int = 4
    encoder_layers: int = 12
    decoder_layers: int = 6
    d_ff: int = 2048
    decoder_d_ff: int | None = None  # the decoder's feed-forward width; None = d_ff
    dropout: float = 0.1
    subsampling_channels: int = 256  # Conv2d front-end width: the main CPU cost of small models
    subsampling_factor: int = 4      # frame-rate reduction of the front-end: 4, 6 or 8
    chunk_size: int = 0              # encoder frames (after subsampling) per attention chunk; 0 = full context
    left_chunks: int = -1            # earlier chunks a frame's attention sees; -1 = all of them
    dynamic_chunk_training: bool = False  # per training batch: full context (p = 0.5) or chunk_size ~ U{1..25}

    PRESETS: ClassVar[dict] = {
        "tiny": {"d_model": 144, "n_heads": 4, "encoder_layers": 4, "decoder_layers": 2, "d_ff": 576,
                 "subsampling_channels": 16, "dropout": 0.1},
        "base": {"d_model": 256, "n_heads": 4, "encoder_layers": 12, "decoder_layers": 6, "d_ff": 2048,
                 "subsampling_channels": 256, "dropout": 0.1},
    }

    def __post_init__(self):
        super().__post_init__()
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        check_chunking(self.chunk_size, self.left_chunks)
        if not isinstance(self.dynamic_chunk_training, bool):
            raise ValueError(f"dynamic_chunk_training must be true or false, got {self.dynamic_chunk_training!r}")


def check_chunking(chunk_size, left_chunks) -> None:
    """Raise ValueError unless ``chunk_size`` is an int >= 0 and ``left_chunks`` an int >= -1."""
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 0:
        raise ValueError(f"chunk_size must be an integer >= 0 (0 = full context), got {chunk_size!r}")
    if not isinstance(left_chunks, int) or isinstance(left_chunks, bool) or left_chunks < -1:
        raise ValueError(f"left_chunks must be an integer >= -1 (-1 = all), got {left_chunks!r}")


class TransformerASR(ASRModel):
    """Joint CTC / attention Transformer ASR. See :mod:`speechs2s.models.asr_base` for the
    training and decoding interfaces."""

    def __init__(self, config: TransformerASRConfig):
        super().__init__(config)
        d_model, vocab_size = config.d_model, config.vocab_size
        self.subsampling = Conv2dSubsampling(config.n_mels, d_model, config.subsampling_channels,
                                             config.subsampling_factor)
        self.build_encoder(config)
        self.ctc_head = nn.Linear(d_model, vocab_size) if config.ctc_weight > 0 else None
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.decoder_position = PositionalEncoding(d_model, config.dropout, input_scale=math.sqrt(d_model))
        self.decoder = TransformerDecoder(config.decoder_layers, d_model, config.n_heads,
                                          config.decoder_d_ff or config.d_ff, config.dropout)
        self.output = nn.Linear(d_model, vocab_size)
        if config.bias_phrases:
            self.bias = PhraseBias(vocab_size, d_model, config.bias_dim)

    def build_encoder(self, config):
        """The layers between the subsampling front-end and the CTC head (a subclass builds its own)."""
        self.encoder_position = PositionalEncoding(config.d_model, config.dropout, input_scale=math.sqrt(config.d_model))
        self.encoder = TransformerEncoder(config.encoder_layers, config.d_model, config.n_heads, config.d_ff,
                                          config.dropout)

    def encode(self, features: torch.Tensor, feature_lengths: torch.Tensor, chunk_size: int | None = None,
               left_chunks: int | None = None, offset: int = 0):
        """``features (B, T, M)`` log-mels, ``feature_lengths (B,)`` -> ``enc (B, T', D)``, ``enc_lengths (B,)``
        with ``T'`` = ``T`` reduced ``subsampling_factor`` times (×4: ``((T - 1) // 2 - 1) // 2``).
        ``chunk_size``, ``left_chunks``: override the config's (:meth:`attention_chunks`); ``offset``: index
        of the first output frame in the whole stream (a streaming window; it starts a chunk)."""
        x, lengths = self.subsampling(self.normalize(features), feature_lengths)
        mask = key_padding_mask(lengths, x.size(1))
        chunks = self.attention_chunks(x.size(1), x.device, chunk_size, left_chunks)
        x, _ = self.encoder(self.encoder_position(x, offset), mask if chunks is None else mask & chunks)
        return x, lengths

    def attention_chunks(self, length: int, device, chunk_size: int | None = None, left_chunks: int | None = None):
        """The encoder's ``(T', T')`` :func:`chunk_mask` over ``length`` frames, or None for full context.
        ``chunk_size``/``left_chunks`` default to the config's; training with ``dynamic_chunk_training``
        draws the chunk size per batch as WeNet's U2 does (full context with probability 1/2, else 1..25)."""
        config = self.config
        if chunk_size is None:
            chunk_size = config.chunk_size
            if self.training and config.dynamic_chunk_training:
                chunk_size = 0 if torch.rand(()) < 0.5 else int(torch.randint(1, 26, ()))
        left_chunks = config.left_chunks if left_chunks is None else left_chunks
        return chunk_mask(length, chunk_size, left_chunks, device) if chunk_size > 0 else None

    def streaming_context(self, chunk_size: int, left_chunks: int) -> int | None:
        """Encoder frames before a chunk that its chunk-wise output depends on (a multiple of ``chunk_size``),
        None when it depends on all of them (``left_chunks == -1``): each layer reaches ``left_chunks``
        chunks further back."""
        return None if left_chunks < 0 else self.config.encoder_layers * left_chunks * chunk_size

    def decoder_logits(self, tokens, enc, enc_lengths, phrases: list[list[int]] | None = None) -> torch.Tensor:
        """Teacher-forced ``tokens (B, L)`` -> logits ``(B, L, V)``; with ``phrases`` (token lists, needs
        ``bias_phrases``) the log-probabilities of the copy mechanism's mixture instead."""
        x = self.decoder_position(self.embedding(tokens))
        x, _, _ = self.decoder(x, enc, key_padding_mask(enc_lengths, enc.size(1)))
        logits = self.output(x)
        if not phrases:
            return logits
        bias = self.compile_phrases(phrases, x.device)
        return self.bias(x, logits.float().log_softmax(dim=-1), self.bias.encode(bias),
                         bias.next_tokens(bias.matches(tokens)))

    def compile_phrases(self, phrases: list[list[int]], device) -> Phrases:
        """The :class:`Phrases` of token lists for the copy mechanism (an error without ``bias_phrases``)."""
        if self.bias is None:
            raise RuntimeError("this model has no copy mechanism for phrases (model option bias_phrases)")
        return Phrases(phrases, device)

    def init_decoder_state(self, enc, enc_lengths, phrases: list[list[int]] | None = None) -> dict:
        """State: the encoder output projected for every cross-attention ``(B, layers, T', 2 * D)``,
        its lengths and the decoder's cache of past keys and values ``(B, layers, l, 2 * D)``; with
        ``phrases``, also the :class:`Phrases` and their vectors ``(P + 1, E)`` (shared by all rows) and
        each row's match lengths ``(B, P)``."""
        state = {"memory": self.decoder.project_memory(enc), "enc_lengths": enc_lengths,
                 "cache": self.decoder.empty_cache(enc)}
        if phrases:
            bias = self.compile_phrases(phrases, enc.device)
            state |= {"phrases": (bias, self.bias.encode(bias)), "matched": bias.start(len(enc))}
        return state

    def decode_step(self, prev_tokens: torch.Tensor, state: dict):
        """``prev_tokens (B,)`` (``sos_id`` first) -> ``log_probs (B, V)`` of the next token, new state."""
        memory, enc_lengths, cache = state["memory"], state["enc_lengths"], state["cache"]
        x = self.decoder_position(self.embedding(prev_tokens[:, None]), offset=cache.size(2))
        memory_mask = key_padding_mask(enc_lengths, memory.size(-2))
        x, cache, _ = self.decoder(x, None, memory_mask, cache, projected_memory=memory)
        log_probs = self.output(x[:, 0]).float().log_softmax(dim=-1)
        state = {**state, "cache": cache}
        if "phrases" in state:
            bias, vectors = state["phrases"]
            state["matched"] = bias.advance(state["matched"], prev_tokens)
            log_probs = self.bias(x[:, 0], log_probs, vectors, bias.next_tokens(state["matched"]))
        return log_probs, state
