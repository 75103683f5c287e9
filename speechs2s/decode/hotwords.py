"""Contextual biasing without training: a prefix trie of hotword phrases scored in beam search.

The phrases (names, jargon: ``["Nguyen", "Kubernetes"]``) are encoded with the ASR model's tokenizer
into token sequences and stored in a trie (a "context graph", as in WeNet and icefall). Every
hypothesis of :func:`speechs2s.decode.asr.beam_search` sits on one trie node: the root when it is in no
partial match, else the node of the phrase prefix its last tokens spell. Each step, per node:

- a token that extends the match (a child of the node) earns ``bonus``, except a phrase's first
  token, a word-start piece that begins countless ordinary words: a bonus there keeps
  hypotheses alive that merely *might* start a phrase;
- any other token fails the match: the bonus earned since the match started (or since the last
  phrase it completed) is taken back, and the token may start a new match from the root (earning
  ``bonus`` when some phrase begins with it);
- eos ends the hypothesis and also takes back an unfinished match.

So only a *completed* phrase keeps its bonus (``bonus * len(tokens)``); a hypothesis that merely
passes through the first tokens of a phrase ends up scored as if there were no list, which is why an
unrelated list hardly changes the output. A phrase counts as completed only at a word boundary: its
last token must be followed by a token that starts a word (given by ``word_starts``: sentencepiece's
"▁" pieces, a word separator) or by eos, so "Clang" earns nothing inside "clanger". A node that
completes a phrase and starts a longer one ("New", "New York") keeps the shorter phrase's bonus when
the longer match fails after a word boundary. A failed match
restarts from the root, not along Aho-Corasick failure links (a phrase overlapping the failed
prefix's suffix is missed; for names this is rare).

Optionally only acoustically plausible tokens earn the bonus: in the joint beam search a token whose
CTC prefix gain is below ``min_ctc_gain`` gets none (and so has none to take back). It is off by
default: with the first-token exception above, an unrelated list already leaves WER unchanged, and
the gate cost name recall (benchmarks/results/hotwords/).

The trie is compiled into dense tables over ``nodes x vocabulary`` (next node, earns a bonus, keeps or
carries the pending bonus), so a beam step is a few gathers.
"""
from dataclasses import dataclass

import torch

from speechs2s.errors import ConfigError

# Bonus and reserved rows chosen on the tuning names set and joe-lj dev's first half (benchmarks/results/hotwords/
# hotwords_tune-20261128-034016.json): the best name recall (58%) whose unrelated-list cost stays within 0.5 WER points
DEFAULT_BONUS = 5.0  # per token of a phrase (its first excepted), in the joint log-probability of beam search
DEFAULT_RESERVED_BEAMS = 8  # beam rows for hotword hypotheses beside the beam_size unbiased ones
DEFAULT_MIN_CTC_GAIN = float("-inf")  # off: on the names set a gate of -4 cost recall (30% -> 19% at bonus 4)


@dataclass
class _Node:
    children: dict
    depth: int
    end: bool = False  # a phrase ends here


