"""Audio in and out, and the log-mel features every model consumes.

Reading goes through soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF, ...), never
``torchaudio.load``. Everything comes back as mono float32 in [-1, 1] as a ``torch.Tensor (T,)``;
a user-caused problem (missing, empty, corrupt or non-audio file) raises
:class:`~speechs2s.errors.AudioError` with one line ``"<path>: <reason>"``.
"""
import contextlib
import functools
import math
import os
import struct
import sys
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn

from speechs2s.errors import AudioError, ConfigError
from speechs2s.utils import one_line, replacing, to_numpy, write_error_reason

AudioSource = str | Path | BinaryIO  # a path, or a seekable binary file object (e.g. io.BytesIO of a file's bytes)

# Context (seconds) read on each side of a segment before resampling, so that segments resampled
# one at a time join seamlessly (the resampling filter is ~1 ms wide at the lowest common rate).
_RESAMPLE_CONTEXT_S = 0.05


@dataclass(frozen=True)
class AudioInfo:
    """Header facts about an audio file: ``duration`` in seconds."""

    duration: float
    sample_rate: int
    channels: int
    frames: int


def source_name(source: AudioSource) -> str:
    """How errors name an audio source: its path, or a file object's ``name`` (``"<audio bytes>"`` without one)."""
    return str(source) if isinstance(source, (str, Path)) else str(getattr(source, "name", "<audio bytes>"))


def _open(source: AudioSource) -> sf.SoundFile:
    """Open ``source`` for reading, turning every failure into a one-line :class:`AudioError`."""
    name = source_name(source)
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise AudioError(f"{name}: no such file")
        if path.is_dir():
            raise AudioError(f"{name}: is a directory, not an audio file")
        if path.stat().st_size == 0:
            raise AudioError(f"{name}: empty file (0 bytes)")
    else:
        source.seek(0)  # libsndfile reads a file object from where it stands
        if not source.read(1):
            raise AudioError(f"{name}: empty (0 bytes)")
        source.seek(0)
    try:
        with _native_stderr_silenced():
            return sf.SoundFile(source)
    except sf.LibsndfileError as error:
        reason = error.error_string.strip()
        if reason.startswith("File does not exist"):  # libsndfile's words when no decoder accepts the data
            reason = "unknown format or corrupt data"
        raise AudioError(f"{name}: not a readable audio file ({reason})") from None
    except (sf.SoundFileError, RuntimeError, TypeError, ValueError) as error:
        raise AudioError(f"{name}: not a readable audio file ({one_line(error)})") from None


