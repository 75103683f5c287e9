"""FastSpeech (Ren et al. 2019): non-autoregressive text-to-mel with explicit token durations.

Text: the same encoder as :class:`~speechs2s.models.tts_transformer.TransformerTTS` (embedding ->
conv prenet -> linear -> scaled positional encoding -> Transformer encoder), so a trained
Transformer-TTS starts it (``trainer.init_from``). A duration predictor (two convolutions) gives
each token's length in mel frames; the length regulator repeats every encoder output for its
decoder steps (``r`` frames each); a non-causal Transformer over those steps emits ``r`` frames
per step, and the shared conv postnet refines them.

Training needs the frames per token of every utterance (``durations`` in the manifest, written
by ``speechs2s durations`` from a trained attention model's alignment). Synthesis is one pass:
no stop token, the output length is the sum of the predicted durations, so it always ends and
can neither skip nor repeat a token — the exposure bias of the autoregressive models is gone.

``adversarial_weight > 0`` adds a mel discriminator (:mod:`speechs2s.models.mel_discriminator`) against
the over-smoothing of the L1/L2 loss: the model then has two parameter groups, ``generator`` and
``discriminator``, each with its own optimizer in the trainer. Only training uses the discriminator;
``inference_options`` is what drops it from a bundle (``speechs2s average --inference``).

``flow_channels > 0`` adds a flow-matching sharpener (:mod:`speechs2s.models.mel_flow`): trained on the real mels
given the postnet's output (detached, so the rest of the model learns as before), it redraws that output as a
sharp mel in ``flow_steps`` Euler steps at synthesis (its own parameter group, ``flow``; ``flow_steps`` 0 skips it,
and then ``--inference`` leaves it out of the bundle too).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from speechs2s.losses import mel_loss
from speechs2s.models.mel_discriminator import MelDiscriminator, random_windows
from speechs2s.models.mel_flow import MelFlow
from speechs2s.models.tts_blocks import AcousticModel, TransformerTextEncoder, TransformerTextEncoderConfig, VariancePredictor
from speechs2s.models.vocoder import gan_losses
from speechs2s.nn.masks import key_padding_mask, sequence_mask
from speechs2s.nn.transformer import PositionalEncoding, TransformerEncoder


@dataclass
class FastSpeechConfig(TransformerTextEncoderConfig):
    """The text encoder's sizes default smaller than TransformerTTS's (a FastSpeech starts from a trained one).
    ``adversarial_weight > 0`` trains against a mel discriminator ``discriminator_channels`` wide that sees a
    random window of ``discriminator_frames`` valid frames of each item's postnet output. ``flow_channels > 0``
    adds a :class:`~speechs2s.models.mel_flow.MelFlow` that many channels wide after the postnet."""

    reduction_factor: int = 4
    d_model: int = 192
    n_heads: int = 2
    d_ff: int = 768
    encoder_layers: int = 3
    embedding_dim: int = 192
    postnet_channels: int = 256
    decoder_layers: int = 3
    duration_channels: int = 256
    duration_kernel_size: int = 3
    duration_weight: float = 1.0  # weight of the log-duration MSE in the loss
    adversarial_weight: float = 0.0  # LSGAN loss of the mel discriminator; 0: no discriminator
    feature_matching_weight: float = 1.0  # L1 of its feature maps, real vs generated
    discriminator_channels: int = 64
    discriminator_frames: int = 64
    flow_channels: int = 0  # flow-matching sharpener; 0: none
    flow_layers: int = 6
    flow_kernel_size: int = 3
    flow_sigma: float = 1.0  # std of the flow's start around the postnet output (normalised log-mel)
    flow_weight: float = 1.0  # of the flow-matching MSE in the loss
    flow_steps: int = 4  # Euler steps at synthesis; 0: the postnet output as is
    flow_temperature: float = 0.667  # scales the start's noise at synthesis

    def __post_init__(self):
        super().__post_init__()
        if self.flow_channels < 0 or self.flow_layers < 1 or self.flow_steps < 0 or self.flow_sigma <= 0:
            raise ValueError("flow_channels and flow_steps must be >= 0, flow_layers >= 1 and flow_sigma > 0")
        if self.flow_weight < 0 or self.flow_temperature < 0:
            raise ValueError("flow_weight and flow_temperature must be >= 0")
        if self.adversarial_weight < 0 or self.feature_matching_weight < 0:
            raise ValueError("adversarial_weight and feature_matching_weight must be >= 0")
        if self.discriminator_channels < 4 or self.discriminator_channels % 4 or self.discriminator_frames < 1:
            raise ValueError(f"discriminator_channels must be a positive multiple of 4 and discriminator_frames "
                             f">= 1, got {self.discriminator_channels} and {self.discriminator_frames}")


def step_durations(frames: torch.Tensor, reduction_factor: int) -> torch.Tensor:
    """Frames per token ``(B, L)`` (float or int; 0 on padding) -> decoder steps per token ``(B, L)``
    long. Token boundaries are rounded up to whole steps on the running sum, so rounding never
    accumulates and the steps of an item add up to ``ceil(frames.sum() / r)``."""
    boundaries = torch.ceil(frames.double().cumsum(-1) / reduction_factor - 1e-6).long().clamp(min=0)
    return torch.diff(boundaries, dim=-1, prepend=boundaries.new_zeros(boundaries.size(0), 1))


def regulate_length(x: torch.Tensor, steps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Repeat ``x (B, L, D)`` token ``l`` ``steps[:, l]`` times -> ``(B, S, D)`` (zero past each item's
    length) and the token index of every step ``(B, S)`` (``L`` past the end)."""
    ends = steps.cumsum(-1)  # (B, L)
    total = max(int(ends[:, -1].max()), 1)
    token = torch.searchsorted(ends, torch.arange(total, device=x.device).expand(x.size(0), total).contiguous(), right=True)
    valid = token < x.size(1)
    gathered = x.gather(1, token.clamp(max=x.size(1) - 1)[..., None].expand(-1, -1, x.size(2)))
    return gathered * valid[..., None], token


