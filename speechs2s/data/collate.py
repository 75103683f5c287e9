"""Collate dataset items into padded batches with explicit lengths (padding value 0).

Items that are ``None`` (audio that could not be read; the dataset logged why) are dropped and
counted in the batch's ``"skipped"``. A batch whose items were all unreadable collates to ``None``,
which the trainer skips.
"""
import torch
from torch.nn.utils.rnn import pad_sequence

from speechs2s.errors import ManifestError

PER_TOKEN_KEYS = ("durations", "pitch", "energy")  # optional TTS targets, one value per token


def collate_asr(items: list[dict | None]) -> dict | None:
    """``{"ids": list[str], "features": (B, T, M), "feature_lengths": (B,), "tokens": (B, L),
    "token_lengths": (B,), "skipped": int}``."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    features, feature_lengths = _pad([item["features"] for item in kept])
    tokens, token_lengths = _pad([item["tokens"] for item in kept])
    return {
        "ids": [item["id"] for item in kept],
        "features": features,
        "feature_lengths": feature_lengths,
        "tokens": tokens,
        "token_lengths": token_lengths,
        "skipped": len(items) - len(kept),
    }


def collate_tts(items: list[dict | None]) -> dict | None:
    """``{"ids", "tokens": (B, L), "token_lengths": (B,), "mels": (B, T, M), "mel_lengths": (B,), "skipped"}``,
    plus ``"durations"``, ``"pitch"``, ``"energy"`` ``(B, L)`` when the items have them (all or none: a mixed
    manifest is an error)."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    tokens, token_lengths = _pad([item["tokens"] for item in kept])
    mels, mel_lengths = _pad([item["mel"] for item in kept])
    batch = {
        "ids": [item["id"] for item in kept],
        "tokens": tokens,
        "token_lengths": token_lengths,
        "mels": mels,
        "mel_lengths": mel_lengths,
        "skipped": len(items) - len(kept),
    }
    for key in PER_TOKEN_KEYS:
        present = sum(key in item for item in kept)
        if present == len(kept):
            batch[key] = _pad([item[key] for item in kept])[0]
        elif present:
            missing = next(item["id"] for item in kept if key not in item)
            raise ManifestError(f"{missing!r} has no {key} while others in its batch have them")
    return batch


def collate_vocoder(items: list[dict | None]) -> dict | None:
    """Fixed-length segments: ``{"ids", "wavs": (B, S), "mels": (B, frames, M), "skipped"}``."""
    kept = [item for item in items if item is not None]
    if not kept:
        return None
    return {
        "ids": [item["id"] for item in kept],
        "wavs": torch.stack([item["wav"] for item in kept]),
        "mels": torch.stack([item["mel"] for item in kept]),
        "skipped": len(items) - len(kept),
    }


def collate_text(items: list[dict]) -> dict:
    """``{"ids", "tokens": (B, L), "token_lengths": (B,), "skipped": 0}`` for a language model."""
    tokens, token_lengths = _pad([item["tokens"] for item in items])
    return {"ids": [item["id"] for item in items], "tokens": tokens, "token_lengths": token_lengths, "skipped": 0}


def _pad(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, T_max, ...)`` zero-padded along the first dim, and the lengths ``LongTensor (B,)``."""
    lengths = torch.tensor([len(sequence) for sequence in sequences], dtype=torch.long)
    return pad_sequence(sequences, batch_first=True, padding_value=0), lengths