@contextlib.contextmanager
def _native_stderr_silenced():
    """Point file descriptor 2 at /dev/null meanwhile: libmpg123, which libsndfile probes MP3 data
    with, prints notes ("Trying to resync...") there for non-MP3 bytes; the failure still raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _read_mono(file: sf.SoundFile, name: str, start: int, stop: int) -> torch.Tensor:
    """Frames ``[start, stop)`` of an open file, channels averaged: float32 ``(stop - start,)``
    (shorter if the file ends early)."""
    try:
        file.seek(start)
        samples = file.read(stop - start, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, ValueError) as error:
        raise AudioError(f"{name}: cannot decode audio ({one_line(error)})") from None
    if not np.isfinite(samples).all():
        raise AudioError(f"{name}: contains NaN/inf samples")
    return torch.from_numpy(samples.mean(axis=1, dtype=np.float32))


def _read_segment(file: sf.SoundFile, name: str, start: int, stop: int, sample_rate: int | None) -> torch.Tensor:
    """Frames ``[start, stop)`` (at the file's rate) as mono float32 at ``sample_rate``.

    When resampling a segment of a longer file, up to ``_RESAMPLE_CONTEXT_S`` of context on each
    side is resampled with it and then trimmed, so consecutive segments whose boundaries are whole
    multiples of ``file.samplerate // gcd(file.samplerate, sample_rate)`` concatenate to exactly
    the resampled whole file.
    """
    rate = file.samplerate
    if not sample_rate or sample_rate == rate:
        return _read_mono(file, name, start, stop)
    step = rate // math.gcd(rate, sample_rate)  # input frames per whole number of output samples
    context = step * math.ceil(_RESAMPLE_CONTEXT_S * rate / step)
    lo, hi = max(0, start - context), min(file.frames, stop + context)
    wav = torchaudio.functional.resample(_read_mono(file, name, lo, hi), rate, sample_rate)
    offset = (start - lo) * sample_rate // rate
    length = -(-(min(stop, file.frames) - start) * sample_rate // rate)  # ceil, as resample does
    return wav[offset : offset + length]


def load_audio(
    source: AudioSource, sample_rate: int | None = None, start: float = 0.0, end: float | None = None
) -> torch.Tensor:
    """Read an audio file (a path or a seekable binary file object) as mono float32 ``(T,)``, resampled
    to ``sample_rate`` Hz when given.

    ``start``/``end`` (seconds) read only that part of the file, so a long recording can be
    processed piece by piece; see also :func:`iter_audio_blocks`. Channels are averaged.
    Raises :class:`AudioError` if the file is missing, empty, undecodable, has no samples in the
    requested range, or contains NaN/inf samples.
    """
    name = source_name(source)
    with _open(source) as file:
        if file.frames == 0:
            raise AudioError(f"{name}: contains no audio samples")
        first = max(0, round(start * file.samplerate))
        last = file.frames if end is None else min(file.frames, round(end * file.samplerate))
        if first >= last:
            segment = f"{start:g}-{'end' if end is None else f'{end:g}'} s"
            raise AudioError(f"{name}: no audio in segment {segment} (file is {file.frames / file.samplerate:.2f} s long)")
        wav = _read_segment(file, name, first, last, sample_rate)
    if wav.numel() == 0:
        raise AudioError(f"{name}: contains no audio samples (truncated file?)")
    return wav


def iter_audio_blocks(source: AudioSource, block_seconds: float = 30.0, sample_rate: int | None = None) -> Iterator[torch.Tensor]:
    """Yield a long file as consecutive mono float32 blocks ``(T_block,)`` of about ``block_seconds``.

    Only one block (plus a little resampling context) is in memory at a time; the blocks
    concatenate to exactly ``load_audio(source, sample_rate)``.
    """
    name = source_name(source)
    with _open(source) as file:
        if file.frames == 0:
            raise AudioError(f"{name}: contains no audio samples")
        rate = file.samplerate
        step = rate // math.gcd(rate, sample_rate or rate)
        block = step * max(1, round(block_seconds * rate / step))
        for start in range(0, file.frames, block):
            yield _read_segment(file, name, start, min(start + block, file.frames), sample_rate)


def audio_info(source: AudioSource) -> AudioInfo:
    """Duration, rate, channels and frame count from the file header, without decoding samples."""
    with _open(source) as file:
        return AudioInfo(file.frames / file.samplerate, file.samplerate, file.channels, file.frames)


# suffixes of the audio files a folder given as input is searched for
READ_SUFFIXES = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64"})
# suffix -> (libsndfile format, subtype) of the files written
WRITE_FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "ogg": ("OGG", "VORBIS"),
                 "mp3": ("MP3", "MPEG_LAYER_III")}


class StreamedWav:
    """16-bit PCM WAV written to a binary ``stream`` as the samples come: ``write(samples (T,) or (T, channels)
    float in [-1, 1])`` sends and flushes them at once, ``frames`` counts them. The header gives the length as
    unknown (0xFFFFFFFF), which players and libsndfile read as "up to the end of the stream", so that
    ``speak ... -o - | aplay`` starts with the first sentences (Piper's ``--output-raw`` habit)."""

    def __init__(self, stream: BinaryIO, sample_rate: int, channels: int = 1):
        self.stream, self.channels, self.frames = stream, channels, 0
        unknown = struct.pack("<I", 0xFFFFFFFF)
        fmt = struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, 2 * channels * sample_rate, 2 * channels, 16)
        self._send(b"RIFF" + unknown + b"WAVEfmt " + fmt + b"data" + unknown)

    def write(self, samples: np.ndarray) -> None:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1, self.channels)
        self._send((np.clip(samples, -1.0, 1.0) * 32767).round().astype("<i2").tobytes())
        self.frames += len(samples)

    def _send(self, data: bytes) -> None:
        try:
            self.stream.write(data)
            self.stream.flush()
        except BrokenPipeError:
            raise AudioError("<stdout>: the program reading the audio stopped reading") from None


