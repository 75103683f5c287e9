"""Map-style datasets over manifest entries: ASR (features, tokens), TTS (tokens, mel), vocoder (wav, mel).

Audio is read with :func:`speechs2s.audio.load_audio` at the feature sample rate (only the
``start``..``end`` part for segment entries). With a ``cache_dir``, the features of items that get no
speed perturbation are saved there as ``.npy`` on first use and read back afterwards (keyed by the
audio file, its size and mtime, the segment and the feature config), so later epochs skip decoding,
resampling and the STFT. An unreadable entry is logged and yields ``None``,
which the collate functions drop and count. Random choices (speed factor, vocoder segment, and the
``transform``'s, e.g. SpecAugment's masks) come from a generator seeded by ``(seed, epoch, index)``:
reproducible in any DataLoader worker, and the global RNGs are never touched.
"""
import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from speechs2s.audio import ASR_FEATURES, TTS_FEATURES, FeatureConfig, LogMel, load_audio
from speechs2s.data.augment import speed_perturb
from speechs2s.data.manifest import read_manifest
from speechs2s.errors import AudioError, ManifestError
from speechs2s.pitch import F_MAX, F_MIN, SILENCE_DB, THRESHOLD, VOICING, track_pitch

log = logging.getLogger(__name__)
PITCH_TRACKER = [F_MIN, F_MAX, THRESHOLD, VOICING, SILENCE_DB]  # in the pitch cache key


class AudioDataset(Dataset):
    """Base: entries (a list or a manifest path), seeded per-item randomness and safe loading.

    ``speed_perturb``: factors (e.g. ``[0.9, 1.0, 1.1]``) of which one is picked at random per item;
    ``channel_augment``: a waveform transform ``(wav, sample_rate, generator) -> wav`` applied after it
    (e.g. :class:`speechs2s.data.augment.ChannelAugment`).
    """

    def __init__(
        self,
        entries_or_path: list[dict] | str | os.PathLike,
        features: FeatureConfig,
        speed_perturb: list[float] | None = None,
        seed: int = 0,
        channel_augment=None,
    ):
        is_path = isinstance(entries_or_path, (str, os.PathLike))
        self.entries = read_manifest(entries_or_path) if is_path else list(entries_or_path)
        self.source = str(entries_or_path) if is_path else "entries"
        self.features = features
        self.log_mel = LogMel(features)
        self.speed_factors = tuple(speed_perturb or (1.0,))
        self.channel_augment = channel_augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random choices for ``epoch`` (call it with the sampler's ``set_epoch``)."""
        self.epoch = epoch

    @property
    def lengths(self) -> list[int]:
        """Feature frames per item from the manifest durations (no audio is read), at the slowest
        speed factor so a sampler's frame budget holds for any factor."""
        rate = self.features.sample_rate / min(self.speed_factors)
        return [math.ceil(entry["duration"] * rate) // self.features.hop_length + 1 for entry in self.entries]

    def _generator(self, index: int) -> torch.Generator:
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, index)) & (2**63 - 1))

    def _read(self, entry: dict, start: float = 0.0, end: float | None = None) -> torch.Tensor | None:
        """Seconds ``start``..``end`` (``None``: its end) of an entry's audio (itself maybe a segment) as a
        waveform ``(T,)`` at the feature rate; ``None`` (logged) if unreadable."""
        offset = entry.get("start", 0.0)
        try:
            return load_audio(entry["audio"], self.features.sample_rate, offset + start,
                              entry.get("end") if end is None else offset + end)
        except AudioError as error:
            log.warning("skipping %r: %s", entry["id"], error)
            return None

    def _load(self, index: int, generator: torch.Generator) -> torch.Tensor | None:
        """Waveform ``(T,)`` at the feature rate, speed-perturbed; ``None`` (logged) if unreadable."""
        entry = self.entries[index]
        wav = self._read(entry)
        if wav is None:
            return None
        factor = self.speed_factors[int(torch.randint(len(self.speed_factors), (), generator=generator))]
        wav = speed_perturb(wav, self.features.sample_rate, factor)
        if self.channel_augment is None:
            return wav
        try:
            return self.channel_augment(wav, self.features.sample_rate, generator)
        except Exception as error:  # a DataLoader worker passes on only type and message, and rebuilding some
            # types (soundfile's LibsndfileError) from a message fails: say here what failed, on which entry
            raise RuntimeError(f"channel augmentation failed on {entry['id']!r}: {type(error).__name__}: {error}") from error