class FastSpeech(TransformerTextEncoder, AcousticModel):
    entry_keys = ("durations",)  # manifest keys the trainer requires (frames per token)

    @staticmethod
    def inference_options(options: dict) -> dict:
        """What a bundle for synthesis sets in the model ``options``: no discriminator, and no flow where
        synthesis skips it (``flow_steps`` 0)."""
        return {"adversarial_weight": 0.0} | ({"flow_channels": 0} if options.get("flow_steps") == 0 else {})

    def __init__(self, config: FastSpeechConfig):
        super().__init__(config)
        c = config
        self.init_text_encoder(c)
        self.duration_predictor = VariancePredictor(c.d_model, c.duration_channels, c.duration_kernel_size, c.dropout)
        self.decoder_position = PositionalEncoding(c.d_model, c.dropout, learned_scale=True)
        self.decoder = TransformerEncoder(c.decoder_layers, c.d_model, c.n_heads, c.d_ff, c.dropout)
        self.mel_proj = nn.Linear(c.d_model, c.n_mels * c.reduction_factor)
        self.discriminator = MelDiscriminator(c.discriminator_channels) if c.adversarial_weight > 0 else None
        self.flow = (MelFlow(c.n_mels, c.flow_channels, c.flow_layers, c.flow_kernel_size, c.flow_sigma)
                     if c.flow_channels > 0 else None)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The ``discriminator`` and the ``flow`` when present, and the rest (``generator``), each with its own
        optimizer, schedule and clipping in the trainer (``optim.groups``); without either, one group as for any model."""
        parts = {name: module for name, module in (("discriminator", self.discriminator), ("flow", self.flow))
                 if module is not None}
        if not parts:
            return {"all": list(self.parameters())}
        named = dict(self.named_parameters())
        rest = [p for name, p in named.items() if name.split(".")[0] not in parts]
        return {"generator": rest} | {name: list(module.parameters()) for name, module in parts.items()}

    def decode(self, memory: torch.Tensor, steps: torch.Tensor):
        """Encoder output ``(B, L, D)`` and decoder steps per token ``(B, L)`` -> ``(frames (B, S * r, M)``
        normalised, ``step_lengths (B,)``, ``alignment (B, S, L)`` one-hot token of each step)."""
        x, token = regulate_length(memory, steps)
        step_lengths = steps.sum(-1)
        out = self.decoder(self.decoder_position(x), key_padding_mask(step_lengths, x.size(1)))[0]
        alignment = F.one_hot(token, memory.size(1) + 1)[..., :-1].to(memory.dtype)
        return self.mel_proj(out).view(x.size(0), -1, self.n_mels), step_lengths, alignment

    def forward(self, batch: dict) -> dict:
        """``batch``: ``tokens (B, L)``, ``token_lengths``, ``mels (B, T, M)`` log-mel, ``mel_lengths``,
        ``durations (B, L)`` frames per token -> ``dict(loss, mel, duration)`` scalars (and the other
        :meth:`variance_targets`' MSEs). With a flow, its weighted ``flow`` MSE joins ``loss``. With a
        discriminator, training adds its ``loss_d`` and the weighted ``adversarial`` and ``feature_matching``
        losses to ``loss`` (:func:`gan_losses`: one backward gives each network only its own gradients);
        validation leaves them out, so checkpoints are still chosen on the mel and variance losses."""
        c = self.config
        before, after, predicted = self._predict_with_durations(batch)
        mels, lengths = self.normalize(batch["mels"]), batch["mel_lengths"]
        mel = mel_loss(before, mels, lengths, c.mel_loss) + mel_loss(after, mels, lengths, c.mel_loss)
        mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1))
        targets = self.variance_targets(batch)
        losses = {name: F.mse_loss(predicted[name].float()[mask], target[mask]) for name, (target, _) in targets.items()}
        loss = mel + sum(weight * losses[name] for name, (_, weight) in targets.items())
        parts = dict(mel=mel, **losses)
        if self.flow is not None:
            parts["flow"] = self.flow.loss(mels, after.detach(), lengths)
            loss = loss + c.flow_weight * parts["flow"]
        if self.discriminator is not None and self.training:
            real, fake = random_windows(mels, after, lengths, c.discriminator_frames)
            loss_d, adversarial, feature_matching = gan_losses(self.discriminator, real, fake)
            loss = loss + c.adversarial_weight * adversarial + c.feature_matching_weight * feature_matching + loss_d
            parts |= dict(loss_d=loss_d, adversarial=adversarial, feature_matching=feature_matching)
        return dict(loss=loss, **parts)

    def variance_targets(self, batch: dict) -> dict[str, tuple[torch.Tensor, float]]:
        """What the variance predictors learn: name -> ``(target (B, L), loss weight)``; here
        log(1 + frames) per token."""
        return {"duration": (torch.log1p(batch["durations"].float()), self.config.duration_weight)}

    def predict_variances(self, memory: torch.Tensor, token_lengths: torch.Tensor,
                          batch: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Encoder output ``(B, L, D)`` -> (the decoder's input ``(B, L, D)``, predictions name -> ``(B, L)``).
        FastSpeech predicts the durations only and passes ``memory`` on; FastSpeech 2 adds embeddings
        of its pitch and energy (the targets of a training ``batch``, else the predictions)."""
        return memory, {"duration": self.duration_predictor(memory, token_lengths)}

    def _predict_with_durations(self, batch: dict):
        """Teacher-forced on the durations (and the other variances): ``(before, after)`` normalised mels
        ``(B, T, M)`` cut to the batch's frames, and the predictions of :meth:`predict_variances`."""
        tokens, token_lengths, lengths = batch["tokens"], batch["token_lengths"], batch["mel_lengths"]
        memory, predicted = self.predict_variances(self.encode(tokens, token_lengths), token_lengths, batch)
        steps = step_durations(batch["durations"], self.reduction_factor)
        frames = self.decode(memory, steps)[0]
        T = batch["mels"].size(1)
        before = F.pad(frames, (0, 0, 0, max(T - frames.size(1), 0)))[:, :T]
        return before, self.refine(before, lengths), predicted

    @torch.no_grad()
    def generate(self, tokens: torch.Tensor, token_lengths: torch.Tensor, duration_scale: float = 1.0):
        """Synthesis in one pass: ``tokens (B, L)`` -> ``(mels (B, T, M)`` log-mel, ``lengths (B,)``
        frames, ``alignment (B, S, L)`` one-hot). ``duration_scale`` > 1 speaks slower; an item
        always gets at least one decoder step. A flow redraws the postnet's output with noise of a fixed seed, so
        the same text gives the same mels."""
        memory, predicted = self.predict_variances(self.encode(tokens, token_lengths), token_lengths)
        frames = torch.expm1(predicted["duration"]).clamp(min=0) * duration_scale
        frames = frames * sequence_mask(token_lengths, tokens.size(1))
        steps = step_durations(frames, self.reduction_factor)
        steps[:, 0] += (steps.sum(-1) == 0).long()  # never an empty utterance
        before, step_lengths, alignment = self.decode(memory, steps)
        lengths = step_lengths * self.reduction_factor
        before = before * sequence_mask(lengths, before.size(1))[..., None]
        return self._finish(self.refine(before, lengths), lengths), lengths, alignment

    @torch.no_grad()
    def aligned_mels(self, batch: dict) -> torch.Tensor:
        """The log-mels ``(B, T, M)`` the model makes on a training ``batch``'s durations (and, for FastSpeech 2,
        its pitch and energy): frame for frame in step with the recordings (``T`` = ``batch["mels"]``'s), the
        inputs on which a vocoder learns this model's mels (``speechs2s aligned-mels``)."""
        return self._finish(self._predict_with_durations(batch)[1], batch["mel_lengths"])

    def _finish(self, mels: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The postnet's normalised output ``(B, T, M)`` -> log-mels, redrawn by the flow (noise of a fixed seed) if any."""
        c = self.config
        if self.flow is not None and c.flow_steps > 0:
            noise_seed = torch.Generator(mels.device).manual_seed(0)
            mels = self.flow.sample(mels, lengths, c.flow_steps, c.flow_temperature, noise_seed)
        return self.denormalize(mels)

    @torch.no_grad()
    def validation_extras(self, batch: dict):
        """Duration accuracy (mean absolute error in frames per token, teacher durations) and the
        figures of the first item (its alignment from the teacher durations, mels)."""
        from speechs2s import plots

        before, after, predicted = self._predict_with_durations(batch)
        mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1))
        error = (torch.expm1(predicted["duration"]) - batch["durations"]).abs()[mask].mean()
        frames, tokens = int(batch["mel_lengths"][0]), int(batch["token_lengths"][0])
        steps = step_durations(batch["durations"][:1, :tokens], self.reduction_factor)
        alignment = regulate_length(torch.eye(tokens, device=steps.device)[None], steps)[0][0]
        figures = {"alignment": plots.plot_alignment(alignment, title=str(batch.get("ids", ["item 0"])[0])),
                   "mel": plots.plot_mels(batch["mels"][0, :frames], self.denormalize(after[0, :frames]))}
        return {"duration_error_frames": float(error)}, figures
