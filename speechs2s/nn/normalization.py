"""Per-mel-bin feature normalisation kept inside a model, so that a checkpoint is self-contained."""
import torch


class FeatureNormalization:
    """Mixin for an ``nn.Module`` whose input (ASR) or target (TTS) log-mels are normalised inside it:
    ``mean`` and ``std`` buffers ``(M,)``, set from :func:`speechs2s.audio.compute_stats`."""

    def register_feature_stats(self, n_mels: int) -> None:
        """Create the buffers (identity normalisation until :meth:`set_feature_stats`); call in ``__init__``."""
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("std", torch.ones(n_mels))

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        """Store per-mel-bin ``mean (M,)`` and ``std (M,)`` (from ``audio.compute_stats``)."""
        self.mean.copy_(mean)
        self.std.copy_(std.clamp(min=1e-5))

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """``(..., M)`` log-mels -> zero mean, unit variance per mel bin."""
        return (features - self.mean) / self.std
