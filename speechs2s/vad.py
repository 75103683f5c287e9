"""Energy-based voice activity detection, used to cut long recordings into decodable segments.

Frame levels (RMS in dBFS over non-overlapping frames) are compared with two thresholds set
relative to the recording's noise floor (a low percentile of the levels): a frame above ``on``
starts speech, speech continues until the level falls below ``off`` (hysteresis). Pauses shorter
than ``min_silence_seconds`` are bridged, blips shorter than ``min_speech_seconds`` ignored, and
regions longer than ``max_segment_seconds`` are split at their quietest frame. A long file is
measured block by block, so only its frame levels (50 floats per second) stay in memory.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from speechs2s.audio import audio_info, iter_audio_blocks
from speechs2s.utils import to_numpy


@dataclass(frozen=True)
class VADConfig:
    """Levels in dB, durations in seconds."""

    frame_seconds: float = 0.02
    on_db: float = 12.0               # speech starts this far above the noise floor ...
    off_db: float = 6.0               # ... and lasts while the level stays this far above it
    presence_db: float = 3.0          # a short input has speech if its level varies this much (see has_speech)
    min_level_db: float = -55.0       # quieter frames (dBFS) are never speech
    floor_percentile: float = 10.0    # the noise floor is this percentile of the frame levels
    min_silence_seconds: float = 0.5  # shorter pauses do not end a region
    min_speech_seconds: float = 0.06  # shorter regions are clicks, not speech
    padding_seconds: float = 0.2      # kept around each region
    max_segment_seconds: float = 20.0


def frame_levels(wav: torch.Tensor | np.ndarray, frame_length: int) -> np.ndarray:
    """RMS level in dBFS of each whole frame of ``frame_length`` samples of ``wav (T,)``: ``(T // frame_length,)``."""
    wav = to_numpy(wav)
    frames = wav[: len(wav) // frame_length * frame_length].reshape(-1, frame_length)
    return 10 * np.log10(np.maximum(np.mean(frames.astype(np.float64) ** 2, axis=1), 1e-10))


def file_frame_levels(path: str | Path, frame_seconds: float, block_seconds: float = 60.0) -> tuple[np.ndarray, float]:
    """Frame levels of an audio file read block by block: ``(levels (frames,), frame duration in s)``.

    The last partial frame counts as a frame too, so ``frames * frame_duration`` covers the file.
    """
    rate = audio_info(path).sample_rate
    frame_length = max(1, round(frame_seconds * rate))
    levels, carry = [], np.zeros(0, dtype=np.float32)
    for block in iter_audio_blocks(path, block_seconds):
        samples = np.concatenate([carry, block.numpy()])
        whole = len(samples) // frame_length * frame_length
        levels.append(frame_levels(samples[:whole], frame_length))
        carry = samples[whole:]
    if len(carry):
        levels.append(frame_levels(carry, len(carry)))
    return np.concatenate(levels), frame_length / rate


def speech_segments(levels: np.ndarray, frame_seconds: float,
                    config: VADConfig = VADConfig()) -> list[tuple[float, float]]:
    """Frame levels (dBFS) -> speech segments ``[(start, end)]`` in seconds, each at most
    ``config.max_segment_seconds`` long, in order; empty when nothing is louder than the thresholds."""
    regions = _regions(levels, frame_seconds, config)
    pad = round(config.padding_seconds / frame_seconds)
    longest = _frames(config.max_segment_seconds, frame_seconds)
    segments = []
    for start, end in regions:
        start, end = max(0, start - pad), min(len(levels), end + pad)
        if segments and start <= segments[-1][1]:  # padding made them touch
            start = segments.pop()[0]
        segments.append((start, end))
    pieces = [piece for start, end in segments for piece in _split(levels, start, end, longest)]
    return [(start * frame_seconds, end * frame_seconds) for start, end in pieces]


def _frames(seconds: float, frame_seconds: float) -> int:
    return max(1, round(seconds / frame_seconds))


def _regions(levels: np.ndarray, frame_seconds: float, config: VADConfig) -> list[tuple[int, int]]:
    """Frame ranges ``[start, end)`` of speech by hysteresis thresholding."""
    if len(levels) == 0:
        return []
    min_silence = _frames(config.min_silence_seconds, frame_seconds)
    min_speech = _frames(config.min_speech_seconds, frame_seconds)
    on, off = _threshold(levels, config.on_db, config), _threshold(levels, config.off_db, config)
    regions, start, quiet = [], None, 0
    for i, level in enumerate(levels.tolist()):
        if start is None:
            if level > on:
                start, quiet = i, 0
        elif level < off:
            quiet += 1
            if quiet >= min_silence:
                regions.append((start, i + 1 - quiet))
                start = None
        else:
            quiet = 0
    if start is not None:
        regions.append((start, len(levels) - quiet))
    return [(s, e) for s, e in regions if e - s >= min_speech]


def _threshold(levels: np.ndarray, above_floor_db: float, config: VADConfig) -> float:
    """``above_floor_db`` over the noise floor of ``levels`` (dBFS), at least ``min_level_db``."""
    return max(config.min_level_db, np.percentile(levels, config.floor_percentile) + above_floor_db)


def sounding(wav: torch.Tensor, frame_length: int, config: VADConfig = VADConfig()) -> np.ndarray:
    """Which whole frames of ``frame_length`` samples of ``wav (T,)`` are louder than the level that
    ends speech (``off_db`` over the noise floor): bool ``(T // frame_length,)``."""
    levels = frame_levels(wav, frame_length)
    return levels > _threshold(levels, config.off_db, config) if len(levels) else np.zeros(0, dtype=bool)


def _split(levels: np.ndarray, start: int, end: int, longest: int) -> list[tuple[int, int]]:
    """Split frames ``[start, end)`` into pieces of at most ``longest`` frames, each cut at the
    quietest frame of the second half of the allowed span (the latest one on a tie, so speech
    without any dip is cut at the maximum length)."""
    pieces = []
    while end - start > longest:
        last = start + longest - 1
        cut = last - int(np.argmin(levels[last : start + longest // 2 - 1 : -1]))
        pieces.append((start, cut))
        start = cut
    return pieces + [(start, end)]


def has_speech(wav: torch.Tensor, sample_rate: int, config: VADConfig = VADConfig()) -> bool:
    """Whether ``wav (T,)`` holds any voice activity: at least ``min_speech_seconds`` of frames
    ``presence_db`` above the noise floor and above ``min_level_db``.

    Much looser than the segmentation thresholds, since a short clip may be (quiet) speech from end
    to end, so that its noise floor is speech too; silence and steady noise still have no such frames.
    """
    frame_length = max(1, round(config.frame_seconds * sample_rate))
    levels = frame_levels(wav, frame_length)
    if len(levels) == 0:
        return False
    return int((levels > _threshold(levels, config.presence_db, config)).sum()) >= _frames(config.min_speech_seconds, frame_length / sample_rate)
