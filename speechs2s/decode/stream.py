"""Streaming ASR: text while the audio still arrives (WeNet U2 two-pass decoding, Zhang et al. 2020).

>>> stream = load_asr("default").stream(chunk_size=8)
>>> for block in blocks:                 # float samples (n,) at the model's rate, any block size
...     print(stream.accept(block))      # partial text: CTC prefix beam search over the segment's frames so far
>>> stream.finish().text                 # final text: a second pass over each segment (stream.segments)

The encoder runs chunk-wise (``chunk_size`` encoder frames of 40 ms at ×4 subsampling, each frame
attending to its chunk and ``left_chunks`` chunks before it; see :meth:`TransformerASR.attention_chunks`):
a chunk is encoded once its audio (plus 30 ms of subsampling look-ahead and 12.5 ms of STFT window)
has arrived, and its output never changes afterwards. Instead of caching every layer's keys and
values (WeNet), each new chunk re-encodes the window of earlier frames its output depends on
(:meth:`streaming_context`: ``layers * left_chunks`` chunks; the whole stream so far for
``left_chunks = -1``, whose cost grows with the stream). Hence streaming gives exactly the chunk-wise
offline decode of ``model.encode(..., chunk_size, left_chunks)``.

The final text comes from a second pass, ``final``:

- ``"full"`` (default): the utterance's features encoded again with full context, then the joint attention/CTC
  beam search of offline decoding (``decode_encoded``): exactly the offline transcript (what ``transcribe``
  without ``--stream`` prints for it), for one more encoder pass over the utterance when it ends (the bundled
  model: +0.04 s median final-word latency at chunk 8, ``benchmarks/results/streaming/streaming-20261129-165229.json``
  against ``-165051.json``); the partials are unchanged;
- ``"beam"``: that beam search over the streamed encoder output; it loses what chunking costs the encoder (the
  bundled model: +12% relative WER at chunk 8 on joe-lj dev LJ002-0076..0150);
- ``"rescore"``: WeNet's attention rescoring of the CTC prefix beam search's n-best (:func:`two_pass_decode`
  offline) over the streamed encoder output: cheaper at the end of an utterance, bounded by the CTC n-best.

All three use the recogniser's language model and hotwords, if it has them.

A live stream is cut into segments at pauses (WeNet's endpoint rules), so that a microphone left on
for an hour costs what its last segment costs: the segment ends, and gets its final pass, once its encoder
frames have been CTC blank for ``endpoint_silence`` seconds (default 1 s) after some text, or for
``IDLE_SECONDS`` without any (that audio is dropped untranscribed), or once it is the recogniser's
``vad.max_segment_seconds`` long (20 s, as offline). It is cut in the middle of its trailing blank run, so the
next segment starts with half of that pause. ``endpoint_silence=None`` decodes the whole stream as one utterance.

Any Transformer or causal-convolution Conformer ASR model streams; one trained with full context
(``chunk_size: 0``) runs chunk-wise with a WER cost (``benchmarks/streaming.py``), one trained with
``dynamic_chunk_training`` at little cost.
"""
import time
from collections.abc import Iterable, Iterator
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F

from speechs2s.asr import DEFAULT_ENDPOINT_SILENCE, MIN_SECONDS, Segment, Transcript, _Piece
from speechs2s.decode.align import align_tokens
from speechs2s.decode.asr import (
    DecodeConfig,
    Hypothesis,
    copy_phrases,
    ctc_prefix_beams,
    decode_encoded,
    prefix_hypotheses,
    search_ctc_weight,
)
from speechs2s.errors import ConfigError
from speechs2s.nn.masks import sequence_mask
from speechs2s.vad import has_speech

# encoder frames per chunk by default: 8 x 40 ms = 0.32 s, so that the first partial comes within 0.5 s
# of speech with the bundled model (benchmarks/results/streaming)
DEFAULT_CHUNK_SIZE = 8
FINAL_PASSES = ("full", "beam", "rescore")
IDLE_SECONDS = 5.0  # seconds of blank without text that end a segment, dropped (WeNet's rule 1)
BLANK_PROBABILITY = 0.8  # an encoder frame is a pause when its CTC blank probability is above this


