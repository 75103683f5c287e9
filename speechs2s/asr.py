"""Speech recognition API: ``load_asr(...)`` -> :class:`ASR` -> ``transcribe(...)``.

>>> asr = load_asr("default")
>>> asr.transcribe("speech.wav")
'hello world'
>>> asr.transcribe_segments("meeting.flac")  # long files are cut at silences
[Segment(start=0.42, end=7.9, text='...'), ...]

Inputs are cut into pieces of at most ``max_segment_seconds``: a short input is one piece, a long
file is measured block by block and split at silences (:mod:`speechs2s.vad`), so memory stays
bounded whatever the file length. Pieces of all inputs are sorted by duration and decoded in
batches of at most ``batch_seconds`` of padded audio. A piece without voice activity decodes to
nothing (no hallucinated text on silence).
"""
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from speechs2s.audio import FeatureConfig, LogMel, audio_info, load_audio
from speechs2s.decode.asr import DecodeConfig
from speechs2s.decode.asr import decode as decode_tokens  # `decode` names the DecodeConfig parameters below
from speechs2s.errors import AudioError, ManifestError, SpeechS2SError
from speechs2s.vad import VADConfig, file_frame_levels, frame_levels, has_speech, speech_segments

Audio = str | Path | torch.Tensor  # a file, or a mono waveform (T,) at the model's sample rate
MIN_SECONDS = 0.1  # shorter pieces are padded with silence (the encoders need a few frames)


@dataclass
class Segment:
    """Recognised text of ``start``..``end`` (seconds from the start of the input)."""

    start: float
    end: float
    text: str


@dataclass
class Transcript:
    """Result for one input: ``text`` (segments joined), ``duration`` of the audio and the
    ``seconds`` spent on it (its share of each batch, by duration); ``failure`` says why it failed."""

    source: str
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0
    seconds: float = 0.0
    failure: SpeechS2SError | None = None

    @property
    def error(self) -> str | None:
        """The failure as one line, or None."""
        return str(self.failure) if self.failure else None

    @property
    def rtf(self) -> float:
        """Real-time factor: processing seconds per second of audio."""
        return self.seconds / self.duration if self.duration else 0.0


@dataclass
class _Input:
    """One input as read: a file (optionally only ``start``..``end`` of it) or a waveform."""

    source: str | Path | torch.Tensor
    start: float = 0.0
    end: float | None = None

    @property
    def name(self) -> str:
        return "<waveform>" if isinstance(self.source, torch.Tensor) else str(self.source)


@dataclass
class _Piece:
    """Seconds ``start``..``end`` of input number ``index``; ``check_voice`` when not chosen by the VAD."""

    index: int
    start: float
    end: float
    check_voice: bool