class _TranscribedDataset(AudioDataset):
    """Items ``{"id", <feature_key>: (frames, M), "tokens": LongTensor (L,)}``; every entry needs ``text``.

    ``transform(features (frames, M), generator)`` (e.g. SpecAugment) draws from the item's generator,
    ``target_transform`` maps the token ids;
    ``cache_dir`` keeps computed features (see the module docstring; unused with speed perturbation or
    ``channel_augment``: their features change every epoch).
    """

    feature_key: str
    default_features: FeatureConfig

    def __init__(
        self,
        entries_or_path: list[dict] | str | os.PathLike,
        tokenizer,
        features: FeatureConfig | None = None,
        transform=None,
        target_transform=None,
        speed_perturb: list[float] | None = None,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        channel_augment=None,
    ):
        super().__init__(entries_or_path, features or self.default_features, speed_perturb, seed, channel_augment)
        fixed = self.speed_factors == (1.0,) and channel_augment is None
        self.cache_dir = Path(cache_dir) if cache_dir is not None and fixed else None
        untranscribed = [entry["id"] for entry in self.entries if not isinstance(entry.get("text"), str)]
        if untranscribed:
            raise ManifestError(f"{self.source}: {len(untranscribed)} entries have no 'text', first: {untranscribed[0]!r}")
        self.tokenizer = tokenizer
        self.transform = transform
        self.target_transform = target_transform

    def __getitem__(self, index: int) -> dict | None:
        generator = self._generator(index)
        features = self._features(index, generator)
        if features is None:
            return None
        tokens = torch.tensor(self.tokenizer.encode(self.entries[index]["text"]), dtype=torch.long)
        if self.transform is not None:
            features = self.transform(features, generator)
        if self.target_transform is not None:
            tokens = self.target_transform(tokens)
        return {"id": self.entries[index]["id"], self.feature_key: features, "tokens": tokens}

    def _features(self, index: int, generator: torch.Generator) -> torch.Tensor | None:
        """Log-mel ``(frames, M)`` of item ``index`` (from the cache when there); ``None`` if unreadable."""
        def log_mel():
            wav = self._load(index, generator)
            return None if wav is None else self.log_mel(wav)

        return self._cached(index, log_mel)

    def _cached(self, index: int, compute, *key) -> torch.Tensor | None:
        """``compute()`` for item ``index``, or its cached result (``cache_dir``; ``key``: what else
        the result depends on, beyond the audio and the feature config). ``None`` is not cached."""
        cached = self._cache_path(index, *key)
        if cached is not None and cached.exists():
            return torch.from_numpy(np.load(cached))
        result = compute()
        if result is not None and cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            partial = cached.with_name(f"{cached.name}.{os.getpid()}.part")  # workers may race: rename is atomic
            with open(partial, "wb") as file:
                np.save(file, result.numpy())
            os.replace(partial, cached)
        return result

    def _cache_path(self, index: int, *key) -> Path | None:
        if self.cache_dir is None:
            return None
        entry = self.entries[index]
        try:
            stat = os.stat(entry["audio"])
        except OSError:
            return None  # unreadable: _load reports it
        key = json.dumps([os.path.abspath(entry["audio"]), stat.st_size, stat.st_mtime_ns, entry.get("start"),
                          entry.get("end"), self.features.to_dict(), *key])
        digest = hashlib.sha1(key.encode()).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.npy"


class ASRDataset(_TranscribedDataset):
    """ASR items ``{"id", "features": (frames, M), "tokens": (L,)}``; features default to ``ASR_FEATURES``."""

    feature_key = "features"
    default_features = ASR_FEATURES