class Stream:
    """Audio decoded as it arrives: :meth:`accept` blocks of samples (the current segment's partial text
    back; ``segments``: those ended at pauses so far), then :meth:`finish` (the :class:`Transcript`). Made by
    :meth:`ASR.stream`."""

    def __init__(self, asr, chunk_size: int = DEFAULT_CHUNK_SIZE, left_chunks: int = -1, decode: DecodeConfig | None = None,
                 final: Literal["full", "beam", "rescore"] = "full",
                 endpoint_silence: float | None = DEFAULT_ENDPOINT_SILENCE):
        model = asr.model
        if not hasattr(model, "streaming_context"):
            raise ConfigError(f"streaming needs a Transformer or Conformer ASR model, not {type(model).__name__}")
        if model.config.ctc_weight == 0:
            raise ConfigError("streaming needs a model with a CTC head (this one was trained with ctc_weight: 0)")
        if chunk_size < 1 or left_chunks < -1:
            raise ConfigError(f"streaming needs chunk_size >= 1 and left_chunks >= -1, got {chunk_size} and {left_chunks}")
        if not getattr(model.config, "causal_conv", True):
            raise ConfigError("streaming a conformer_asr needs a model trained with causal_conv: true")
        if final not in FINAL_PASSES:
            raise ConfigError(f"final pass must be {', '.join(FINAL_PASSES[:-1])} or {FINAL_PASSES[-1]}, got {final!r}")
        if endpoint_silence is not None and endpoint_silence <= 0:
            raise ConfigError(f"endpoint_silence must be positive seconds (or None), got {endpoint_silence}")
        self.asr, self.model, self.final = asr, model, final
        self.chunk_size, self.left_chunks = chunk_size, left_chunks
        self.decode = decode or asr.decode
        self.endpoint_silence = endpoint_silence
        self.past_frames = model.streaming_context(chunk_size, left_chunks)  # encoder frames re-encoded, None: all
        self.hop, self.half_window = asr.features.hop_length, asr.features.n_fft // 2
        self.frame_seconds = model.subsampling.factor * self.hop / asr.features.sample_rate  # per encoder frame
        self.segments = []  # Segments ended at pauses so far
        self.seconds = 0.0  # processing time so far
        self._start_segment(torch.zeros(0), 0.0)

    def _start_segment(self, samples: torch.Tensor, offset: float) -> None:
        """Begin a segment at ``offset`` seconds into the stream with the ``samples (n,)`` received after it."""
        self.offset = offset
        self.samples = samples
        self.features = torch.zeros(0, self.asr.features.n_mels)  # log-mel frames whose STFT window has fully arrived
        self.enc = torch.zeros(0, self.model.config.d_model)  # encoder frames of the chunks encoded so far
        self.beams = None  # CTC prefix beams over self.enc
        self.blank_run = 0  # trailing encoder frames that are CTC blank (a pause)

    @property
    def partial(self) -> str:
        """The best CTC prefix of the current segment so far, as text."""
        return self.asr.tokenizer.decode(list(next(iter(self.beams)))) if self.beams else ""

    @torch.no_grad()
    def accept(self, samples) -> str:
        """Add float samples ``(n,)`` in [-1, 1] at the model's sample rate; encode every chunk whose audio
        is complete, end the segment at a pause (see the module docstring) and return the partial text.
        A long block is taken a chunk of audio at a time, exactly as if it had arrived so."""
        began = time.perf_counter()
        samples = torch.as_tensor(samples, dtype=torch.float32).reshape(-1)
        step = self.chunk_size * self.model.subsampling.factor * self.hop
        for start in range(0, len(samples), step):
            self.samples = torch.cat([self.samples, samples[start : start + step]])
            self._add_features(final=False)
            self._encode(final=False)
            while (cut := self._endpoint()) is not None:
                self._end_segment(cut)
        self.seconds += time.perf_counter() - began
        return self.partial

    @torch.no_grad()
    def finish(self):
        """End of the audio: encode the rest, run the ``final`` pass (see the module docstring) and return
        the :class:`Transcript`: the segments with timed words (none, as offline, for audio without voice activity)."""
        began = time.perf_counter()
        duration = self.offset + len(self.samples) / self.asr.features.sample_rate
        self._close_segment()
        transcript = Transcript("<stream>", " ".join(segment.text for segment in self.segments), list(self.segments),
                                duration)
        self.seconds += time.perf_counter() - began
        transcript.seconds = self.seconds
        return transcript

    def _endpoint(self) -> int | None:
        """The encoder frame at which the current segment ends now (the middle of its trailing pause), or None."""
        if self.endpoint_silence is None or not len(self.enc):
            return None
        pause = self.blank_run * self.frame_seconds
        if (pause >= (self.endpoint_silence if self.partial else IDLE_SECONDS)
                or len(self.enc) * self.frame_seconds >= self.asr.vad.max_segment_seconds):
            return len(self.enc) - self.blank_run // 2
        return None

    def _end_segment(self, cut: int) -> None:
        """End the current segment at encoder frame ``cut``: its final pass when it has text (otherwise its
        audio is dropped), then a new segment with the samples after it, encoded as far as they go."""
        end = cut * self.model.subsampling.factor * self.hop
        rest, offset = self.samples[end:], self.offset + end / self.asr.features.sample_rate
        if self.partial:
            self.samples = self.samples[:end]
            self.features = self.features[: max(0, (end - self.half_window - 1) // self.hop + 1)]
            self.enc = self.enc[:cut]
            self._close_segment()
        self._start_segment(rest, offset)
        self._add_features(final=False)
        self._encode(final=False)

    def _close_segment(self) -> None:
        """Encode the rest of the current segment and run the ``final`` pass; a segment with text joins ``segments``."""
        sample_rate = self.asr.features.sample_rate
        duration = len(self.samples) / sample_rate
        if not len(self.samples) or not has_speech(self.samples, sample_rate, self.asr.vad):
            return
        self.samples = F.pad(self.samples, (0, max(0, round(MIN_SECONDS * sample_rate) - len(self.samples))))
        self._add_features(final=True)
        self._encode(final=True)
        if self.final == "full":  # the streamed encoder output gives way to the offline one
            self.enc = self._run_encoder(self.features).float().cpu()
        ids = self._final_tokens()
        text = self.asr.tokenizer.decode(ids)
        if text:
            log_probs = self.model.ctc_log_probs(self.enc[None])[0]
            spans = align_tokens(log_probs, ids, self.asr.tokenizer.blank_id)
            frame_seconds = len(self.features) * self.hop / sample_rate / len(self.enc)
            piece = _Piece(0, self.offset, self.offset + duration, False)
            words = self.asr._words(ids, spans, self.samples, piece, frame_seconds)
            self.segments.append(Segment(piece.start, piece.end, text, words))

    def _final_tokens(self) -> list[int]:
        """The tokens of the final pass over ``self.enc``."""
        eos_id = self.asr.tokenizer.eos_id
        if self.final == "rescore":
            return attention_rescoring(self.model, self.enc, prefix_hypotheses(self.beams), self.decode, eos_id,
                                       self.asr.lm, self.asr.context)[0].tokens
        enc = self.enc[None].to(self.asr.device, next(self.model.parameters()).dtype)
        lengths = torch.tensor([len(self.enc)], device=self.asr.device)
        return decode_encoded(self.model, enc, lengths, self.decode, eos_id, self.asr.tokenizer.blank_id, self.asr.lm,
                              self.asr.context)[0]

    def _run_encoder(self, features: torch.Tensor, chunk_size: int | None = None, left_chunks: int | None = None,
                     offset: int = 0) -> torch.Tensor:
        """Encoder output ``(T', D)`` of log-mel frames ``(T, M)`` on the recogniser's device and dtype (chunking
        and ``offset`` as :meth:`TransformerASR.encode`; ``None``: the model's own, full context when trained so)."""
        dtype = next(self.model.parameters()).dtype
        lengths = torch.tensor([len(features)], device=self.asr.device)
        return self.model.encode(features[None].to(self.asr.device, dtype), lengths, chunk_size, left_chunks, offset)[0][0]

    def _add_features(self, final: bool) -> None:
        """Append the log-mel frames whose centred STFT window lies inside the samples received (all of
        them when ``final``, the last ones with reflect padding as offline; the reflect padding of the
        STFT needs one sample more than the window)."""
        known, count = len(self.features), len(self.samples)
        ready = count // self.hop + 1 if final else max(0, (count - self.half_window - 1) // self.hop + 1)
        if ready <= known:
            return
        first = max(0, known - -(-self.half_window // self.hop))  # frames before `known` that the new ones overlap
        mel = self.asr.log_mel(self.samples[first * self.hop:].to(self.asr.device)).cpu()
        self.features = torch.cat([self.features, mel[known - first : ready - first]])

    def _encode(self, final: bool) -> None:
        """Encode the complete chunks not encoded yet (all frames when ``final``) and advance the CTC beams."""
        subsampling = self.model.subsampling
        frames = len(self.features)
        if frames < subsampling.receptive_field and not final:
            return
        ready = int(subsampling.output_lengths(torch.tensor([frames]))[0])
        if not final:
            ready -= ready % self.chunk_size
        done = len(self.enc)
        if ready <= done:
            return
        first = 0 if self.past_frames is None else max(0, done - self.past_frames)  # a chunk start
        factor = subsampling.factor
        window = self.features[first * factor : (ready - 1) * factor + subsampling.receptive_field]
        new = self._run_encoder(window, self.chunk_size, self.left_chunks, first)[done - first : ready - first]
        self.enc = torch.cat([self.enc, new.float().cpu()])
        log_probs = self.model.ctc_log_probs(new[None])[0].cpu()
        self.beams = ctc_prefix_beams(log_probs, self.decode.beam_size, self.asr.tokenizer.blank_id, self.beams)
        speech = (log_probs[:, self.asr.tokenizer.blank_id].exp() <= BLANK_PROBABILITY).nonzero()
        self.blank_run = self.blank_run + len(new) if not len(speech) else len(new) - 1 - int(speech[-1])


@torch.no_grad()
def two_pass_decode(model, enc: torch.Tensor, config: DecodeConfig, eos_id: int, blank_id: int = 0, lm=None,
                    context=None) -> list[int]:
    """Offline twin of :class:`Stream` with ``final="rescore"``: encoder output ``(T', D)`` of one utterance
    -> the tokens of its CTC prefix beam search rescored by the attention decoder (:func:`attention_rescoring`)."""
    beams = ctc_prefix_beams(model.ctc_log_probs(enc[None])[0].cpu(), config.beam_size, blank_id)
    return attention_rescoring(model, enc, prefix_hypotheses(beams), config, eos_id, lm, context)[0].tokens


def attention_rescoring(model, enc: torch.Tensor, hyps: list[Hypothesis], config: DecodeConfig, eos_id: int,
                        lm=None, context=None) -> list[Hypothesis]:
    """WeNet's second pass: CTC hypotheses (``score = log p_ctc``) of one utterance with encoder output
    ``(T', D)`` rescored ``w * log p_ctc + (1 - w) * log p_att(tokens, eos)`` (the attention decoder
    teacher-forced; ``w = config.ctc_weight``), best first; as in beam search, an ``lm`` adds
    ``lm_weight * log p_lm(tokens, eos) + length_bonus * len(tokens)`` and a hotword ``context`` its bonus
    (a model with a copy mechanism scores with the context's phrases). A model trained with CTC only keeps
    the CTC scores."""
    weight = search_ctc_weight(model, config.ctc_weight)
    scores = [h.score for h in hyps]
    if weight < 1:
        device = next(model.parameters()).device
        tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(h.tokens, dtype=torch.long) for h in hyps],
                                                 batch_first=True).to(device)
        lengths = torch.tensor([len(h.tokens) for h in hyps], device=device)
        inputs, targets = model.teacher_forcing_pairs(tokens, lengths)
        memory = enc.to(device, next(model.parameters()).dtype)[None].expand(len(hyps), -1, -1)
        log_probs = model.decoder_log_probs(inputs, memory, torch.full_like(lengths, len(enc)),
                                            **copy_phrases(model, context))
        token_scores = log_probs.gather(-1, targets[..., None])[..., 0] * sequence_mask(lengths + 1, targets.size(1))
        scores = [weight * score + (1 - weight) * float(att) for score, att in zip(scores, token_scores.sum(-1))]
    if lm is not None and config.lm_weight > 0:
        lm_scores = lm.sentence_log_probs([h.tokens for h in hyps])
        scores = [score + config.lm_weight * lm_score + config.length_bonus * len(h.tokens)
                  for score, lm_score, h in zip(scores, lm_scores, hyps)]
    if context is not None:
        scores = [score + context.path_score(h.tokens) for score, h in zip(scores, hyps)]
    return sorted((Hypothesis(h.tokens, score) for h, score in zip(hyps, scores)), key=lambda h: h.score, reverse=True)


def paced(blocks: Iterable[torch.Tensor], sample_rate: int) -> Iterator[torch.Tensor]:
    """Yield audio ``blocks`` no faster than they would arrive live: each once the clock has run the
    duration of all blocks up to and including it (a file read as if it were a microphone)."""
    start, seconds = time.monotonic(), 0.0
    for block in blocks:
        seconds += len(block) / sample_rate
        time.sleep(max(0.0, start + seconds - time.monotonic()))
        yield block


def pcm_blocks(source: BinaryIO, block_bytes: int = 3200) -> Iterator[torch.Tensor]:
    """Raw mono 16-bit little-endian PCM (e.g. ``arecord -f S16_LE -r 16000 -c 1``) read as it arrives
    -> float blocks ``(n,)`` in [-1, 1] of at most ``block_bytes / 2`` samples (0.1 s at 16 kHz)."""
    read = getattr(source, "read1", source.read)  # read1: what is there now, without waiting for a full block
    rest = b""
    while data := read(block_bytes):
        data, rest = rest + data, b""
        if len(data) % 2:
            data, rest = data[:-1], data[-1:]
        yield torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768)
