"""Contextual biasing learned by the model: a copy mechanism over hotword phrases in the attention
decoder (CLAS, Pundak et al. 2018, with the pointer-generator output of See et al. 2017).

P phrases (token sequences) -> embedding -> LSTM, last state -> (P, E), after a learned "no bias"
vector: ``vectors (P + 1, E)``. At each decoder step, with decoder output ``h (D,)``:

- ``alpha = softmax(W_q h . vectors / sqrt(E))`` over the P + 1 entries, ``c = alpha . vectors``
- a pointer/generator gate ``g = sigmoid(w . [h; c] + b)``
- ``p(y) = (1 - g) p_vocab(y) + g (alpha_0 p_vocab(y) + sum_{p >= 1} alpha_p [y == next_p])``

where ``next_p`` is the token of phrase p that would continue the output: ``p[m]``, ``m`` the length
of the longest suffix of the output that is a prefix of p (:class:`Phrases`; ``p[0]`` when none). The
"no bias" entry and a phrase the output has just completed copy nothing: their shares stay with
``p_vocab`` (in the sum above, their ``[y == next_p]`` is ``p_vocab(y)``), so the mixture is a
distribution. Computed in log space (log-sigmoid gate, log-softmax attention).

Training (``bias_phrases: true``, :class:`PhraseSampler`): each batch's list holds a 1-3-word n-gram of
some of its own transcripts and n-grams of earlier batches (distractors); the loss is the usual
label-smoothed cross-entropy of the mixture. Without phrases the decoder skips all of this: a model
with the module decodes exactly as without it.
"""
import math
from collections import deque

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

MAX_WORDS = 3  # words per training n-gram: 1..MAX_WORDS
GATE_BIAS = -3.0  # initial gate logit (g = 0.05): a model that gains the module starts close to itself
NEG_INF = float("-inf")
TINY = 1e-30  # floor of copy probabilities before their log (no -inf: no NaN gradients)


