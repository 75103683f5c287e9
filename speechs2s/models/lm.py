"""Token language model for shallow fusion: an LSTM over the ASR model's own tokens.

tokens (B, L) -> embedding -> LSTM layers -> Linear -> next-token logits (B, L + 1, V)

It is trained on text alone (``task: lm``: sentences, one per line, or a manifest's ``text``) with the
tokenizer of the ASR model it will serve, so its ids are the ASR model's ids; beam search adds
``lm_weight * log p_lm(token | prefix)`` to every candidate (``speechs2s.decode.asr``).

Decoding protocol, the same as an ASR decoder's:

- ``init_state(batch_size, device) -> state`` (a dict of batch-first tensors),
- ``decode_step(prev_tokens (B,), state) -> (log_probs (B, V), state)``: feed ``sos_id`` first,
- ``reorder_state(state, indices (B',)) -> state`` (rows picked or repeated, for beams).
"""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from speechs2s.models.asr_base import ASRModel


@dataclass
class LSTMLMConfig:
    """Sizes of the LSTM LM; ``vocab_size`` and ``sos_id`` come from the tokenizer (the trainer fills them)."""

    vocab_size: int = 256           # tokenizer size, <blank>/<pad> = 0 included
    sos_id: int = 2                 # the tokenizer's <sos/eos> id (== eos_id)
    embedding_dim: int = 256
    hidden_dim: int = 512
    layers: int = 2
    dropout: float = 0.2

    def __post_init__(self):
        if not 0 < self.sos_id < self.vocab_size:
            raise ValueError(f"sos_id={self.sos_id} is not a valid non-blank id for vocab_size={self.vocab_size}")
        if self.layers < 1:
            raise ValueError(f"layers must be >= 1, got {self.layers}")


class LSTMLM(nn.Module):
    """Left-to-right LSTM language model over token ids (``sos_id == eos_id``, 0 = padding)."""

    def __init__(self, config: LSTMLMConfig):
        super().__init__()
        self.config = config
        self.sos_id = self.eos_id = config.sos_id
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.lstm = nn.LSTM(config.embedding_dim, config.hidden_dim, config.layers, batch_first=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        self.dropout = nn.Dropout(config.dropout)
        self.output = nn.Linear(config.hidden_dim, config.vocab_size)

    def logits(self, inputs: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        """``inputs (B, L)`` -> ``(logits (B, L, V), (h, c))`` with ``h, c (layers, B, hidden)``."""
        hidden, state = self.lstm(self.dropout(self.embedding(inputs)), state)
        return self.output(self.dropout(hidden)), state

    teacher_forcing_pairs = ASRModel.teacher_forcing_pairs  # <sos> t1..tn -> t1..tn <eos>, as an ASR decoder

    def forward(self, batch: dict) -> dict:
        """``batch``: ``tokens (B, L)`` padded 0, ``token_lengths (B,)`` -> ``dict(loss, ppl)``: cross-entropy
        per target token of ``t1..tn <eos>`` given ``<sos> t1..tn``, and its perplexity."""
        inputs, targets = self.teacher_forcing_pairs(batch["tokens"], batch["token_lengths"])
        logits, _ = self.logits(inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=0)
        return {"loss": loss, "ppl": loss.detach().exp()}

    @torch.no_grad()
    def sentence_log_probs(self, token_lists: list[list[int]]) -> list[float]:
        """Natural-log probability of each token list followed by ``<eos>``."""
        device = self.output.weight.device
        tokens = pad_sequence([torch.tensor(ids, dtype=torch.long) for ids in token_lists], batch_first=True)
        lengths = torch.tensor([len(ids) for ids in token_lists])
        inputs, targets = self.teacher_forcing_pairs(tokens.to(device), lengths.to(device))
        log_probs = self.logits(inputs)[0].float().log_softmax(-1).gather(2, targets[..., None])[..., 0]
        return log_probs.masked_fill(targets == 0, 0.0).sum(1).tolist()

    def init_state(self, batch_size: int, device: torch.device | str) -> dict:
        """Empty state for ``batch_size`` sequences: ``{"h", "c"}`` each ``(B, layers, hidden)``."""
        zeros = torch.zeros(batch_size, self.config.layers, self.config.hidden_dim, device=device)
        return {"h": zeros, "c": zeros.clone()}

    def decode_step(self, prev_tokens: torch.Tensor, state: dict) -> tuple[torch.Tensor, dict]:
        """One token per sequence: ``prev_tokens (B,)`` -> ``(log_probs (B, V) float32, state)``."""
        hc = (state["h"].transpose(0, 1).contiguous(), state["c"].transpose(0, 1).contiguous())
        logits, (h, c) = self.logits(prev_tokens[:, None], hc)
        return logits[:, 0].float().log_softmax(-1), {"h": h.transpose(0, 1), "c": c.transpose(0, 1)}

    reorder_state = staticmethod(ASRModel.reorder_state)  # rows ``indices (B',)`` of every state tensor
