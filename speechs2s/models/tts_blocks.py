"""Parts shared by the text-to-mel models (:mod:`.tts_transformer`, :mod:`.tts_tacotron`, :mod:`.tts_fastspeech`).

:class:`AcousticModel` holds what every model does the same way: feature normalisation, the
reduction factor (one decoder step emits ``r`` frames) and the postnet.
:class:`AttentionAcousticModel` adds what the two autoregressive attention models share: the
training loss (mel L1+L2 before and after the postnet, stop-token BCE, guided attention),
scheduled sampling, the validation figures and the token durations read off the alignment
(:meth:`~AttentionAcousticModel.token_durations`, the targets of FastSpeech). A subclass provides
the teacher-forced pass and the synthesis step protocol used by :mod:`speechs2s.decode.tts`::

    state = model.start(tokens (B, L), token_lengths (B,))               # encode the text once: a dict
    frames, stop_logits, alignment, state = model.step(previous (B, M), state, allowed (B, L))
    #  frames (B, r, M) normalised log-mel, stop_logits (B, r),
    #  alignment (B, L) attention of the guided heads, zero outside ``allowed`` (bool keys)
    mels = model.refine(mels (B, T, M), lengths (B,))                     # postnet, then model.denormalize
"""
from dataclasses import dataclass
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn

from speechs2s.losses import guided_attention_loss, mel_loss, stop_token_loss
from speechs2s.nn.masks import key_padding_mask, sequence_mask
from speechs2s.nn.normalization import FeatureNormalization
from speechs2s.nn.transformer import PositionalEncoding, TransformerEncoder

MEL_LOSSES = ("l1", "l2", "l1+l2")


@dataclass
class AcousticConfig:
    """Options of every text-to-mel model (:class:`AcousticModel`); the model configs extend it."""

    vocab_size: int = 0  # filled from the tokenizer
    n_mels: int = 80
    reduction_factor: int = 2  # mel frames per decoder step
    postnet_channels: int = 512
    postnet_layers: int = 5
    postnet_kernel_size: int = 5
    mel_loss: str = "l1+l2"

    def __post_init__(self):
        if self.mel_loss not in MEL_LOSSES:
            raise ValueError(f"mel_loss must be one of {', '.join(MEL_LOSSES)}, got {self.mel_loss!r}")
        if self.reduction_factor < 1:
            raise ValueError(f"reduction_factor must be >= 1, got {self.reduction_factor}")


@dataclass
class TransformerTextEncoderConfig(AcousticConfig):
    """:class:`TransformerTextEncoder` sizes (TransformerTTS, FastSpeech)."""

    d_model: int = 384
    n_heads: int = 4
    d_ff: int = 1536
    encoder_layers: int = 6
    dropout: float = 0.1  # Transformer layers and positional encodings
    embedding_dim: int = 512  # token embedding and encoder prenet convs
    encoder_prenet_layers: int = 3
    encoder_prenet_kernel_size: int = 5


@dataclass
class AttentionLossConfig(AcousticConfig):
    """Training options of the autoregressive attention models (:class:`AttentionAcousticModel`)."""

    stop_pos_weight: float = 10.0
    scheduled_sampling: float = 0.0  # training: share of decoder steps fed the model's own previous frame
    guided_sigma: float = 0.2  # width g of the allowed band around the diagonal (Tachibana et al.)
    guided_weight: float = 1.0
    guided_half_life: int = 0  # training batches; 0 keeps the weight constant

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.scheduled_sampling <= 1.0:
            raise ValueError(f"scheduled_sampling must be in [0, 1], got {self.scheduled_sampling}")


def _previous_frames(mels: torch.Tensor, r: int) -> torch.Tensor:
    """Decoder inputs ``(B, S, M)`` for frames ``(B, S * r, M)``: a zero "go" frame, then the last
    frame of each group of ``r``."""
    return F.pad(mels[:, r - 1::r][:, :-1], (0, 0, 1, 0))


