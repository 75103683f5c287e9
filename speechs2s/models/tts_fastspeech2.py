"""FastSpeech 2 (Ren et al. 2021), phoneme-level as in FastPitch (Łańcucki 2021): FastSpeech plus a
pitch and an energy predictor, each with a variance embedding.

Training targets per token (:class:`~speechs2s.data.datasets.VarianceTTSDataset`): the mean log-F0 of
its voiced frames and its mean log frame energy, normalised by mean and std (``variance_mean``,
``variance_std`` buffers, set from the first batch the model sees and kept in the checkpoint); a
token without voiced frames has pitch 0 (the mean). The predictors (the duration predictor's
structure, :class:`~speechs2s.models.tts_blocks.VariancePredictor`) read the encoder output; a 1-D
convolution of each value (the target in training, the prediction at synthesis) is added to it
before the length regulator. (``speak --pitch`` does not move the predicted log-F0, which moved the bundled
voice's pitch by only a fraction of what was asked: it shifts the waveform of any model,
:func:`speechs2s.pitch.shift_pitch`.) Every FastSpeech tensor keeps its name, so a trained FastSpeech starts
it (``trainer.init_from`` with ``trainer.init_from_partial``: the new parts start fresh).
"""
from dataclasses import dataclass

import torch
from torch import nn

from speechs2s.models.tts_blocks import VariancePredictor
from speechs2s.models.tts_fastspeech import FastSpeech, FastSpeechConfig
from speechs2s.nn.masks import sequence_mask

VARIANCES = ("pitch", "energy")  # per-token targets of the batch, in the order of the stats buffers


@dataclass
class FastSpeech2Config(FastSpeechConfig):
    variance_channels: int = 256  # pitch and energy predictors
    variance_kernel_size: int = 3
    embedding_kernel_size: int = 3  # the 1-D conv of the per-token value added to the encoder output
    pitch_weight: float = 0.1  # weight of the normalised pitch MSE in the loss
    energy_weight: float = 0.1


class FastSpeech2(FastSpeech):
    has_pitch = True  # predicts per-token pitch, and teacher-forcing takes the batch's

    def __init__(self, config: FastSpeech2Config):
        super().__init__(config)
        c = config
        self.pitch_predictor = VariancePredictor(c.d_model, c.variance_channels, c.variance_kernel_size, c.dropout)
        self.energy_predictor = VariancePredictor(c.d_model, c.variance_channels, c.variance_kernel_size, c.dropout)
        k = c.embedding_kernel_size
        self.pitch_embedding = nn.Conv1d(1, c.d_model, k, padding=k // 2)
        self.energy_embedding = nn.Conv1d(1, c.d_model, k, padding=k // 2)
        self.register_buffer("variance_mean", torch.full((len(VARIANCES),), torch.nan))  # NaN: not set yet
        self.register_buffer("variance_std", torch.full((len(VARIANCES),), torch.nan))

    def normalized_variances(self, batch: dict) -> dict[str, torch.Tensor]:
        """The batch's ``pitch`` and ``energy`` ``(B, L)`` (NaN: no value) -> zero mean, unit variance,
        0 where NaN or padding. The first batch seen sets the mean and std."""
        mask = sequence_mask(batch["token_lengths"], batch["tokens"].size(1))
        if self.variance_mean.isnan().any():
            for i, name in enumerate(VARIANCES):
                values = batch[name][mask & ~batch[name].isnan()].float()
                self.variance_mean[i], self.variance_std[i] = values.mean(), values.std().clamp(min=1e-3)
        return {name: torch.where(mask & ~batch[name].isnan(),
                                  (batch[name] - self.variance_mean[i]) / self.variance_std[i], 0.0)
                for i, name in enumerate(VARIANCES)}

    def variance_targets(self, batch: dict) -> dict[str, tuple[torch.Tensor, float]]:
        """log(1 + frames), normalised pitch and energy per token, and their loss weights."""
        c, normalized = self.config, self.normalized_variances(batch)
        return dict(super().variance_targets(batch), pitch=(normalized["pitch"], c.pitch_weight),
                    energy=(normalized["energy"], c.energy_weight))

    def predict_variances(self, memory: torch.Tensor, token_lengths: torch.Tensor,
                          batch: dict | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        _, predicted = super().predict_variances(memory, token_lengths)
        predicted["pitch"] = self.pitch_predictor(memory, token_lengths)
        predicted["energy"] = self.energy_predictor(memory, token_lengths)
        values = predicted if batch is None else self.normalized_variances(batch)  # teacher forcing
        embedded = self.pitch_embedding(values["pitch"][:, None]) + self.energy_embedding(values["energy"][:, None])
        return memory + embedded.transpose(1, 2).to(memory.dtype), predicted
