"""Speech recognition API: ``load_asr(...)`` -> :class:`ASR` -> ``transcribe(...)``.

>>> asr = load_asr("default")
>>> result = asr.transcribe("speech.wav")       # or a numpy array / tensor with sample_rate=...
>>> result.text
'hello world'
>>> result.segments                             # long files are cut at silences
[Segment(start=0.42, end=7.9, text='hello world', words=[...])]
>>> result.words
[Word(text='hello', start=0.46, end=0.81, confidence=0.93), Word(text='world', ...)]

Inputs are cut into pieces of at most ``max_segment_seconds``: a short input is one piece, a long
file is measured block by block and split at silences (:mod:`speechs2s.vad`), so memory stays
bounded whatever the file length. Pieces of all inputs are sorted by duration and decoded in
batches of at most ``batch_seconds`` of padded audio. A piece without voice activity decodes to
nothing (no hallucinated text on silence).

Word times come from CTC forced alignment of the decoded tokens on the CTC head
(:mod:`speechs2s.decode.align`): a word spans its first token's first frame to its last token's last
frame, widened over the frames around it that still sound (:func:`speechs2s.vad.sounding`), since
CTC emits a token on a frame or two; never into the neighbouring words. A model trained without CTC
head (``ctc_weight: 0``) gives words without times or confidence (``None``), as does a piece whose
hypothesis has more tokens than CTC can place.

Hotwords (contextual biasing, :mod:`speechs2s.decode.hotwords`): names and terms the recogniser should
favour, e.g. ``load_asr("default", hotwords=["Nguyen", "Kubernetes"])`` or per call
``asr.transcribe("a.wav", hotwords=[...], hotword_bonus=3.0)``. Each completed phrase earns
``hotword_bonus`` per token in beam search; a partial match that fails earns nothing. A model trained
with a copy mechanism (``bias_phrases``, :mod:`speechs2s.models.asr_bias`) also reads the phrases itself
and may copy their tokens into the output; ``hotword_bonus=0`` leaves only that (and allows greedy decoding).
"""
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from tqdm import tqdm

from speechs2s.audio import AudioSource, FeatureConfig, LogMel, audio_info, load_audio, source_name
from speechs2s.decode.align import align_tokens
from speechs2s.decode.asr import DecodeConfig, decode_encoded, search_ctc_weight
from speechs2s.decode.hotwords import DEFAULT_BONUS, build_context_graph
from speechs2s.errors import AudioError, ConfigError, ManifestError, SpeechS2SError
from speechs2s.vad import VADConfig, file_frame_levels, frame_levels, has_speech, sounding, speech_segments

# a file (path or seekable binary file object), or a waveform: mono (T,), float in [-1, 1], with its sample_rate
Audio = AudioSource | np.ndarray | torch.Tensor
MIN_SECONDS = 0.1  # shorter pieces are padded with silence (the encoders need a few frames)
DEFAULT_ENDPOINT_SILENCE = 1.0  # seconds of pause after text that end a streamed segment (WeNet's rule 2)
OWN_LM_DIR = "lm"  # a checkpoint folder's own language model (load_asr(lm="auto"))


@dataclass
class Word:
    """A recognised word, ``start``..``end`` seconds from the start of the input; ``confidence`` is the
    mean CTC posterior (0..1) of its tokens on their aligned frames. Times and confidence are None
    when the model has no CTC head or the alignment is impossible."""

    text: str
    start: float | None = None
    end: float | None = None
    confidence: float | None = None