class Prenet(nn.Module):
    """Fully connected layers with ReLU and dropout, ``(..., in_dim) -> (..., hidden_dim)``.

    Dropout stays on at inference (Tacotron 2, section 2.2): it is the bottleneck that stops the
    autoregressive decoder from copying its previous frame."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int = 2, dropout: float = 0.5):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(in_dim if i == 0 else hidden_dim, hidden_dim) for i in range(layers))
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.dropout(F.relu(layer(x)), self.dropout, training=True)
        return x


class ConvStack(nn.Module):
    """Conv1d + BatchNorm + activation + dropout layers over ``(B, T, C)``; padding is zeroed
    before every convolution. The text-encoder prenet (ReLU) and the postnet (tanh, linear last layer)."""

    def __init__(self, in_dim: int, channels: int, out_dim: int, layers: int, kernel_size: int = 5,
                 activation: str = "relu", dropout: float = 0.5, linear_last: bool = False):
        super().__init__()
        dims = [in_dim] + [channels] * (layers - 1) + [out_dim]
        self.convs = nn.ModuleList(nn.Conv1d(a, b, kernel_size, padding=kernel_size // 2) for a, b in pairwise(dims))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b) for b in dims[1:])
        self.activation = {"relu": F.relu, "tanh": torch.tanh}[activation]
        self.dropout, self.linear_last = dropout, linear_last

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = sequence_mask(lengths, x.size(1))[:, None, :]
        x = x.transpose(1, 2)
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            x = norm(conv(x * mask))
            if not (self.linear_last and i == len(self.convs) - 1):
                x = self.activation(x)
            x = F.dropout(x, self.dropout, self.training)
        return x.transpose(1, 2)


class VariancePredictor(nn.Module):
    """``(B, L, D) -> (B, L)`` one value per token (FastSpeech's log-durations, FastSpeech 2's pitch and
    energy): two (conv, ReLU, LayerNorm, dropout) layers and a linear; 0 on padding."""

    def __init__(self, d_model: int, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv1d(d_model, channels, kernel_size, padding=kernel_size // 2),
                                    nn.Conv1d(channels, channels, kernel_size, padding=kernel_size // 2)])
        self.norms = nn.ModuleList([nn.LayerNorm(channels), nn.LayerNorm(channels)])
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(channels, 1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = sequence_mask(lengths, x.size(1))[..., None]
        for conv, norm in zip(self.convs, self.norms):
            x = self.dropout(norm(F.relu(conv((x * mask).transpose(1, 2)).transpose(1, 2))))
        return self.out(x).squeeze(-1) * mask[..., 0]


class TransformerTextEncoder:
    """Mixin of the acoustic models that read text with a Transformer (TransformerTTS, FastSpeech):
    embedding -> conv prenet -> linear -> scaled positional encoding -> pre-LN Transformer encoder.
    The parameters keep the same names in both models, so one model's weights start the other
    (``trainer.init_from``)."""

    def init_text_encoder(self, c: TransformerTextEncoderConfig) -> None:
        self.embedding = nn.Embedding(c.vocab_size, c.embedding_dim)
        self.encoder_prenet = ConvStack(c.embedding_dim, c.embedding_dim, c.embedding_dim, c.encoder_prenet_layers,
                                        c.encoder_prenet_kernel_size)
        self.encoder_proj = nn.Linear(c.embedding_dim, c.d_model)
        self.encoder_position = PositionalEncoding(c.d_model, c.dropout, learned_scale=True)
        self.encoder = TransformerEncoder(c.encoder_layers, c.d_model, c.n_heads, c.d_ff, c.dropout)

    def encode(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> torch.Tensor:
        """``tokens (B, L)`` -> ``(B, L, d_model)``."""
        x = self.encoder_prenet(self.embedding(tokens), token_lengths)
        x = self.encoder_position(self.encoder_proj(x))
        return self.encoder(x, key_padding_mask(token_lengths, tokens.size(1)))[0]


class AcousticModel(FeatureNormalization, nn.Module):
    """Base of the text-to-mel models: feature normalisation, the reduction factor and the postnet."""

    def __init__(self, config: AcousticConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise ValueError("vocab_size must be set (the trainer fills it from the tokenizer)")
        self.config = config
        self.n_mels, self.reduction_factor = config.n_mels, config.reduction_factor
        self.postnet = ConvStack(config.n_mels, config.postnet_channels, config.n_mels, config.postnet_layers,
                                 config.postnet_kernel_size, activation="tanh", linear_last=True)
        self.register_feature_stats(config.n_mels)

    def denormalize(self, mel: torch.Tensor) -> torch.Tensor:
        return mel * self.std + self.mean

    def refine(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Add the postnet residual to normalised mels ``(B, T, M)``."""
        return mels + self.postnet(mels, lengths)