class TTSDataset(_TranscribedDataset):
    """TTS items ``{"id", "tokens": (L,), "mel": (frames, M)}``; features default to ``TTS_FEATURES``.
    An entry whose text has no tokens (e.g. only non-Latin script) is logged and its item is ``None``.

    An entry with ``durations`` (mel frames per token, written by ``speechs2s durations``; FastSpeech
    trains on them) adds ``"durations": LongTensor (L,)``; durations that no longer fit the item
    (another tokenizer or feature config) are logged and the item is ``None``."""

    feature_key = "mel"
    default_features = TTS_FEATURES

    def __getitem__(self, index: int) -> dict | None:
        item = super().__getitem__(index)
        entry = self.entries[index]
        if item is not None and len(item["tokens"]) == 0:  # nothing to attend to: the loss would be NaN
            log.warning("skipping %r: its text %r has nothing to speak", item["id"], entry["text"])
            return None
        if item is not None and "durations" in entry:
            durations = torch.tensor(entry["durations"], dtype=torch.long)
            if len(durations) != len(item["tokens"]) or int(durations.sum()) != len(item["mel"]):
                log.warning("skipping %r: its %d durations (%d frames) do not fit its %d tokens and %d frames; "
                            "write them again with this tokenizer and feature config", item["id"], len(durations),
                            int(durations.sum()), len(item["tokens"]), len(item["mel"]))
                return None
            item["durations"] = durations
        return item


class VarianceTTSDataset(TTSDataset):
    """FastSpeech 2 items: :class:`TTSDataset`'s (entries need ``durations``) plus, per token,
    ``"pitch": (L,)`` the mean natural-log F0 (Hz) of its voiced frames and ``"energy": (L,)`` the mean
    log frame energy (log of the L2 norm of the mel magnitudes), both NaN for a token without such
    frames. F0 comes from :func:`speechs2s.pitch.track_pitch`, cached in ``cache_dir`` beside the mels."""

    def __getitem__(self, index: int) -> dict | None:
        item = super().__getitem__(index)
        if item is None:
            return None
        if "durations" not in item:
            raise ManifestError(f"{self.source}: {item['id']!r} has no durations (write them with 'speechs2s durations')")
        generator = self._generator(index)  # the same draws as the mel's, so the same audio

        def f0():
            wav = self._load(index, generator)
            return None if wav is None else track_pitch(wav, self.features.sample_rate, self.features.hop_length)

        frames = self._cached(index, f0, "yin", PITCH_TRACKER)
        if frames is None:
            return None
        log_f0 = torch.where(frames > 0, frames.clamp(min=1e-5).log(), torch.nan)[:len(item["mel"])]
        energy = 0.5 * torch.logsumexp(item["mel"], -1)  # log sqrt(sum of the mel power)
        item["pitch"], item["energy"] = token_means(log_f0, item["durations"]), token_means(energy, item["durations"])
        return item


def token_means(values: torch.Tensor, durations: torch.Tensor) -> torch.Tensor:
    """Frame values ``(T,)`` (NaN: no value) and frames per token ``(L,)`` adding up to ``T`` -> the mean
    of each token's frames that have a value ``(L,)``, NaN for a token with none."""
    token = torch.repeat_interleave(torch.arange(len(durations)), durations)
    known = ~values.isnan()
    sums = torch.zeros(len(durations)).index_add_(0, token, torch.where(known, values, 0.0))
    counts = torch.zeros(len(durations)).index_add_(0, token, known.float())
    return sums / counts  # 0 / 0 = NaN


