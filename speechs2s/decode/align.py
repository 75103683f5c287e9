"""CTC forced alignment: when each token of a known transcript is spoken.

The Viterbi path of the CTC head through a fixed token sequence
(:func:`torchaudio.functional.forced_align`) gives every token a span of encoder frames; its
score is the mean posterior of the token on those frames.
"""
import torch
from torchaudio.functional import TokenSpan, forced_align, merge_tokens


def align_tokens(log_probs: torch.Tensor, tokens: list[int], blank_id: int = 0) -> list[TokenSpan] | None:
    """CTC log-probs ``(T, V)`` of one utterance and its tokens ``(L,)`` (no blank) -> one
    ``TokenSpan(token, start, end, score)`` per token (frames ``[start, end)``, score: mean posterior),
    or None when ``T`` frames cannot hold the tokens (a CTC path needs a blank between repeats)."""
    if not tokens:
        return []
    repeats = sum(a == b for a, b in zip(tokens, tokens[1:]))
    if len(tokens) + repeats > len(log_probs):
        return None
    log_probs = log_probs.detach().float().cpu()
    path, scores = forced_align(log_probs[None], torch.tensor([tokens]), blank=blank_id)
    return merge_tokens(path[0], scores[0].exp(), blank=blank_id)