class Phrases:
    """Token sequences to copy from and the automaton of how far an output has matched each.

    ``tokens (P, N + 1)`` padded -1 (N: the longest phrase) and ``lengths (P,)``; per phrase a match
    length ``m`` (``0 <= m <= length``): the longest suffix of the output that is a prefix of the phrase, so ``tokens[p, m]`` continues it;
    a complete match (``m == length``) has nothing to continue (:meth:`next_tokens` gives -1).
    """

    def __init__(self, sequences: list[list[int]], device=None):
        if not sequences or not all(sequences):
            raise ValueError("Phrases needs at least one phrase and no empty one")
        count, longest = len(sequences), max(map(len, sequences))
        tokens = torch.full((count, longest + 1), -1, dtype=torch.long)  # -1 after the last token
        # borders[p, m, k] (1 <= k <= m + 1): p[:k - 1] is a suffix of p[:m], so an output that matched
        # p[:m] and goes on with p[k - 1] has matched p[:k]
        borders = torch.zeros(count, longest + 1, longest + 2, dtype=torch.bool)
        for p, sequence in enumerate(sequences):
            tokens[p, : len(sequence)] = torch.tensor(sequence)
            for m in range(len(sequence) + 1):
                for k in range(1, min(m + 1, len(sequence)) + 1):
                    borders[p, m, k] = sequence[m - k + 1 : m] == sequence[: k - 1]
        self.tokens, self.borders = tokens.to(device), borders.to(device)
        self.lengths = torch.tensor([len(s) for s in sequences], device=device)
        self.extending = F.pad(self.tokens, (1, 0), value=-1)  # (P, N + 2): the token that makes a match k long

    def __len__(self) -> int:
        return len(self.tokens)

    def start(self, n: int) -> torch.Tensor:
        """Match lengths of ``n`` empty outputs: ``(n, P)`` zeros."""
        return self.tokens.new_zeros(n, len(self))

    def advance(self, matched: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Match lengths ``(..., P)`` of outputs -> those after appending ``tokens (...)`` (never -1)."""
        candidates = self.borders[torch.arange(len(self), device=matched.device), matched]  # (..., P, N + 2)
        fits = candidates & (self.extending == tokens[..., None, None])
        return (fits * torch.arange(fits.size(-1), device=fits.device)).amax(dim=-1)

    def matches(self, tokens: torch.Tensor) -> torch.Tensor:
        """Match lengths after each prefix ``tokens[:, :i + 1]`` of ``tokens (B, L)``: ``(B, L, P)``."""
        matched, steps = self.start(len(tokens)), []
        for column in tokens.unbind(dim=1):
            matched = self.advance(matched, column)
            steps.append(matched)
        return torch.stack(steps, dim=1)

    def next_tokens(self, matched: torch.Tensor) -> torch.Tensor:
        """The token continuing each phrase, -1 after a complete one: match lengths ``(..., P)`` -> ``(..., P)``."""
        return self.tokens[torch.arange(len(self), device=matched.device), matched]


class PhraseBias(nn.Module):
    """Bias encoder, attention over its phrase vectors and pointer/generator gate (module docstring).
    ``d_model``: width of the decoder output; ``dim``: width of the phrase vectors (E)."""

    def __init__(self, vocab_size: int, d_model: int, dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, dim)
        self.encoder = nn.LSTM(dim, dim, batch_first=True)
        self.no_bias = nn.Parameter(torch.zeros(dim))
        self.query = nn.Linear(d_model, dim)
        self.gate = nn.Linear(d_model + dim, 1)
        nn.init.constant_(self.gate.bias, GATE_BIAS)

    def encode(self, phrases: Phrases) -> torch.Tensor:
        """``(P + 1, E)``: the "no bias" vector, then one per phrase (the LSTM's state after its last token)."""
        embedded = self.embedding(phrases.tokens.clamp(min=0))  # the -1 padding is packed away
        packed = pack_padded_sequence(embedded, phrases.lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, (last, _) = self.encoder(packed)
        return torch.cat([self.no_bias[None].to(last.dtype), last[-1]], dim=0)

    def forward(self, hidden: torch.Tensor, log_probs: torch.Tensor, vectors: torch.Tensor,
                next_tokens: torch.Tensor) -> torch.Tensor:
        """Mix copying into the decoder's distribution: ``hidden (..., D)`` decoder output, ``log_probs
        (..., V)`` its log-softmax, ``vectors (P + 1, E)`` (:meth:`encode`), ``next_tokens (..., P)``
        (:meth:`Phrases.next_tokens`) -> ``log p(y) (..., V)`` (float32)."""
        scores = self.query(hidden) @ vectors.T / math.sqrt(vectors.size(-1))  # (..., P + 1)
        log_alpha = scores.float().log_softmax(dim=-1)
        context = log_alpha.exp().to(vectors.dtype) @ vectors
        gate = self.gate(torch.cat([hidden, context.to(hidden.dtype)], dim=-1)).float()  # (..., 1) logit
        log_g = F.logsigmoid(gate)
        copying = next_tokens >= 0  # (..., P): a complete phrase copies nothing, as "no bias"
        idle = F.pad(~copying, (1, 0), value=True)  # (..., P + 1)
        log_idle = torch.where(idle, log_alpha, NEG_INF).logsumexp(dim=-1, keepdim=True)
        keep = torch.logaddexp(F.logsigmoid(-gate), log_g + log_idle)  # weight of p_vocab
        shares = log_alpha[..., 1:].exp() * copying
        copy = torch.zeros_like(log_probs, dtype=torch.float).scatter_add(-1, next_tokens.clamp(min=0), shares)
        return torch.logaddexp(keep + log_probs.float(), log_g + copy.clamp(min=TINY).log())


class PhraseSampler:
    """Training phrase lists (CLAS): per batch, each utterance adds a random 1-3-word n-gram of its
    transcript with probability ``probability``, and ``distractors`` n-grams of earlier batches join them
    (the whole list serves every utterance of the batch: the others' n-grams are its distractors too).
    A list has at least one phrase, so that every parameter gets a gradient (DDP needs it). The memory of
    earlier n-grams is not checkpointed: after ``--resume`` it fills again over the first batches."""

    def __init__(self, probability: float, distractors: int):
        self.probability = probability
        self.recent = deque(maxlen=distractors)  # n-grams of earlier batches

    def __call__(self, tokens: torch.Tensor, token_lengths: torch.Tensor, tokenizer) -> list[list[int]]:
        """``tokens (B, L)`` padded 0, ``token_lengths (B,)`` -> the batch's phrases (token lists, no repeats)."""
        ngrams = [ngram for row, length in zip(tokens.tolist(), token_lengths.tolist())
                  if (ngram := random_ngram(row[:length], tokenizer))]
        chosen = [ngram for ngram in ngrams if torch.rand(()) < self.probability] or ngrams[:1]
        phrases = list(dict.fromkeys(map(tuple, chosen + list(self.recent))))
        self.recent.extend(ngrams)
        return [list(phrase) for phrase in phrases]


def random_ngram(ids: list[int], tokenizer) -> list[int]:
    """The tokens of 1..MAX_WORDS consecutive words of ``ids``, drawn uniformly ([] when it has no word)."""
    words = tokenizer.word_positions(ids)
    if not words:
        return []
    n = int(torch.randint(1, min(MAX_WORDS, len(words)) + 1, ()))
    first = int(torch.randint(0, len(words) - n + 1, ()))
    return ids[words[first][0] : words[first + n - 1][-1] + 1]