class ASR:
    """A speech recogniser: model (decoder protocol of :mod:`speechs2s.decode.asr`), tokenizer and features."""

    def __init__(self, model, tokenizer, features: FeatureConfig, device: str | torch.device | None = None,
                 max_segment_seconds: float = 20.0, batch_seconds: float | None = None, vad: VADConfig | None = None,
                 lm=None, decode: DecodeConfig | None = None):
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model = model.to(self.device).eval()
        self.lm = lm.to(self.device).eval() if lm is not None else None  # shallow fusion in beam search
        self.decode = decode or DecodeConfig()  # used when a call passes none
        self.tokenizer = tokenizer
        self.features = features
        self.log_mel = LogMel(features).to(self.device)
        # padded audio per decoding batch: on CPU bigger batches only add padding and memory (measured:
        # joe-lj dev RTF 0.051 at 30 s, 0.070 at 240 s, 1 thread); a GPU wants them big
        self.batch_seconds = batch_seconds or (240.0 if self.device.type == "cuda" else 30.0)
        self.vad = dataclasses.replace(vad or VADConfig(), max_segment_seconds=max_segment_seconds)

    def transcribe(self, audio: Audio | list[Audio], decode: DecodeConfig | None = None) -> str | list[str]:
        """Text of one input, or a list of texts for a list of inputs (decoded together in batches).

        A waveform is a mono tensor ``(T,)`` at ``self.features.sample_rate``. Raises the first
        input's :class:`SpeechS2SError` if any input fails; :meth:`transcribe_files` reports
        failures per input instead.
        """
        single = not isinstance(audio, (list, tuple))
        transcripts = self.transcribe_files([audio] if single else audio, decode)
        for transcript in transcripts:
            if transcript.failure:
                raise transcript.failure
        texts = [transcript.text for transcript in transcripts]
        return texts[0] if single else texts

    def transcribe_segments(self, audio: Audio, decode: DecodeConfig | None = None) -> list[Segment]:
        """Timed segments of one input (long inputs are split at silences); silent parts are left out."""
        (transcript,) = self.transcribe_files([audio], decode)
        if transcript.failure:
            raise transcript.failure
        return transcript.segments

    def transcribe_files(self, inputs: list[Audio], decode: DecodeConfig | None = None,
                         progress: bool = False) -> list[Transcript]:
        """One :class:`Transcript` per input, in order; an input that fails (unreadable file, ...) gets
        its ``failure`` set and the others are still transcribed."""
        return self._run([_Input(source) for source in inputs], decode or self.decode, progress)

    def evaluate(self, manifest: str | Path | list[dict], decode: DecodeConfig | None = None,
                 progress: bool = False) -> "Evaluation":
        """Transcribe every entry of a manifest (path or entries with ``audio`` and ``text``; ``start``/``end``
        honoured) and score it. An entry that fails to transcribe counts with an empty hypothesis."""
        from speechs2s.data.manifest import read_manifest

        where = "manifest" if isinstance(manifest, list) else manifest
        entries = manifest if isinstance(manifest, list) else read_manifest(manifest)
        for entry in entries:
            if "text" not in entry:
                raise ManifestError(f"{where}: entry {entry['id']!r} has no text to score against")
        inputs = [_Input(entry["audio"], entry.get("start", 0.0), entry.get("end")) for entry in entries]
        transcripts = self._run(inputs, decode or self.decode, progress)
        return Evaluation([_score(entry, transcript) for entry, transcript in zip(entries, transcripts)])

    def _run(self, inputs: list[_Input], config: DecodeConfig, progress: bool) -> list[Transcript]:
        transcripts = [Transcript(item.name) for item in inputs]
        pieces = []
        for index, item in enumerate(inputs):
            try:
                transcripts[index].duration, spans = self._plan(item)
            except SpeechS2SError as error:
                transcripts[index].failure = error
                continue
            pieces += [_Piece(index, start, end, check_voice) for start, end, check_voice in spans]
        batches = self._batches(pieces)
        for batch in tqdm(batches, desc="transcribe", unit="batch", disable=not progress, leave=False):
            began = time.perf_counter()
            texts = self._decode_batch(inputs, batch, transcripts, config)
            elapsed = time.perf_counter() - began
            total = sum(piece.end - piece.start for piece in batch)
            for piece, text in zip(batch, texts):
                transcripts[piece.index].seconds += elapsed * (piece.end - piece.start) / total
                if text:
                    transcripts[piece.index].segments.append(Segment(piece.start, piece.end, text))
        for transcript in transcripts:
            transcript.segments.sort(key=lambda segment: segment.start)
            transcript.text = " ".join(segment.text for segment in transcript.segments)
        return transcripts

    def _plan(self, item: _Input) -> tuple[float, list[tuple[float, float, bool]]]:
        """Duration of an input and its pieces ``(start, end, check_voice)``."""
        sample_rate = self.features.sample_rate
        if isinstance(item.source, torch.Tensor):
            if item.source.dim() != 1:
                raise AudioError(f"waveform must be mono (T,), got shape {tuple(item.source.shape)}")
            end = len(item.source) / sample_rate
        else:
            info = audio_info(item.source)
            end = info.duration if item.end is None else min(item.end, info.duration)
        duration = end - item.start
        if duration <= 0:
            raise AudioError(f"{item.name}: contains no audio samples")
        if duration <= self.vad.max_segment_seconds:
            return duration, [(item.start, end, True)]
        if isinstance(item.source, torch.Tensor) or item.start or item.end is not None:
            frame_length = round(self.vad.frame_seconds * sample_rate)
            levels = frame_levels(self._read(item, item.start, end), frame_length)
            frame_seconds = frame_length / sample_rate
        else:
            levels, frame_seconds = file_frame_levels(item.source, self.vad.frame_seconds)
        spans = speech_segments(levels, frame_seconds, self.vad)  # seconds from item.start
        return duration, [(item.start + a, item.start + min(b, duration), False) for a, b in spans]

    def _read(self, item: _Input, start: float, end: float) -> torch.Tensor:
        """Samples ``start``..``end`` (seconds) of an input at the feature sample rate: ``(T,)``."""
        sample_rate = self.features.sample_rate
        if isinstance(item.source, torch.Tensor):
            return item.source[round(start * sample_rate) : round(end * sample_rate)].float()
        return load_audio(item.source, sample_rate, start, end)

    def _batches(self, pieces: list[_Piece]) -> list[list[_Piece]]:
        """Pieces sorted longest first, grouped so that ``len(batch) * longest <= batch_seconds``."""
        batches = []
        for piece in sorted(pieces, key=lambda piece: piece.start - piece.end):
            if batches and (len(batches[-1]) + 1) * (batches[-1][0].end - batches[-1][0].start) <= self.batch_seconds:
                batches[-1].append(piece)
            else:
                batches.append([piece])
        return batches

    @torch.no_grad()
    def _decode_batch(self, inputs: list[_Input], batch: list[_Piece], transcripts: list[Transcript],
                      config: DecodeConfig) -> list[str]:
        """Texts of a batch of pieces ("" for silent or failed ones; failures are set on the transcript)."""
        sample_rate = self.features.sample_rate
        wavs = {}
        for i, piece in enumerate(batch):
            try:
                wav = self._read(inputs[piece.index], piece.start, piece.end)
            except SpeechS2SError as error:
                transcripts[piece.index].failure = error
                continue
            if not piece.check_voice or has_speech(wav, sample_rate, self.vad):
                wavs[i] = wav
        if not wavs:
            return [""] * len(batch)
        shortest = round(MIN_SECONDS * sample_rate)
        # features per piece (a padded batch would change the last frames' reflect padding), then padded
        features = [self.log_mel(F.pad(wav, (0, max(0, shortest - len(wav)))).to(self.device)) for wav in wavs.values()]
        feature_lengths = torch.tensor([len(f) for f in features], device=self.device)
        features = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)  # (B, frames, M)
        dtype = next(self.model.parameters()).dtype
        tokenizer = self.tokenizer
        tokens = decode_tokens(self.model, features.to(dtype), feature_lengths, config, tokenizer.eos_id,
                               tokenizer.blank_id, self.lm)
        texts = [""] * len(batch)
        for i, ids in zip(wavs, tokens):
            texts[i] = self.tokenizer.decode(ids)
        return texts


