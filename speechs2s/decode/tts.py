"""TTS inference: the autoregressive mel loop shared by the attention models, and sentence splitting.

Works on any model with the synthesis step protocol (``start`` / ``step`` / ``refine`` /
``denormalize``, see :mod:`speechs2s.models.tts_blocks` and docs/design.md); a non-autoregressive
model (FastSpeech) has ``generate`` instead and is run in one pass. Guards of the autoregressive
loop that hold even for an untrained model, so synthesis always terminates with a length bounded
by the text:

- the alignment *position* (per item, a token index) comes from the step's attention and may only
  move forward, by at most ``max_advance`` tokens per step; attention is restricted to the keys
  ``[position - window_back, position + window_ahead]`` (a monotonic window);
- the stop token only counts once the position has reached the last token (never stops early)
  and ``max(min_frames, min_frames_per_token * tokens)`` frames exist;
- stall detector: ``stall_frames`` frames without progress, or a stop token that fires before the
  end, push the position one token forward (a lagging alignment is pulled to the end instead of
  babbling); ``end_frames`` frames on the last token end the item (the stop token never fired);
- length guard: at most ``max_frames_per_token * tokens + extra_frames`` frames.
"""
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from speechs2s.text.normalize import ABBREVIATIONS_BEFORE_A_WORD


@dataclass
class SynthesisConfig:
    stop_threshold: float = 0.5  # stop probability that ends an item (once at the last token)
    min_frames_per_token: float = 3.0  # the stop token counts only after this * tokens frames
    min_frames: int = 10  # ... and after this many (about 0.1 s)
    max_frames_per_token: float = 15.0  # length guard: frames <= this * tokens + extra_frames
    extra_frames: int = 50
    window_back: int = 1  # keys the attention may see behind the alignment position
    window_ahead: int = 3  # ... and ahead of it
    max_advance: int = 2  # tokens the position may move forward per decoder step
    stall_frames: int = 40  # frames without progress before the position is pushed one token
    end_frames: int = 40  # frames on the last token before the item ends without a stop token
    duration_scale: float = 1.0  # > 1 speaks slower: FastSpeech scales its durations, attention models stretch their mels


@dataclass
class Synthesis:
    """Output of :func:`synthesize_batch`: ``mels (B, T, M)`` log-mel (frames past an item's
    length are padding), ``lengths (B,)`` frames, ``alignments (B, S, L)`` attention per decoder step
    (``ceil(length / r)`` valid steps)."""

    mels: torch.Tensor
    lengths: torch.Tensor
    alignments: torch.Tensor


@torch.no_grad()
def synthesize_batch(model, tokens: torch.Tensor, token_lengths: torch.Tensor,
                     config: SynthesisConfig | None = None) -> Synthesis:
    """Free-running synthesis of a padded batch ``tokens (B, L)``, ``token_lengths (B,)``."""
    config = config or SynthesisConfig()
    if int(token_lengths.min()) < 1:
        raise ValueError("synthesize_batch: every sequence needs at least one token")
    if hasattr(model, "generate"):  # non-autoregressive: one pass, the length comes from the durations
        return Synthesis(*model.generate(tokens, token_lengths, config.duration_scale))
    B, L = tokens.shape
    r, device = model.reduction_factor, tokens.device
    stall_steps, end_steps = math.ceil(config.stall_frames / r), math.ceil(config.end_frames / r)
    max_frames = (config.max_frames_per_token * token_lengths + config.extra_frames).long()
    max_steps = (max_frames + r - 1) // r
    min_frames = (config.min_frames_per_token * token_lengths).long().clamp(min=config.min_frames)
    last = token_lengths - 1
    keys = torch.arange(L, device=device)[None, :]

    state = model.start(tokens, token_lengths)
    previous = torch.zeros(B, model.n_mels, device=device, dtype=model.mean.dtype)
    position = torch.zeros(B, dtype=torch.long, device=device)
    stalled = torch.zeros_like(position)  # steps without progress
    at_end = torch.zeros_like(position)  # steps on the last token
    lengths = torch.zeros_like(position)  # 0 while running
    frames, alignments = [], []
    for step in range(int(max_steps.max())):
        allowed = (keys >= (position - config.window_back)[:, None]) & (keys <= (position + config.window_ahead)[:, None])
        frame, stop_logits, alignment, state = model.step(previous, state, allowed)
        frames.append(frame)
        alignments.append(alignment)
        previous = frame[:, -1]

        wants_stop = stop_logits.sigmoid() > config.stop_threshold  # (B, r)
        target = torch.minimum(alignment.argmax(-1).clamp(min=position, max=position + config.max_advance), last)
        stalled = torch.where(target > position, 0, stalled + 1)
        push = ((stalled >= stall_steps) | (wants_stop.any(-1) & (stalled > 0))) & (target < last)
        position = target + push.long()
        stalled = stalled.masked_fill(push, 0)
        at_end = torch.where(position >= last, at_end + 1, 0)

        frame_index = step * r + torch.arange(r, device=device)  # (r,) frames of this step
        fired = wants_stop & (position >= last)[:, None] & (frame_index + 1 >= min_frames[:, None])
        emitted = step * r + torch.where(fired.any(-1), fired.float().argmax(-1) + 1, r)
        finished = fired.any(-1) | (at_end >= end_steps) | (step + 1 >= max_steps)
        lengths = torch.where((lengths == 0) & finished, torch.minimum(emitted, max_frames), lengths)
        if bool((lengths > 0).all()):
            break

    mels = torch.cat(frames, 1)
    valid = torch.arange(mels.size(1), device=device)[None, :] < lengths[:, None]
    mels = model.denormalize(model.refine(mels * valid[..., None], lengths))
    if config.duration_scale != 1.0:  # tempo without pitch change: the frames resampled in time
        mels = F.interpolate(mels.transpose(1, 2), scale_factor=config.duration_scale, mode="linear").transpose(1, 2)
        lengths = (lengths * config.duration_scale).round().long().clamp(min=1, max=mels.size(1))
    return Synthesis(mels, lengths, torch.stack(alignments, 1))


