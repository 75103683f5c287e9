"""ASR decoding: batched greedy (attention and CTC), joint attention/CTC beam search, CTC prefix beam search.

Every search works on any model with the decoder protocol of ``speechs2s.models`` (see docs/design.md):

- ``encode(features (B, T, M), feature_lengths (B,)) -> (enc (B, T', D), enc_lengths (B,))``
- ``ctc_log_probs(enc) -> (B, T', V)``
- ``init_decoder_state(enc, enc_lengths) -> state`` and
  ``decode_step(prev_tokens (B,), state) -> (log_probs (B, V), state)``,
  ``reorder_state(state, indices (B',)) -> state`` (rows picked, possibly repeated)

and a tokenizer whose ``blank_id == pad_id == 0`` and ``sos_id == eos_id``. Token lists returned
here never contain sos, eos or blank. A model trained with CTC only (``config.ctc_weight == 1``)
decodes with its CTC head, one trained without CTC (``0``) with its attention decoder only.

Scores are natural-log probabilities. The joint score of a hypothesis y is
``(1 - ctc_weight) * log p_att(y, eos) + ctc_weight * log p_ctc(y)``, where the CTC part is
accumulated from prefix scores (Watanabe et al., 2017, "Hybrid CTC/attention architecture").
With a language model (shallow fusion, ``speechs2s.models.lm``), beam search adds
``lm_weight * log p_lm(y, eos) + length_bonus * len(y)``; with hotwords (a
:class:`speechs2s.decode.hotwords.ContextGraph`) it adds the bonus of every hotword phrase y completes.
A model with a copy mechanism (``bias_phrases``, :mod:`speechs2s.models.asr_bias`) also gets the
hotword phrases itself (:func:`copy_phrases`): greedy and beam search then score with its mixture of
copying and generating, each hypothesis carrying its phrase match lengths in the decoder state.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Literal

import torch

from speechs2s.errors import ConfigError
from speechs2s.nn.masks import sequence_mask

NEG_INF = float("-inf")


@dataclass
class DecodeConfig:
    """How to turn encoder output into tokens.

    mode: ``"beam"`` (joint attention/CTC beam search), ``"greedy"`` (attention argmax per step) or
    ``"ctc_greedy"`` (best path of the CTC head, collapsed).
    ctc_weight: weight of CTC prefix scores in beam search; 1.0 (or a model without decoder) runs a
    CTC prefix beam search.
    length_penalty: finished hypotheses are ranked by ``score / (tokens + 1) ** length_penalty``.
    max_len_ratio: at most ``ceil(max_len_ratio * encoder_frames)`` tokens per utterance.
    lm_weight, length_bonus: shallow fusion with a language model passed to :func:`decode` (beam mode
    only): ``lm_weight * log p_lm`` per token and ``length_bonus`` per non-eos token, which offsets the
    LM's preference for short hypotheses.
    """

    mode: Literal["beam", "greedy", "ctc_greedy"] = "beam"
    beam_size: int = 12  # 8 -> 12: asr-default -2 WER points on synthetic voices (benchmarks/results/asr_beam12/)
    ctc_weight: float = 0.3
    length_penalty: float = 1.0
    max_len_ratio: float = 1.0
    lm_weight: float = 0.0
    length_bonus: float = 0.0

    def __post_init__(self):
        if self.mode not in ("beam", "greedy", "ctc_greedy"):
            raise ValueError(f"DecodeConfig.mode must be beam, greedy or ctc_greedy, got {self.mode!r}")
        if self.beam_size < 1:
            raise ValueError(f"DecodeConfig.beam_size must be >= 1, got {self.beam_size}")
        if not 0.0 <= self.ctc_weight <= 1.0:
            raise ValueError(f"DecodeConfig.ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.lm_weight < 0:
            raise ValueError(f"DecodeConfig.lm_weight must be >= 0, got {self.lm_weight}")


@dataclass
class Hypothesis:
    """A hypothesis: ``tokens`` (no sos/eos/blank) and its joint log-probability ``score`` (eos included
    when it finished)."""

    tokens: list[int]
    score: float


def max_lengths(enc_lengths: torch.Tensor, ratio: float) -> torch.Tensor:
    """Most tokens allowed per utterance: ``ceil(ratio * enc_lengths)``, at least 1. ``(B,)``."""
    return (enc_lengths.float() * ratio).ceil().long().clamp(min=1)


def copy_phrases(model, context) -> dict:
    """``{"phrases": token lists}`` of a hotword ``context`` for a model with a copy mechanism
    (``model.bias``), to pass to ``init_decoder_state`` / ``decoder_log_probs``; else ``{}``."""
    if context is None or getattr(model, "bias", None) is None or not len(context):
        return {}
    return {"phrases": context.sequences}


def search_ctc_weight(model, requested: float) -> float:
    """The CTC weight a search can use: 0 for a model trained without CTC head (``config.ctc_weight == 0``),
    1 for one trained with CTC only (its attention decoder is untrained), else ``requested``."""
    trained = model.config.ctc_weight
    return 0.0 if trained == 0 else 1.0 if trained == 1 else requested


@torch.no_grad()
def decode(model, features: torch.Tensor, feature_lengths: torch.Tensor, config: DecodeConfig,
           eos_id: int, blank_id: int = 0, lm=None, context=None) -> list[list[int]]:
    """Features ``(B, T, M)`` with lengths ``(B,)`` -> the best token list of each utterance.

    ``lm``: a language model with the decoding protocol of ``speechs2s.models.lm`` over the same tokens,
    fused into the joint attention/CTC beam search with ``config.lm_weight`` (other modes ignore it).
    ``context``: hotwords as a :class:`speechs2s.decode.hotwords.ContextGraph`, scored in the joint
    attention/CTC beam search (other modes ignore it)."""
    enc, enc_lengths = model.encode(features, feature_lengths)
    return decode_encoded(model, enc, enc_lengths, config, eos_id, blank_id, lm, context)


@torch.no_grad()
def decode_encoded(model, enc: torch.Tensor, enc_lengths: torch.Tensor, config: DecodeConfig,
                   eos_id: int, blank_id: int = 0, lm=None, context=None) -> list[list[int]]:
    """Encoder output ``(B, T', D)`` with lengths ``(B,)`` -> the best token list of each utterance
    (``lm`` and ``context`` as in :func:`decode`)."""
    weight = search_ctc_weight(model, config.ctc_weight if config.mode == "beam" else 0.5)
    if config.mode == "ctc_greedy" and weight == 0:
        raise ConfigError("decode mode ctc_greedy: this model has no CTC head (use greedy or beam)")
    if config.mode == "ctc_greedy" or (config.mode == "greedy" and weight == 1):
        return ctc_greedy(model.ctc_log_probs(enc), enc_lengths, blank_id)
    if config.mode == "greedy":
        return greedy_attention(model, enc, enc_lengths, eos_id, config.max_len_ratio, blank_id, context)
    if weight == 1:
        log_probs = model.ctc_log_probs(enc)
        return [ctc_prefix_beam_search(utterance[:length], config.beam_size, blank_id)[0].tokens
                for utterance, length in zip(log_probs, enc_lengths.tolist())]
    search = dataclasses.replace(config, ctc_weight=weight)
    return [hyps[0].tokens for hyps in beam_search(model, enc, enc_lengths, search, eos_id, blank_id, lm, context)]


def ctc_greedy(log_probs: torch.Tensor, lengths: torch.Tensor, blank_id: int = 0) -> list[list[int]]:
    """Best CTC path ``(B, T, V)`` -> tokens: argmax per frame, repeats collapsed, blanks dropped."""
    best = log_probs.argmax(-1)  # (B, T)
    changed = torch.ones_like(best, dtype=torch.bool)
    changed[:, 1:] = best[:, 1:] != best[:, :-1]
    keep = changed & (best != blank_id) & sequence_mask(lengths.to(best.device), best.shape[1])
    return [row[mask].tolist() for row, mask in zip(best, keep)]


def greedy_attention(model, enc: torch.Tensor, enc_lengths: torch.Tensor, eos_id: int,
                     max_len_ratio: float = 1.0, blank_id: int = 0, context=None) -> list[list[int]]:
    """Batched argmax decoding with the attention decoder; each row stops at its eos or max length.
    ``context``: hotwords, used by a model with a copy mechanism (:func:`copy_phrases`; the trie bonus
    needs beam search)."""
    limit = max_lengths(enc_lengths, max_len_ratio)
    state = model.init_decoder_state(enc, enc_lengths, **copy_phrases(model, context))
    prev = torch.full((len(enc),), eos_id, dtype=torch.long, device=enc.device)  # sos == eos
    done = torch.zeros(len(enc), dtype=torch.bool, device=enc.device)
    steps = []
    for step in range(int(limit.max())):
        log_probs, state = model.decode_step(prev, state)
        log_probs[:, blank_id] = NEG_INF
        prev = log_probs.argmax(-1).masked_fill(done, eos_id)
        steps.append(prev)
        done |= (prev == eos_id) | (step + 1 >= limit)
        if done.all():
            break
    tokens = torch.stack(steps, 1).tolist()
    return [row[: row.index(eos_id)] if eos_id in row else row[:n] for row, n in zip(tokens, limit.tolist())]


class CTCPrefixScorer:
    """Batched CTC prefix scores (Watanabe et al. 2017, Algorithm 2), in log space.

    For a prefix g the state holds the forward variables ``r[t] = (log r_t^n(g), log r_t^b(g))``:
    the probability of frames ``0..t`` emitting g with the last frame non-blank / blank. The prefix
    score of ``h = g + c`` is ``psi(h) = logsumexp_t (phi[t-1] + x[t, c])`` with
    ``phi[t] = logaddexp(r^n[t], r^b[t])`` (only ``r^b[t]`` when c repeats g's last token), and
    ``psi(g + eos) = log p_ctc(g)``, the full-sequence probability.

    Frames past an utterance's end get log-prob 0 for blank and -inf otherwise, so ``r`` simply
    carries the total forward.

    ctc_log_probs: ``(N, T, V)`` for ``N`` hypotheses (rows of the same utterance repeat).
    """

    def __init__(self, ctc_log_probs: torch.Tensor, lengths: torch.Tensor, eos_id: int, blank_id: int = 0):
        padded = ~sequence_mask(lengths.to(ctc_log_probs.device), ctc_log_probs.shape[1])  # (N, T)
        x = ctc_log_probs.float().masked_fill(padded[..., None], NEG_INF)
        x[..., blank_id] = x[..., blank_id].masked_fill(padded, 0.0)
        self.x = x.transpose(0, 1)  # (T, N, V)
        self.eos_id, self.blank_id = eos_id, blank_id
        n = x.shape[0]
        blank_path = self.x[:, :, blank_id].cumsum(0)
        # empty prefix: only blanks so far; r[-1] (before the first frame) is 1 in the blank slot
        self.r = torch.stack([torch.full_like(blank_path, NEG_INF), blank_path], -1)  # (T, N, 2)
        self.start = torch.zeros(n, device=x.device)  # log phi[-1]: 0 for the empty prefix, else -inf
        self.last = torch.full((n,), -1, dtype=torch.long, device=x.device)  # last token of g, -1 if empty
        self.score = torch.zeros(n, device=x.device)  # psi(g)

    def _phi(self, candidates: torch.Tensor) -> torch.Tensor:
        """``log phi[t-1]`` for each frame t and candidate: ``(T, N, C)``."""
        r_n, r_b = self.r[..., 0], self.r[..., 1]
        total = torch.logaddexp(r_n, r_b)[..., None]  # (T, N, 1)
        phi = torch.where(candidates[None] == self.last[None, :, None], r_b[..., None], total)
        return torch.cat([self.start[None, :, None].expand(1, *candidates.shape), phi[:-1]], 0)

    def prefix_scores(self, candidates: torch.Tensor) -> torch.Tensor:
        """``psi(g + c)`` for candidate tokens ``(N, C)`` -> ``(N, C)``; eos gets ``log p_ctc(g)``."""
        x_c = self.x.gather(2, candidates[None].expand(self.x.shape[0], -1, -1))  # (T, N, C)
        psi = torch.logsumexp(self._phi(candidates) + x_c, 0)
        full = torch.logaddexp(self.r[-1, :, 0], self.r[-1, :, 1])[:, None].expand_as(psi)
        psi = torch.where(candidates == self.eos_id, full, psi)
        return psi.masked_fill(candidates == self.blank_id, NEG_INF)

    def advance(self, rows: torch.Tensor, tokens: torch.Tensor, scores: torch.Tensor) -> None:
        """Move to the prefixes ``g[rows] + tokens`` (both ``(N',)``), whose ``psi`` is ``scores``;
        ``N' < N`` when finished utterances leave the batch."""
        if len(rows) != self.x.shape[1]:  # rows of an utterance share x: it only changes when some leave
            self.x = self.x[:, rows]
        self.r, self.start, self.last = self.r[:, rows], self.start[rows], self.last[rows]
        x_c = self.x.gather(2, tokens[None, :, None].expand(self.x.shape[0], -1, 1))[..., 0]  # (T, N)
        phi = self._phi(tokens[:, None])[..., 0]
        # r^n[t] = logaddexp(r^n[t-1], phi[t-1]) + x[t, c];  r^b[t] = logaddexp(r^b[t-1], r^n[t-1]) + x[t, blank]
        r_n = _log_recursion(phi, x_c)
        r_b = _log_recursion(torch.cat([torch.full_like(r_n[:1], NEG_INF), r_n[:-1]]), self.x[:, :, self.blank_id])
        self.r = torch.stack([r_n, r_b], -1)
        self.start = torch.full_like(self.start, NEG_INF)
        self.last, self.score = tokens, scores


def _log_recursion(inputs: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
    """``y[t] = logaddexp(y[t-1], inputs[t]) + steps[t]`` with ``y[-1] = -inf``, over dim 0 of ``(T, N)``.

    Solved for all t at once instead of a loop over frames:
    ``y[t] = logsumexp_{s<=t} (inputs[s] + S[t] - S[s-1])``, ``S`` the cumulative sum of ``steps``
    (in float64, with log-probs floored at -1e4 so that ``S`` stays finite).
    """
    steps = steps.double().clamp(min=-1e4)
    total = steps.cumsum(0)
    return (total + torch.logcumsumexp(inputs.double() - (total - steps), 0)).to(inputs.dtype)


def beam_search(model, enc: torch.Tensor, enc_lengths: torch.Tensor, config: DecodeConfig,
                eos_id: int, blank_id: int = 0, lm=None, context=None) -> list[list[Hypothesis]]:
    """Batched joint attention/CTC beam search over ``B`` utterances with ``K = beam_size`` beams each.

    Each step scores the ``pre_beam`` best attention continuations of every live hypothesis (all of
    them are CTC-rescored when ``ctc_weight > 0``), then, per utterance, finalises the hypotheses that
    chose eos among the ``K`` best candidates and keeps the ``K`` best non-eos ones alive. An
    utterance is done once it has ``K`` finished hypotheses, reaches its maximum length (where every
    live hypothesis is ended with eos) or has no possible continuation left. Returns per utterance
    its finished hypotheses, best first by ``score / (len + 1) ** length_penalty``; an utterance where
    none could end (a decoder that never emits eos, or eos impossible under CTC) gets its live
    hypotheses of the last step instead, scored without eos: never an empty list. With ``lm`` (and
    ``config.lm_weight > 0``) the candidates are pre-selected on the attention and LM scores together,
    and each step adds ``lm_weight * log p_lm`` and, for non-eos tokens, ``length_bonus``. With
    ``context`` (a :class:`speechs2s.decode.hotwords.ContextGraph`) every hypothesis follows its node
    in the hotword trie, and the trie's score changes are added before the candidates are pre-selected,
    so that a token continuing a hotword can enter the beam. A model with a copy mechanism gets the
    context's phrases too (:func:`copy_phrases`); their match lengths follow the beams in its state.

    With hotwords (a bonus above 0 and ``R = context.reserved_beams > 0``) the beam has ``R`` extra rows
    per utterance: each step keeps the ``K`` best continuations by their score *without* any hotword
    bonus, then the ``R`` best of the rest with it. So hypotheses in a partial hotword match never push the unbiased ones out of
    the beam (a list that does not apply leaves the search as without a list, apart from the wider
    beam), yet have room of their own to complete a phrase. An eos candidate finishes when it is
    among the ``K`` best without bonus or the ``K + R`` best with it, and an utterance is done once
    ``K + R`` hypotheses finished; all are ranked with the bonus of the phrases they completed.
    """
    B, K = len(enc), config.beam_size
    R = context.reserved_beams if context is not None and context.bonus > 0 else 0
    W = K + R  # rows per utterance
    device = enc.device
    weight = config.ctc_weight
    limit = max_lengths(enc_lengths, config.max_len_ratio).tolist()
    rows = torch.arange(B, device=device).repeat_interleave(W)  # (N,) utterance of each hypothesis
    state = model.init_decoder_state(enc, enc_lengths, **copy_phrases(model, context))
    state = model.reorder_state(state, rows)  # memory projected once per utterance
    ctc = CTCPrefixScorer(model.ctc_log_probs(enc)[rows], enc_lengths[rows], eos_id, blank_id) if weight > 0 else None
    scores = torch.full((B, W), NEG_INF, device=device)
    scores[:, 0] = 0.0  # only one live hypothesis (the empty one) at the start
    base_scores = scores.clone()  # the same without hotword bonuses
    prefixes = [[] for _ in range(B * W)]
    prev = torch.full((B * W,), eos_id, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    searching = list(range(B))  # utterances still searched, in row order (W rows each); done ones leave the batch
    pre_beam = int(1.5 * K) + 1 if ctc else K + 1  # attention candidates per hypothesis and step
    fusion = lm is not None and config.lm_weight > 0
    lm_state = lm.init_state(B * W, device) if fusion else None
    if context is not None:
        context = context.to(device)
        hot = context.start(B * W, device)  # each hypothesis's state in the hotword trie

    for step in range(max(limit) + 1):
        n = len(searching)
        log_probs, state = model.decode_step(prev, state)
        log_probs = log_probs.float()
        log_probs[:, blank_id] = NEG_INF
        at_limit = torch.tensor([step >= limit[b] for b in searching], device=device).repeat_interleave(W)
        only_eos = torch.arange(log_probs.shape[-1], device=device) == eos_id
        log_probs[at_limit] = torch.where(only_eos, log_probs[at_limit], NEG_INF)  # must end now
        if fusion:
            lm_log_probs, lm_state = lm.decode_step(prev, lm_state)
            bonus = torch.where(only_eos, 0.0, config.length_bonus)
            log_probs = (1 - weight) * log_probs + config.lm_weight * lm_log_probs + bonus
        else:
            log_probs = (1 - weight) * log_probs
        if context is not None:
            hot_scores = context.scores(hot)
            log_probs = log_probs + hot_scores
        joint, candidates = log_probs.topk(min(pre_beam, log_probs.shape[-1]), -1)  # (n W, C)
        if ctc is not None:
            psi = ctc.prefix_scores(candidates)
            impossible = (psi == NEG_INF) | (ctc.score[:, None] == NEG_INF)  # avoid nan from inf - inf
            gain = torch.where(impossible, NEG_INF, psi - ctc.score[:, None])
            joint = joint + weight * gain
        base_joint = joint  # without hotword score changes
        if context is not None:
            earned = context.earning(hot, candidates)
            hot_change = hot_scores.gather(1, candidates)
            if ctc is not None:  # a hotword token earns its bonus only if CTC finds it plausible
                rejected = context.bonus * (earned & (gain < context.min_ctc_gain))
                joint, hot_change = joint - rejected, hot_change - rejected
                earned = earned & (rejected == 0)
            base_joint = joint - hot_change
        C = candidates.shape[1]
        total = (scores.reshape(-1, 1) + joint).reshape(n, W * C)
        base_total = (base_scores.reshape(-1, 1) + base_joint).reshape(n, W * C)
        is_eos = candidates.reshape(n, W * C) == eos_id

        # finalise hypotheses that end among the K best candidates of their utterance (W best with bonus)
        ranked = base_total if R else total  # without reserved rows the bonus ranks all K
        ending = _top_mask(ranked, K) & is_eos & (total > NEG_INF)
        if R:
            ending |= _top_mask(total, W) & is_eos & (total > NEG_INF)
        for i, j in ending.nonzero().tolist():
            parent = i * W + j // C
            finished[searching[i]].append(Hypothesis(prefixes[parent], float(total[i, j])))
        # the K best non-eos continuations without bonus, then the R best of the rest with it: (n, W)
        best = ranked.masked_fill(is_eos, NEG_INF).topk(K, -1).indices
        if R:
            rest = total.masked_fill(is_eos, NEG_INF).scatter(1, best, NEG_INF)
            best = torch.cat([best, rest.topk(R, -1).indices], 1)
        continued = total.gather(1, best)
        keep = []
        for i, b in enumerate(searching):
            if len(finished[b]) < W and step < limit[b] and continued[i].max() > NEG_INF:
                keep.append(i)
            elif not finished[b]:  # no hypothesis could end: return the live ones, unfinished
                finished[b] = [Hypothesis(prefixes[i * W + k], float(scores[i, k]))
                               for k in range(W) if scores[i, k] > NEG_INF]
        if not keep:
            break

        # keep the chosen continuations of the utterances still searched
        searching = [searching[i] for i in keep]
        kept = torch.tensor(keep, device=device)
        best = best[kept]
        scores, base_scores = continued[kept], base_total[kept].gather(1, best)  # (n', W)
        parents = (kept[:, None] * W + best // C).reshape(-1)
        tokens = candidates.reshape(n, W * C)[kept].gather(1, best).reshape(-1)
        state = model.reorder_state(state, parents)
        if fusion:
            lm_state = lm.reorder_state(lm_state, parents)
        if context is not None:
            chosen = earned.reshape(n, W * C)[kept].gather(1, best).reshape(-1)
            hot = context.advance(context.reorder(hot, parents), tokens, chosen)
        if ctc is not None:
            ctc.advance(parents, tokens, psi.reshape(n, W * C)[kept].gather(1, best).reshape(-1))
        prefixes = [prefixes[p] + [t] for p, t in zip(parents.tolist(), tokens.tolist())]
        prev = tokens

    def normalized(hyp: Hypothesis) -> float:
        return hyp.score / (len(hyp.tokens) + 1) ** config.length_penalty

    return [sorted(hyps, key=normalized, reverse=True) for hyps in finished]


def _top_mask(scores: torch.Tensor, k: int) -> torch.Tensor:
    """``(n, M)`` bool: the ``k`` highest entries of each row of ``scores (n, M)``."""
    return torch.zeros_like(scores, dtype=torch.bool).scatter(1, scores.topk(k, -1).indices, True)


def ctc_prefix_beam_search(log_probs: torch.Tensor, beam_size: int, blank_id: int = 0) -> list[Hypothesis]:
    """Frame-synchronous CTC prefix beam search over one utterance's ``(T, V)`` log-probs.

    Keeps the ``beam_size`` prefixes with the highest total probability (blank- plus
    non-blank-ending paths); each frame only the ``beam_size`` likeliest tokens are tried.
    Returns the final prefixes, best first, scored by ``log p_ctc``.
    """
    return prefix_hypotheses(ctc_prefix_beams(log_probs, beam_size, blank_id))


def ctc_prefix_beams(log_probs: torch.Tensor, beam_size: int, blank_id: int = 0, beams: dict | None = None) -> dict:
    """The prefix beams of :func:`ctc_prefix_beam_search` after the frames ``(T, V)``, best first:
    ``{prefix tuple: (log p ending in blank, log p ending in a token)}``. Pass the ``beams`` of the frames
    before to go on from them (streaming); None starts from the empty prefix."""
    beams = beams or {(): (0.0, NEG_INF)}
    top_lp, top_tokens = log_probs.float().topk(min(beam_size, log_probs.shape[-1]), -1)
    blank_lp = log_probs[:, blank_id].float().tolist()
    for t, (frame_lp, frame_tokens) in enumerate(zip(top_lp.tolist(), top_tokens.tolist())):
        next_beams: dict[tuple, tuple[float, float]] = {}
        for prefix, (p_blank, p_token) in beams.items():
            p_total = _logaddexp(p_blank, p_token)
            _add_path(next_beams, prefix, p_blank=p_total + blank_lp[t])
            for lp, token in zip(frame_lp, frame_tokens):
                if token == blank_id:
                    continue
                if prefix and prefix[-1] == token:
                    _add_path(next_beams, prefix, p_token=p_token + lp)  # a repeat without blank collapses
                    _add_path(next_beams, prefix + (token,), p_token=p_blank + lp)
                else:
                    _add_path(next_beams, prefix + (token,), p_token=p_total + lp)
        ranked = sorted(next_beams.items(), key=lambda item: _logaddexp(*item[1]), reverse=True)
        beams = dict(ranked[:beam_size])
    return beams


def prefix_hypotheses(beams: dict) -> list[Hypothesis]:
    """:func:`ctc_prefix_beams` -> hypotheses in the same order, scored by ``log p_ctc``."""
    return [Hypothesis(list(prefix), _logaddexp(*p)) for prefix, p in beams.items()]


def _add_path(beams: dict, prefix: tuple, p_blank: float = NEG_INF, p_token: float = NEG_INF) -> None:
    """Add path probabilities (log) ending in blank / in the last token to ``beams[prefix]``."""
    old_blank, old_token = beams.get(prefix, (NEG_INF, NEG_INF))
    beams[prefix] = (_logaddexp(old_blank, p_blank), _logaddexp(old_token, p_token))


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


@torch.no_grad()
def sample_attention(model, enc: torch.Tensor, enc_lengths: torch.Tensor, limits: torch.Tensor, eos_id: int,
                     num_samples: int, blank_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_samples`` hypotheses per utterance from the attention decoder, all in one batch: the first
    is the greedy (argmax) one, the others ancestral samples from its softmax (temperature 1).

    ``enc (B, T', D)``, ``enc_lengths (B,)``, ``limits (B,)`` most tokens per utterance -> ``tokens
    (B * N, L)`` padded 0 (no sos/eos/blank; rows ``b * N .. b * N + N - 1`` belong to utterance b)
    and their ``lengths (B * N,)``; a row that reaches its limit stops there, unfinished."""
    rows = torch.arange(len(enc), device=enc.device).repeat_interleave(num_samples)
    greedy = torch.arange(len(rows), device=enc.device) % num_samples == 0
    limits = limits[rows]
    state = model.reorder_state(model.init_decoder_state(enc, enc_lengths), rows)
    prev = torch.full((len(rows),), eos_id, dtype=torch.long, device=enc.device)  # sos == eos
    lengths = torch.zeros_like(prev)
    done = torch.zeros_like(prev, dtype=torch.bool)
    steps = []
    while not done.all():
        log_probs, state = model.decode_step(prev, state)
        log_probs[:, blank_id] = NEG_INF
        sampled = torch.multinomial(log_probs.float().softmax(-1), 1)[:, 0]
        prev = torch.where(greedy, log_probs.argmax(-1), sampled)
        ended = done | (prev == eos_id)
        steps.append(prev.masked_fill(ended, 0))
        lengths += ~ended
        done = ended | (lengths >= limits)
    return torch.stack(steps, 1), lengths