@dataclass
class Evaluation:
    """Scores of a transcribed manifest; ``rows`` has one dict per utterance
    (``id, ref, hyp, sub, del, ins, ref_words, duration, seconds, error``)."""

    rows: list[dict]

    @property
    def wer(self) -> float:
        from speechs2s.metrics import wer

        return wer([row["ref"] for row in self.rows], [row["hyp"] for row in self.rows])

    @property
    def cer(self) -> float:
        from speechs2s.metrics import cer

        return cer([row["ref"] for row in self.rows], [row["hyp"] for row in self.rows])

    @property
    def rtf(self) -> float:
        """Processing seconds per second of audio over the whole manifest."""
        audio = sum(row["duration"] for row in self.rows)
        return sum(row["seconds"] for row in self.rows) / audio if audio else 0.0

    @property
    def failed(self) -> int:
        return sum(row["error"] is not None for row in self.rows)

    def summary(self) -> str:
        """One line: WER (with its parts), CER, utterance count, failures and real-time factor."""
        words = sum(row["ref_words"] for row in self.rows) or 1
        parts = ", ".join(f"{key} {100 * sum(row[key] for row in self.rows) / words:.2f}%"
                          for key in ("sub", "del", "ins"))
        audio_hours = sum(row["duration"] for row in self.rows) / 3600
        return (f"WER {100 * self.wer:.2f}% ({parts}) | CER {100 * self.cer:.2f}% | {len(self.rows)} utterances "
                f"({audio_hours:.2f} h), {self.failed} failed | RTF {self.rtf:.3f}")

    def write_report(self, path: str | Path) -> None:
        """Per-utterance TSV: ``id ref hyp sub del ins error``."""
        columns = ("id", "ref", "hyp", "sub", "del", "ins", "error")
        lines = ["\t".join(columns)] + ["\t".join(_tsv_field(row[key]) for key in columns) for row in self.rows]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _tsv_field(value) -> str:
    """A value on one line without tabs ("" for None)."""
    return "" if value is None else " ".join(str(value).split())


def _score(entry: dict, transcript: Transcript) -> dict:
    from speechs2s.metrics import error_counts

    counts = error_counts(entry["text"], transcript.text)
    return {"id": entry["id"], "ref": entry["text"], "hyp": transcript.text, **counts,
            "duration": transcript.duration, "seconds": transcript.seconds, "error": transcript.error}


def load_asr(name_or_path: str | Path = "default", device: str | torch.device | None = None,
             lm: str | Path | None = None, **options) -> ASR:
    """Load a recogniser from a checkpoint directory, a training output folder or a bundled model
    name (``"default"``); ``device`` defaults to CUDA when available. ``lm``: a language model trained with
    this model's tokenizer, fused into beam search with the weights tuned for it (``fusion.json``; pass
    ``decode=DecodeConfig(lm_weight=..., length_bonus=...)`` to override). ``options`` go to :class:`ASR`
    (``max_segment_seconds``, ``batch_seconds``, ``vad``, ``decode``)."""
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device

    device = select_device(device)
    model, tokenizer, config = load_checkpoint(name_or_path, device, task="asr")
    if lm is not None:
        from speechs2s.lm import load_lm

        options["lm"] = load_lm(lm, device, tokenizer)
        if "decode" not in options:
            from speechs2s.fusion import read_fusion

            weights = read_fusion(lm)
            options["decode"] = DecodeConfig(lm_weight=weights.lm_weight, length_bonus=weights.length_bonus)
    return ASR(model, tokenizer, FeatureConfig.from_dict(config["features"]), device, **options)