@dataclass
class Segment:
    """Recognised text of ``start``..``end`` (seconds from the start of the input) and its words."""

    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)


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
    def words(self) -> list[Word]:
        """The words of all segments, in order."""
        return [word for segment in self.segments for word in segment.words]

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

    source: AudioSource | torch.Tensor  # a tensor is a mono waveform at the model's rate
    start: float = 0.0
    end: float | None = None

    @property
    def name(self) -> str:
        return "<waveform>" if isinstance(self.source, torch.Tensor) else source_name(self.source)


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
                 lm=None, decode: DecodeConfig | None = None, hotwords: list[str] | None = None,
                 hotword_bonus: float = DEFAULT_BONUS):
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
        self.set_hotwords(hotwords, hotword_bonus)

    def set_hotwords(self, hotwords: list[str] | None, bonus: float = DEFAULT_BONUS) -> None:
        """Bias every later call towards these phrases (None or ``[]``: no biasing); ``bonus`` per token
        of a completed phrase in beam search (a model with a copy mechanism also reads the phrases).
        A phrase the tokenizer cannot spell raises :class:`ConfigError`."""
        self.hotwords, self.hotword_bonus = list(hotwords or []), bonus
        self.context = build_context_graph(self.hotwords, self.tokenizer, bonus)

    def _context(self, hotwords, bonus):
        """The hotword graph of a call: its own list and bonus, else the recogniser's."""
        if hotwords is None and bonus is None:
            return self.context
        phrases = self.hotwords if hotwords is None else hotwords
        return build_context_graph(phrases, self.tokenizer, self.hotword_bonus if bonus is None else bonus)

    def transcribe(self, audio: Audio | list[Audio], decode: DecodeConfig | None = None, *,
                   sample_rate: int | None = None, hotwords: list[str] | None = None,
                   hotword_bonus: float | None = None) -> Transcript | list[Transcript]:
        """The :class:`Transcript` (``.text``, ``.segments``, ``.words``) of one input, or a list of them
        for a list of inputs (decoded together in batches).

        A waveform (numpy array or tensor, mono ``(T,)``, float in [-1, 1]) needs its ``sample_rate``
        (any rate: it is resampled to the model's). Raises the first input's :class:`SpeechS2SError`
        if any input fails; :meth:`transcribe_files` reports failures per input instead. ``hotwords`` and
        ``hotword_bonus`` replace the recogniser's (:meth:`set_hotwords`) for this call (``[]``: none).
        """
        single = not isinstance(audio, (list, tuple))
        transcripts = self.transcribe_files([audio] if single else audio, decode, sample_rate=sample_rate,
                                            hotwords=hotwords, hotword_bonus=hotword_bonus)
        for transcript in transcripts:
            if transcript.failure:
                raise transcript.failure
        return transcripts[0] if single else transcripts

    def transcribe_files(self, inputs: list[Audio], decode: DecodeConfig | None = None,
                         progress: bool = False, *, sample_rate: int | None = None,
                         hotwords: list[str] | None = None, hotword_bonus: float | None = None) -> list[Transcript]:
        """One :class:`Transcript` per input, in order; an input that fails (unreadable file, ...) gets
        its ``failure`` set and the others are still transcribed. Waveforms are as in :meth:`transcribe`;
        a waveform without ``sample_rate`` raises :class:`AudioError` at once (a mistake in the call)."""
        context = self._context(hotwords, hotword_bonus)
        return self._run([self._input(audio, sample_rate) for audio in inputs], decode or self.decode, progress, context)

    def stream(self, chunk_size: int | None = None, left_chunks: int = -1, decode: DecodeConfig | None = None,
               final: str = "full", endpoint_silence: float | None = DEFAULT_ENDPOINT_SILENCE):
        """A :class:`~speechs2s.decode.stream.Stream` for audio arriving block by block:
        ``accept(samples) -> partial text``, ``finish() -> Transcript``. ``chunk_size``: encoder frames per
        chunk (×4 subsampling: 40 ms each; default 8), ``left_chunks``: earlier chunks each frame sees (-1: all);
        ``decode``: the search of partials (``beam_size``) and of the final pass; ``final``: ``"full"`` (the segment
        encoded again with full context, then the beam search: the offline transcript), ``"beam"`` (that search over
        the streamed encoder output) or ``"rescore"`` (attention rescoring of the CTC n-best, WeNet's);
        ``endpoint_silence``: seconds of pause after text that end a segment (``stream.segments``; None: one utterance)."""
        from speechs2s.decode.stream import DEFAULT_CHUNK_SIZE, Stream

        return Stream(self, DEFAULT_CHUNK_SIZE if chunk_size is None else chunk_size, left_chunks, decode, final,
                      endpoint_silence)

    def _input(self, audio: Audio, sample_rate: int | None) -> _Input:
        """A file as is; a waveform checked and resampled to the model's rate."""
        if not isinstance(audio, (np.ndarray, torch.Tensor)):
            return _Input(audio)
        if sample_rate is None:
            raise AudioError("waveform: give its sample rate, e.g. transcribe(wav, sample_rate=16000)")
        wav = torch.as_tensor(audio)
        if not wav.is_floating_point():
            dtype = str(wav.dtype).removeprefix("torch.")
            raise AudioError(f"waveform: expected float samples in [-1, 1], got {dtype} (for int16: samples / 32768)")
        if wav.dim() != 1:
            raise AudioError(f"waveform must be mono (T,), got shape {tuple(wav.shape)}")
        wav = wav.detach().float().cpu()
        if sample_rate != self.features.sample_rate:
            wav = torchaudio.functional.resample(wav, sample_rate, self.features.sample_rate)
        return _Input(wav)

    def evaluate(self, manifest: str | Path | list[dict], decode: DecodeConfig | None = None,
                 progress: bool = False, *, hotwords: list[str] | None = None,
                 hotword_bonus: float | None = None) -> "Evaluation":
        """Transcribe every entry of a manifest (path or entries with ``audio`` and ``text``; ``start``/``end``
        honoured) and score it. An entry that fails to transcribe counts with an empty hypothesis.
        ``hotwords``, ``hotword_bonus`` as in :meth:`transcribe`."""
        from speechs2s.data.manifest import read_manifest

        where = "manifest" if isinstance(manifest, list) else manifest
        entries = manifest if isinstance(manifest, list) else read_manifest(manifest)
        for entry in entries:
            if "text" not in entry:
                raise ManifestError(f"{where}: entry {entry['id']!r} has no text to score against")
        inputs = [_Input(entry["audio"], entry.get("start", 0.0), entry.get("end")) for entry in entries]
        context = self._context(hotwords, hotword_bonus)
        transcripts = self._run(inputs, decode or self.decode, progress, context)
        return Evaluation([_score(entry, transcript) for entry, transcript in zip(entries, transcripts)])

    def _run(self, inputs: list[_Input], config: DecodeConfig, progress: bool, context=None) -> list[Transcript]:
        beam = config.mode == "beam" and search_ctc_weight(self.model, config.ctc_weight) < 1
        copy_only = (config.mode == "greedy" and self.model.bias is not None
                     and context is not None and not context.bonus)
        if context is not None and not (beam or copy_only):
            raise ConfigError("hotwords work in the joint attention/CTC beam search only "
                              "(decode mode beam with a CTC weight below 1 and a model with an attention decoder), "
                              "or in greedy decoding with hotword_bonus=0 by a model with a copy mechanism "
                              "(bias_phrases)")
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
            segments = self._decode_batch(inputs, batch, transcripts, config, context)
            elapsed = time.perf_counter() - began
            total = sum(piece.end - piece.start for piece in batch)
            for piece, segment in zip(batch, segments):
                transcripts[piece.index].seconds += elapsed * (piece.end - piece.start) / total
                if segment and segment.text:
                    transcripts[piece.index].segments.append(segment)
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
                      config: DecodeConfig, context=None) -> list[Segment | None]:
        """The segment of each piece of a batch (None for silent or failed ones; failures are set on the transcript)."""
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
        segments = [None] * len(batch)
        if not wavs:
            return segments
        shortest = round(MIN_SECONDS * sample_rate)
        # features per piece (a padded batch would change the last frames' reflect padding), then padded
        features = [self.log_mel(F.pad(wav, (0, max(0, shortest - len(wav)))).to(self.device)) for wav in wavs.values()]
        feature_lengths = torch.tensor([len(f) for f in features], device=self.device)
        features = torch.nn.utils.rnn.pad_sequence(features, batch_first=True)  # (B, frames, M)
        dtype = next(self.model.parameters()).dtype
        enc, enc_lengths = self.model.encode(features.to(dtype), feature_lengths)
        tokens = decode_encoded(self.model, enc, enc_lengths, config, self.tokenizer.eos_id, self.tokenizer.blank_id,
                                self.lm, context)
        ctc_log_probs = self.model.ctc_log_probs(enc) if self.model.config.ctc_weight > 0 else None
        for row, (i, ids) in enumerate(zip(wavs, tokens)):
            piece, frames = batch[i], int(enc_lengths[row])
            spans = align_tokens(ctc_log_probs[row, :frames], ids, self.tokenizer.blank_id) if ctc_log_probs is not None else None
            frame_seconds = int(feature_lengths[row]) * self.features.hop_length / sample_rate / frames
            words = self._words(ids, spans, wavs[i], piece, frame_seconds)
            segments[i] = Segment(piece.start, piece.end, self.tokenizer.decode(ids), words)
        return segments

    def _words(self, ids: list[int], spans: list | None, wav: torch.Tensor, piece: _Piece,
               frame_seconds: float) -> list[Word]:
        """The words of a piece's tokens, timed by their alignment ``spans`` (encoder frames of
        ``frame_seconds``; None: untimed) and widened over the sounding frames around them."""
        groups = self.tokenizer.word_positions(ids)
        if spans is None:
            return [Word(self.tokenizer.decode([ids[p] for p in positions])) for positions in groups]
        loud = sounding(wav, round(frame_seconds * self.features.sample_rate), self.vad)
        bounds = [(spans[positions[0]].start, spans[positions[-1]].end) for positions in groups]
        words = []
        for k, positions in enumerate(groups):
            start, end = bounds[k]
            previous_end = bounds[k - 1][1] if k else 0
            next_start = bounds[k + 1][0] if k + 1 < len(bounds) else len(loud)
            while start > previous_end and start <= len(loud) and loud[start - 1]:
                start -= 1
            while end < min(next_start, len(loud)) and loud[end]:
                end += 1
            confidence = sum(spans[p].score for p in positions) / len(positions)
            words.append(Word(self.tokenizer.decode([ids[p] for p in positions]),
                              min(piece.end, piece.start + start * frame_seconds),
                              min(piece.end, piece.start + end * frame_seconds), confidence))
        return words


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
             lm: str | Path | None = "auto", **options) -> ASR:
    """Load a recogniser from a checkpoint directory, a training output folder or a bundled model
    name (``"default"``); ``device`` defaults to CUDA when available. ``lm``: a language model trained with
    this model's tokenizer, fused into beam search with the weights tuned for it (``fusion.json``; pass
    ``decode=DecodeConfig(lm_weight=..., length_bonus=...)`` to override); ``"auto"``: the model's own LM
    (the ``lm/`` folder of its checkpoint, as bundled with asr-default) if it has one; ``None``: none.
    ``options`` go to :class:`ASR` (``max_segment_seconds``, ``batch_seconds``, ``vad``, ``decode``,
    ``hotwords``, ``hotword_bonus``)."""
    from speechs2s.checkpoint import load_checkpoint, resolve_checkpoint
    from speechs2s.utils import select_device

    device = select_device(device)
    model, tokenizer, config = load_checkpoint(name_or_path, device, task="asr")
    if lm == "auto":
        own = resolve_checkpoint(name_or_path, task="asr") / OWN_LM_DIR
        lm = own if own.is_dir() else None
    if lm is not None:
        from speechs2s.lm import load_lm

        options["lm"] = load_lm(lm, device, tokenizer)
        if "decode" not in options:
            from speechs2s.fusion import read_fusion

            weights = read_fusion(lm)
            options["decode"] = DecodeConfig(lm_weight=weights.lm_weight, length_bonus=weights.length_bonus)
    return ASR(model, tokenizer, FeatureConfig.from_dict(config["features"]), device, **options)