class ContextGraph:
    """A trie of token sequences with per-token ``bonus`` (natural-log units of the beam score).

    A hypothesis's state is ``(node, pending)``: its trie node (0: the root) and the bonus it was given
    since its match started (or since the last phrase it completed), which a failing match takes back.
    ``min_ctc_gain``: a token earns its bonus only when its CTC prefix gain ``log p_ctc(g + c) -
    log p_ctc(g)`` is at least this (checked by beam search when it scores with CTC): a phrase that the
    audio does not support cannot be pushed in by the bonus alone. ``reserved_beams``: rows beam search
    adds per utterance for hypotheses ranked with the bonus, so that they do not displace the
    ``beam_size`` ranked without it (:func:`speechs2s.decode.asr.beam_search`).
    """

    def __init__(self, sequences: list[list[int]], vocab_size: int, bonus: float = DEFAULT_BONUS,
                 eos_id: int | None = None, word_starts: torch.Tensor | None = None,
                 min_ctc_gain: float = DEFAULT_MIN_CTC_GAIN, reserved_beams: int = DEFAULT_RESERVED_BEAMS):
        if bonus < 0:
            raise ConfigError(f"hotword bonus must be >= 0, got {bonus}")
        if reserved_beams < 0:
            raise ConfigError(f"hotword reserved_beams must be >= 0, got {reserved_beams}")
        self.bonus, self.vocab_size, self.eos_id = float(bonus), vocab_size, eos_id
        self.min_ctc_gain, self.reserved_beams = min_ctc_gain, reserved_beams
        self.sequences = [list(s) for s in sequences if s]
        # tokens after which a completed phrase keeps its bonus: word starts and eos (all, without word_starts)
        boundary = torch.ones(vocab_size, dtype=torch.bool) if word_starts is None else word_starts.bool().clone()
        if eos_id is not None:
            boundary[eos_id] = True
        nodes = [_Node({}, 0)]
        for sequence in self.sequences:
            node = 0
            for token in sequence:
                if not 0 <= token < vocab_size:
                    raise ConfigError(f"hotword token id {token} outside the vocabulary (0..{vocab_size - 1})")
                if token not in nodes[node].children:
                    nodes[node].children[token] = len(nodes)
                    nodes.append(_Node({}, nodes[node].depth + 1))
                node = nodes[node].children[token]
            nodes[node].end = True
        n = len(nodes)
        self.next = torch.zeros(n, vocab_size, dtype=torch.long)  # the node after each token
        self.earns = torch.zeros(n, vocab_size, dtype=torch.bool)  # the token extends or starts a match
        self.carries = torch.zeros(n, vocab_size, dtype=torch.bool)  # the pending bonus stays pending
        self.keeps = torch.zeros(n, vocab_size, dtype=torch.bool)  # the pending bonus is secured (a phrase ended)
        for token, child in nodes[0].children.items():  # a match starts without bonus (its first piece,
            self.next[:, token] = child                   # "▁a", "▁n", begins countless ordinary words)
            self.earns[:, token] = nodes[child].end       # unless the phrase is that one token
        for index, node in enumerate(nodes):
            if node.end:
                self.keeps[index] = boundary
            for token, child in node.children.items():
                self.next[index, token], self.earns[index, token] = child, index > 0
                self.carries[index, token] = not self.keeps[index, token]
        if eos_id is not None:
            self.next[:, eos_id], self.earns[:, eos_id], self.carries[:, eos_id] = 0, False, False
        self.num_nodes = n

    def __len__(self) -> int:
        return len(self.sequences)

    def to(self, device) -> "ContextGraph":
        self.next, self.earns = self.next.to(device), self.earns.to(device)
        self.carries, self.keeps = self.carries.to(device), self.keeps.to(device)
        return self

    def start(self, n: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """The state of ``n`` new hypotheses: at the root, nothing pending."""
        return torch.zeros(n, dtype=torch.long, device=device), torch.zeros(n, device=device)

    def scores(self, state) -> torch.Tensor:
        """Score change of every token for hypotheses in ``state`` (``N`` of them): ``(N, V)``: ``bonus``
        for a token that earns it, minus the pending bonus where the token fails the match."""
        nodes, pending = state
        refund = ~(self.carries[nodes] | self.keeps[nodes])
        return self.bonus * self.earns[nodes] - pending[:, None] * refund

    def earning(self, state, tokens: torch.Tensor) -> torch.Tensor:
        """Whether each of ``tokens (N, C)`` earns the bonus: ``(N, C)`` bool."""
        return self.earns[state[0]].gather(1, tokens)

    def reorder(self, state, rows: torch.Tensor):
        return state[0][rows], state[1][rows]

    def advance(self, state, tokens: torch.Tensor, earned: torch.Tensor | None = None):
        """The state after appending ``tokens (N,)``; ``earned (N,)``: whether each got its bonus
        (default: whenever it earns one)."""
        nodes, pending = state
        if earned is None:
            earned = self.earns[nodes, tokens]
        carried = torch.where(self.carries[nodes, tokens], pending, 0.0)
        return self.next[nodes, tokens], carried + self.bonus * earned

    def path_score(self, tokens: list[int]) -> float:
        """Total score change of a token sequence (eos appended when the graph knows it)."""
        state, total = self.start(1), 0.0
        for token in tokens + ([self.eos_id] if self.eos_id is not None else []):
            total += float(self.scores(state)[0, token])
            state = self.advance(state, torch.tensor([token]))
        return total


def parse_hotwords(text: str) -> list[str]:
    """``"Nguyen, Kubernetes, Oyelaran"`` (commas or new lines) -> the phrases, stripped, empty ones dropped."""
    return [phrase.strip() for line in text.splitlines() for phrase in line.split(",") if phrase.strip()]


def read_hotwords_file(path) -> list[str]:
    """One phrase per line (or comma-separated); lines starting with ``#`` are comments. An unreadable
    or empty file raises :class:`ConfigError`."""
    from pathlib import Path

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = "no such file" if isinstance(error, FileNotFoundError) else str(error)
        raise ConfigError(f"{path}: cannot read hotwords ({reason})") from None
    phrases = parse_hotwords("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    if not phrases:
        raise ConfigError(f"{path}: no hotword phrases in this file (one per line)")
    return phrases


def build_context_graph(phrases: list[str] | None, tokenizer, bonus: float = DEFAULT_BONUS,
                        min_ctc_gain: float = DEFAULT_MIN_CTC_GAIN) -> ContextGraph | None:
    """The :class:`ContextGraph` of ``phrases`` under ``tokenizer`` (None for no or an empty list).
    A phrase that normalises to nothing, or holds a symbol the tokenizer does not know, raises
    :class:`ConfigError`."""
    if not phrases:
        return None
    if isinstance(phrases, str):
        phrases = parse_hotwords(phrases)
    sequences = []
    for phrase in phrases:
        ids = tokenizer.encode(phrase)
        if not ids:
            raise ConfigError(f"hotword {phrase!r}: nothing left after text normalisation")
        if tokenizer.unk_id in ids:
            raise ConfigError(f"hotword {phrase!r}: has characters this model's tokenizer does not know")
        sequences.append(ids)
    return ContextGraph(sequences, tokenizer.vocab_size, bonus, tokenizer.eos_id, word_start_tokens(tokenizer),
                        min_ctc_gain)


def word_start_tokens(tokenizer) -> torch.Tensor:
    """``(V,)`` bool: the tokens that begin a new word (or separate words) under ``tokenizer``."""
    return torch.tensor([tokenizer.starts_word(symbol) or symbol in tokenizer.word_separators
                         for symbol in tokenizer.symbols])
