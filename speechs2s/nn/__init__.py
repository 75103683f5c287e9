"""Neural building blocks shared by the ASR and TTS models."""
from speechs2s.nn.attention import LocationSensitiveAttention, MultiHeadAttention
from speechs2s.nn.masks import causal_mask, chunk_mask, key_padding_mask, sequence_mask
from speechs2s.nn.normalization import FeatureNormalization
from speechs2s.nn.subsampling import Conv2dSubsampling
from speechs2s.nn.transformer import (
    DecoderLayer,
    EncoderLayer,
    FeedForward,
    PositionalEncoding,
    TransformerDecoder,
    TransformerEncoder,
    sinusoids,
)

__all__ = [
    "Conv2dSubsampling",
    "DecoderLayer",
    "EncoderLayer",
    "FeatureNormalization",
    "FeedForward",
    "LocationSensitiveAttention",
    "MultiHeadAttention",
    "PositionalEncoding",
    "TransformerDecoder",
    "TransformerEncoder",
    "causal_mask",
    "chunk_mask",
    "key_padding_mask",
    "sequence_mask",
    "sinusoids",
]