class VocoderDataset(AudioDataset):
    """Random fixed-length pieces for vocoder (HiFi-GAN, Vocos) training:
    ``{"id", "wav": (segment_frames * hop_length,), "mel": (segment_frames, M)}``.

    Only the piece and its STFT context (``n_fft / 2`` either side) is decoded, and its mel is that
    slice of the whole utterance's mel: frame ``i`` of the piece is centred on its sample ``i * hop_length``
    (a decoder that seeks inexactly, as libsndfile's Vorbis by up to a few hundred samples, moves the
    piece, never this pairing). Utterances shorter than a piece are read whole and zero-padded.
    An entry with ``mel`` (a ``.npy`` of the whole utterance's ``(frames, M)`` log-mels, as
    :func:`~speechs2s.data.durations.write_aligned_mels` writes them) gives its frames instead of the recording's.
    """

    def __init__(
        self,
        entries_or_path: list[dict] | str | os.PathLike,
        features: FeatureConfig = TTS_FEATURES,
        segment_frames: int = 32,
        seed: int = 0,
    ):
        super().__init__(entries_or_path, features, seed=seed)
        self.segment_frames = segment_frames
        self.context_frames = -(-features.n_fft // 2 // features.hop_length)  # frames either side the STFT reaches

    @property
    def lengths(self) -> list[int]:
        return [self.segment_frames] * len(self.entries)

    def __getitem__(self, index: int) -> dict | None:
        entry, generator = self.entries[index], self._generator(index)
        hop, samples = self.features.hop_length, self.segment_frames * self.features.hop_length
        total = round(entry["duration"] * self.features.sample_rate)
        first = int(torch.randint(max(0, total - samples) // hop + 1, (), generator=generator))
        if total > samples:
            # given mels are paired by position, so decode from the start: a seek can be inexact (see above)
            start = 0 if "mel" in entry else max(0, first - self.context_frames)
            end = (first + self.segment_frames + self.context_frames) * hop
            item = self._piece(entry, start, end if end < total else None, first - start)
            if item is None or len(item["wav"]) == samples:
                return item
        # a short utterance, or one shorter than its manifest says: read whole, zero-padded
        return self._piece(entry, 0, None, min(first, max(0, total - samples) // hop), pad_to=samples)

    def _piece(self, entry: dict, start: int, end: int | None, first: int, pad_to: int = 0) -> dict | None:
        """Read frames ``start`` (at ``hop_length``) to sample ``end`` (``None``: the end), zero-padded to
        ``pad_to`` samples, and cut the segment that begins ``first`` frames in; ``None`` (logged) if unreadable."""
        rate, hop = self.features.sample_rate, self.features.hop_length
        wav = self._read(entry, start * hop / rate, None if end is None else end / rate)
        if wav is None:
            return None
        wav = torch.nn.functional.pad(wav, (0, max(0, pad_to - wav.numel())))
        first = min(first, (wav.numel() - self.segment_frames * hop) // hop)
        lo = max(0, first - self.context_frames)  # the STFT of the segment and its context only
        mel = self.log_mel(wav[lo * hop : (first + self.segment_frames + self.context_frames) * hop])
        mel = mel[first - lo : first - lo + self.segment_frames]
        if "mel" in entry:  # the given mels where they reach (past the recording's end, the padding's own)
            given = np.load(entry["mel"], mmap_mode="r")[start + first : start + first + self.segment_frames]
            mel[:len(given)] = torch.from_numpy(given.astype(np.float32))
        return {"id": entry["id"], "wav": wav[first * hop : (first + self.segment_frames) * hop], "mel": mel}


class TextDataset(Dataset):
    """Language-model items ``{"id", "tokens": LongTensor (L,)}`` from sentences: a text file (one
    sentence per line, blank lines skipped) or a manifest's ``text``. Sentences with no tokens are left out
    (counted in ``skipped``). ``lengths`` are tokens per item plus one (``<eos>``), for bucketing."""

    def __init__(self, path_or_texts: str | os.PathLike | list[str], tokenizer):
        texts = read_sentences(path_or_texts) if isinstance(path_or_texts, (str, os.PathLike)) else path_or_texts
        encoded = [tokenizer.encode(text) for text in texts]
        self.tokens = [torch.tensor(ids, dtype=torch.long) for ids in encoded if ids]
        self.skipped = len(encoded) - len(self.tokens)

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def lengths(self) -> list[int]:
        return [len(tokens) + 1 for tokens in self.tokens]

    def __getitem__(self, index: int) -> dict:
        return {"id": str(index), "tokens": self.tokens[index]}


def read_text_entries(path: str | os.PathLike) -> list[dict]:
    """A language model's sentences (text file or manifest) as entries ``{"id", "text"}``."""
    return [{"id": f"{path}:{number}", "text": text} for number, text in enumerate(read_sentences(path), 1)]


def read_sentences(path: str | os.PathLike) -> list[str]:
    """Sentences of a text file (one per line, blank lines skipped) or of a JSONL manifest's ``text``."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [entry["text"] for entry in read_manifest(path) if isinstance(entry.get("text"), str)]
    try:
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: cannot read text ({error})") from None