class AttentionAcousticModel(AcousticModel):
    """Base of the autoregressive attention models (configs extend :class:`AttentionLossConfig`)."""

    def __init__(self, config: AttentionLossConfig):
        super().__init__(config)
        self.register_buffer("batches_seen", torch.zeros((), dtype=torch.long))  # drives the guided-loss decay

    # -- training ------------------------------------------------------------------------------

    def teacher_forcing(self, tokens, token_lengths, previous):
        """Subclass hook. ``previous (B, S, M)`` the frame before each step's group ->
        ``(frames (B, S * r, M), stop_logits (B, S * r), attention (B, H, S, L))`` for the guided heads."""
        raise NotImplementedError

    def guided_weight(self) -> float:
        """Guided-attention weight, halved every ``guided_half_life`` training batches (0: constant)."""
        half_life = self.config.guided_half_life
        decay = 0.5 ** (int(self.batches_seen) / half_life) if half_life > 0 else 1.0
        return self.config.guided_weight * decay

    def _teacher_forced(self, batch: dict):
        """Normalised targets, padded to whole decoder steps, and the model's teacher-forced outputs.

        With ``config.scheduled_sampling = p`` (training only), a first pass without gradients
        predicts every frame, and each decoder step is then fed, with probability ``p``, that
        prediction of its previous frame instead of the real one: the model learns to continue from
        its own output, as it must at synthesis (exposure bias)."""
        r = self.reduction_factor
        mels = self.normalize(batch["mels"])
        mels = F.pad(mels, (0, 0, 0, -mels.size(1) % r))
        previous = _previous_frames(mels, r)
        step_lengths = (batch["mel_lengths"] + r - 1) // r
        p = self.config.scheduled_sampling if self.training else 0.0
        if p > 0:
            with torch.no_grad():
                predicted = self.teacher_forcing(batch["tokens"], batch["token_lengths"], previous)[0]
            own = torch.rand(previous.shape[:2], device=previous.device) < p  # (B, S)
            previous = torch.where(own[..., None], _previous_frames(predicted, r), previous)
        outputs = self.teacher_forcing(batch["tokens"], batch["token_lengths"], previous)
        return mels, step_lengths, outputs

    def forward(self, batch: dict) -> dict:
        """``batch``: ``tokens (B, L)``, ``token_lengths``, ``mels (B, T, M)`` log-mel, ``mel_lengths``
        -> ``dict(loss, mel, stop, guided)`` scalars."""
        c = self.config
        mels, step_lengths, (before, stop_logits, attention) = self._teacher_forced(batch)
        lengths = batch["mel_lengths"]
        after = self.refine(before, lengths)
        mel = mel_loss(before, mels, lengths, c.mel_loss) + mel_loss(after, mels, lengths, c.mel_loss)
        stop = stop_token_loss(stop_logits, lengths, c.stop_pos_weight)
        guided = guided_attention_loss(attention, batch["token_lengths"], step_lengths, c.guided_sigma)
        weight = self.guided_weight()
        if self.training:
            self.batches_seen += 1
        return dict(loss=mel + stop + weight * guided, mel=mel.detach(), stop=stop.detach(), guided=guided.detach())

    @torch.no_grad()
    def token_durations(self, batch: dict) -> torch.Tensor:
        """Mel frames per token ``(B, L)`` (0 on padding) read off the teacher-forced alignment of the
        guided heads: a token's share is the attention it gets, summed over the decoder steps (``r``
        frames each), so a blurred or hesitant alignment still spreads the time over the right
        neighbourhood. Rounded on the running sum; an item's frames add up to its ``mel_lengths``.
        Call in eval mode."""
        _, step_lengths, (_, _, attention) = self._teacher_forced(batch)
        alignment = attention.float().mean(1) * sequence_mask(step_lengths, attention.size(2))[..., None]  # (B, S, L)
        shares = alignment.sum(1) / alignment.sum((1, 2))[:, None]  # (B, L), adds up to 1
        ends = (shares.double().cumsum(-1) * batch["mel_lengths"][:, None]).round().long()
        return torch.diff(ends, dim=-1, prepend=ends.new_zeros(ends.size(0), 1))

    @torch.no_grad()
    def validation_extras(self, batch: dict):
        """Teacher-forced alignment quality of the guided heads on ``batch`` (focus rate,
        diagonality, averaged over items) and figures of its first item (alignment, mels)."""
        from speechs2s import plots
        from speechs2s.metrics import diagonality, focus_rate

        mels, step_lengths, (before, _, attention) = self._teacher_forced(batch)
        after = self.refine(before, batch["mel_lengths"])
        alignment, token_lengths = attention.float().mean(1), batch["token_lengths"]  # (B, S, L) mean of guided heads
        scalars = {"focus_rate": focus_rate(alignment, step_lengths, token_lengths),
                   "diagonality": diagonality(alignment, step_lengths, token_lengths)}
        steps, tokens, frames = int(step_lengths[0]), int(token_lengths[0]), int(batch["mel_lengths"][0])
        figures = {"alignment": plots.plot_alignment(alignment[0, :steps, :tokens], title=str(batch.get("ids", ["item 0"])[0])),
                   "mel": plots.plot_mels(self.denormalize(mels[0, :frames]), self.denormalize(after[0, :frames]))}
        return scalars, figures