@contextlib.contextmanager
def audio_writer(path: str | Path, sample_rate: int, channels: int = 1,
                 large: bool = False) -> Iterator[sf.SoundFile | StreamedWav]:
    """An audio file open for writing, in the format of ``path``'s suffix (:data:`WRITE_FORMATS`;
    ``"-"``: WAV streamed to stdout, :class:`StreamedWav`). ``large``: may pass 4 GB, so WAV is written as RF64.

    Samples go to a temporary file beside ``path`` that replaces it only once the ``with`` block
    ends without an error, so an interrupted write (Ctrl-C, a crash) leaves no truncated file and
    an older file of that name stays intact. Parent folders are created. A path that cannot be
    written raises :class:`AudioError`.
    """
    if str(path) == "-":
        yield StreamedWav(sys.stdout.buffer, sample_rate, channels)
        return
    path = Path(path)
    name = str(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in WRITE_FORMATS:
        known = ", ".join(f".{known}" for known in WRITE_FORMATS)
        raise AudioError(f"{name}: cannot write audio as {path.suffix or 'a file without suffix'!r} (use {known})")
    file_format, subtype = WRITE_FORMATS[suffix]
    if large and file_format == "WAV":
        file_format = "RF64"
    with replacing(path) as temporary:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise IsADirectoryError("is a directory")
            file = sf.SoundFile(temporary, "w", sample_rate, channels, subtype, format=file_format)
        except (OSError, sf.SoundFileError, RuntimeError, ValueError) as error:
            reason = write_error_reason(error) if isinstance(error, OSError) else getattr(error, "error_string", None)
            raise AudioError(f"{name}: cannot write audio ({(reason or one_line(error)).strip()})") from None
        with file:
            yield file


def save_audio(path: str | Path, wav: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write ``wav`` ``(T,)`` (or ``(T, channels)``), float in [-1, 1] (clipped beyond), to ``path``
    through :func:`audio_writer`: format from the suffix (WAV and FLAC 16-bit PCM, OGG Vorbis, MP3),
    ``"-"`` for WAV on stdout, parent folders created, written atomically."""
    wav = to_numpy(wav)
    if wav.ndim not in (1, 2):
        raise ValueError(f"save_audio expects (T,) or (T, channels), got shape {wav.shape}")
    with audio_writer(path, sample_rate, channels=1 if wav.ndim == 1 else wav.shape[1]) as file:
        file.write(np.clip(wav, -1.0, 1.0))


@dataclass(frozen=True)
class FeatureConfig:
    """Log-mel feature parameters: rates in Hz, sizes in samples."""

    sample_rate: int = 16000
    n_fft: int = 400
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        for key in d:
            if key not in known:
                raise ConfigError(f"features.{key}: unknown feature option (known: {', '.join(sorted(known))})")
        return cls(**d)


ASR_FEATURES = FeatureConfig(sample_rate=16000, n_fft=400, win_length=400, hop_length=160, n_mels=80)
TTS_FEATURES = FeatureConfig(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, f_max=8000.0)


class LogMel(nn.Module):
    """Waveform ``(T,)`` or ``(B, T)`` -> natural-log power mel ``(frames, M)`` or ``(B, frames, M)``.

    Centered STFT with reflect padding (``frames = T // hop_length + 1``), Hann window, slaney mel
    scale and area normalisation (librosa's defaults), power clamped at 1e-5 before the log.
    Always computed in float32, also under autocast.
    """

    def __init__(self, config: FeatureConfig):
        super().__init__()
        self.config = config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=config.sample_rate,
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            power=2.0,
            center=True,
            pad_mode="reflect",
            norm="slaney",
            mel_scale="slaney",
        )

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=wav.device.type, enabled=False):
            mel = self.mel(wav.float())  # (..., M, frames)
        return mel.clamp(min=1e-5).log().transpose(-1, -2)


@functools.lru_cache(maxsize=8)
def _inverse_mel_filterbank(config: FeatureConfig) -> torch.Tensor:
    """Moore-Penrose pseudo-inverse of the slaney mel filterbank: ``(M, n_fft // 2 + 1)``."""
    filterbank = torchaudio.functional.melscale_fbanks(
        n_freqs=config.n_fft // 2 + 1,
        f_min=config.f_min,
        f_max=config.f_max if config.f_max is not None else config.sample_rate / 2,
        n_mels=config.n_mels,
        sample_rate=config.sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )  # (F, M)
    return torch.linalg.pinv(filterbank.double()).float()


def mel_to_linear(log_mel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Log power mel ``(frames, M)`` or ``(B, frames, M)`` -> linear magnitude ``(..., n_fft // 2 + 1, frames)``.

    Uses the filterbank's pseudo-inverse (the minimum-norm least-squares power spectrum, clamped at
    0): one matrix product, unlike an iterative inverse. The result feeds Griffin-Lim with ``power=1``.
    """
    inverse = _inverse_mel_filterbank(config).to(log_mel.device)
    power = log_mel.float().exp() @ inverse  # (..., frames, F)
    return power.clamp(min=0).sqrt().transpose(-1, -2)


def compute_stats(entries: list[dict], config: FeatureConfig, max_files: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-mel-bin mean and std ``(M,)`` of :class:`LogMel` features over the entries' ``"audio"`` files
    (only ``start``..``end`` of segment entries).

    ``max_files`` limits the work to that many files spread evenly over ``entries``. Unreadable
    files are skipped with one warning that counts them.
    """
    from tqdm import tqdm

    if max_files is not None and len(entries) > max_files:
        entries = [entries[i * len(entries) // max_files] for i in range(max_files)]
    log_mel = LogMel(config)
    total = torch.zeros(config.n_mels, dtype=torch.float64)
    total_sq = torch.zeros(config.n_mels, dtype=torch.float64)
    frames, skipped = 0, []
    for entry in tqdm(entries, desc="feature stats", unit="file", leave=False, disable=None):
        try:
            wav = load_audio(entry["audio"], config.sample_rate, entry.get("start", 0.0), entry.get("end"))
        except AudioError as error:
            skipped.append(str(error))
            continue
        with torch.no_grad():
            features = log_mel(wav).double()
        total += features.sum(0)
        total_sq += features.square().sum(0)
        frames += features.shape[0]
    if skipped:
        warnings.warn(f"compute_stats skipped {len(skipped)} unreadable file(s), first: {skipped[0]}", stacklevel=2)
    if frames == 0:
        raise AudioError(f"compute_stats: none of the {len(entries)} audio files could be read")
    mean = total / frames
    std = (total_sq / frames - mean.square()).clamp(min=1e-10).sqrt()
    return mean.float(), std.float()
