"""Conformer encoder with the Transformer decoder and joint CTC head (Gulati et al. 2020; as ESPnet's
LibriSpeech-100 Conformer, with rotary instead of relative positional encoding).

log-mels (B, T, 80) -> normalise -> Conv2d subsampling ×4 (×6, ×8) -> Conformer blocks -> enc (B, T', D)
-> CTC head (B, T', V), optionally also on intermediate blocks (intermediate CTC)
-> causal pre-LN Transformer decoder over tokens -> (B, L, V)

Everything but the encoder (front-end, CTC head, decoder, decoding protocol) is :class:`TransformerASR`'s,
with the same parameter names, so ``trainer.init_from`` a TransformerASR copies them.
"""
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch

from speechs2s.errors import ConfigError
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.nn.conformer import ConformerEncoder


@dataclass
class ConformerASRConfig(TransformerASRConfig):
    """Defaults are the "base" size (≈ ESPnet LibriSpeech-100 Conformer: 12 blocks of width 256, 4 heads,
    feed-forward 1024, kernel 31, 6 decoder layers of feed-forward 2048; ~35M params with 5k BPE).
    ``ConformerASRConfig.preset("tiny" | "small", vocab_size=...)`` for models that train on a CPU."""

    d_ff: int = 1024                 # each of the two macaron feed-forward modules of a block
    decoder_d_ff: int | None = 2048
    conv_kernel: int = 31            # depthwise convolution kernel (frames after subsampling; odd)
    conv_norm: Literal["batch", "layer"] = "batch"  # norm after the depthwise convolution
    causal_conv: bool = False        # the depthwise convolution sees past frames only (needed for chunk_size)
    interctc_layers: list[int] = field(default_factory=list)  # blocks (1-based) with an intermediate CTC loss
    interctc_weight: float = 0.0     # CTC part = (1 - v) * final CTC + v * mean intermediate CTC

    PRESETS: ClassVar[dict] = {
        "tiny": {"d_model": 144, "n_heads": 4, "encoder_layers": 4, "decoder_layers": 2, "d_ff": 576,
                 "decoder_d_ff": 576, "conv_kernel": 15, "subsampling_channels": 16, "dropout": 0.1},
        "small": {"d_model": 192, "n_heads": 4, "encoder_layers": 6, "decoder_layers": 3, "d_ff": 768,
                  "decoder_d_ff": 768, "conv_kernel": 15, "subsampling_channels": 32, "dropout": 0.1},
        "base": {"d_model": 256, "n_heads": 4, "encoder_layers": 12, "decoder_layers": 6, "d_ff": 1024,
                 "decoder_d_ff": 2048, "conv_kernel": 31, "subsampling_channels": 256, "dropout": 0.1},
    }

    def __post_init__(self):
        super().__post_init__()
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"d_model / n_heads = {self.d_model // self.n_heads} must be even (rotary positions)")
        if self.conv_kernel % 2 == 0:
            raise ValueError(f"conv_kernel must be odd, got {self.conv_kernel}")
        if self.conv_norm not in ("batch", "layer"):
            raise ValueError(f"conv_norm must be batch or layer, got {self.conv_norm!r}")
        if any(not 1 <= layer < self.encoder_layers for layer in self.interctc_layers):
            raise ValueError(f"interctc_layers must be blocks 1..{self.encoder_layers - 1}, got {self.interctc_layers}")
        if bool(self.interctc_layers) != (0 < self.interctc_weight < 1):
            raise ValueError("interctc_layers and an interctc_weight in (0, 1) go together, got "
                             f"{self.interctc_layers} and {self.interctc_weight}")
        if self.interctc_layers and self.ctc_weight == 0:
            raise ValueError("interctc_layers need a CTC head (ctc_weight > 0)")
        if not isinstance(self.causal_conv, bool):
            raise ValueError(f"causal_conv must be true or false, got {self.causal_conv!r}")
        if (self.chunk_size or self.dynamic_chunk_training) and not self.causal_conv:
            raise ValueError("chunk_size and dynamic_chunk_training need causal_conv: true (a centred convolution "
                             "would see frames of later chunks)")


class ConformerASR(TransformerASR):
    """Joint CTC / attention ASR with a Conformer encoder. See :mod:`speechs2s.models.asr_base` for the
    training and decoding interfaces."""

    def build_encoder(self, config: ConformerASRConfig):
        self.encoder = ConformerEncoder(config.encoder_layers, config.d_model, config.n_heads, config.d_ff,
                                        config.conv_kernel, config.dropout, config.conv_norm, config.causal_conv)

    def encode_layers(self, features: torch.Tensor, feature_lengths: torch.Tensor, chunk_size: int | None = None,
                      left_chunks: int | None = None):
        """``features (B, T, M)``, ``feature_lengths (B,)`` -> ``enc (B, T', D)``, ``enc_lengths (B,)`` and the
        outputs of the ``interctc_layers`` blocks; ``chunk_size``, ``left_chunks`` as in :meth:`encode`."""
        x, lengths = self.subsampling(self.normalize(features), feature_lengths)
        chunks = self.attention_chunks(x.size(1), x.device, chunk_size, left_chunks)
        x, intermediate = self.encoder(x, lengths, self.config.interctc_layers, chunks)
        return x, lengths, intermediate

    def encode(self, features: torch.Tensor, feature_lengths: torch.Tensor, chunk_size: int | None = None,
               left_chunks: int | None = None, offset: int = 0):
        """``features (B, T, M)`` log-mels, ``feature_lengths (B,)`` -> ``enc (B, T', D)``, ``enc_lengths (B,)``;
        ``chunk_size``, ``left_chunks``: see :meth:`TransformerASR.encode` (rotary positions are relative:
        ``offset`` changes nothing)."""
        if chunk_size and not self.config.causal_conv:
            raise ConfigError("chunk-wise decoding of a conformer_asr needs a model trained with causal_conv: true")
        return self.encode_layers(features, feature_lengths, chunk_size, left_chunks)[:2]

    def streaming_context(self, chunk_size: int, left_chunks: int) -> int | None:
        """As :meth:`TransformerASR.streaming_context`; the causal convolution of each block reaches
        ``conv_kernel - 1`` frames further back, to attention outputs of an earlier chunk."""
        if left_chunks < 0:
            return None
        reach = self.config.encoder_layers * ((left_chunks + 1) * chunk_size + self.config.conv_kernel - 2)
        return -(-reach // chunk_size) * chunk_size