def synthesize_sequences(model, token_lists: list[list[int]], batch_size: int = 8,
                         config: SynthesisConfig | None = None, device=None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Synthesize token sequences in order: the first one alone, so that a streaming consumer gets
    its audio without waiting for a whole batch, then the others in batches of ``batch_size``.

    Yields one ``(mel (frames, M), alignment (steps, L))`` per sequence; memory stays bounded by
    one batch, so arbitrarily long texts stream through."""
    if not token_lists:
        return
    device = device or model.mean.device
    r = model.reduction_factor
    chunks = [token_lists[:1]] + [token_lists[i:i + batch_size] for i in range(1, len(token_lists), batch_size)]
    for chunk in chunks:
        lengths = torch.tensor([len(t) for t in chunk], device=device)
        tokens = torch.zeros(len(chunk), int(lengths.max()), dtype=torch.long, device=device)
        for row, ids in enumerate(chunk):
            tokens[row, :len(ids)] = torch.tensor(ids, device=device)
        result = synthesize_batch(model, tokens, lengths, config)
        for row, length in enumerate(result.lengths.tolist()):
            steps = math.ceil(length / r)
            yield result.mels[row, :length], result.alignments[row, :steps, :len(chunk[row])]


_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n\s*\n")
# A period after one of these or after a single letter ("J.", "U.S.", "p.m.") ends no sentence.
_NO_END_BEFORE = re.compile(rf"\b(?:{'|'.join(ABBREVIATIONS_BEFORE_A_WORD)}|[a-z])\.$", re.IGNORECASE)


def _ends_sentence(text: str, gap: re.Match) -> bool:
    """Whether the whitespace ``gap`` (a match of ``_SENTENCE_END``) separates two sentences: a blank line,
    ``! ? ;`` always do; a period does unless a lowercase word follows ("5 p.m. on Friday") or it closes an
    abbreviation that a word follows ("Mr. Smith", "No. 5") or a single letter ("J. Smith", "the U.S. Army")."""
    if gap.group().count("\n") > 1 or text[gap.start() - 1] != ".":
        return True
    return not (text[gap.end()].islower() or _NO_END_BEFORE.search(text, max(0, gap.start() - 8), gap.start()))


def split_sentences(text: str, max_chars: int = 200) -> list[str]:
    """Split text into sentences (see ``_ends_sentence``; blank lines always split); pieces longer than
    ``max_chars`` are cut at the last comma, else the last space, before the limit. Whitespace is collapsed;
    empty pieces are dropped. Linear in the length of ``text``."""
    pieces, start, sentences = [], 0, []
    for gap in _SENTENCE_END.finditer(text):
        if gap.end() < len(text) and _ends_sentence(text, gap):
            sentences.append(text[start:gap.start()])
            start = gap.end()
    sentences.append(text[start:])
    for sentence in sentences:
        sentence = " ".join(sentence.split())
        while len(sentence) > max_chars:
            head = sentence[:max_chars]
            cut = max(head.rfind(", ") + 1, 0) or max(head.rfind(" "), 0) or max_chars
            pieces.append(sentence[:cut].strip())
            sentence = sentence[cut:].strip()
        if sentence:
            pieces.append(sentence)
    return pieces
