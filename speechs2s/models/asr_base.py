"""What every attention-based ASR model shares: feature normalisation, the joint CTC/attention loss
with label smoothing and scheduled sampling, and the decoding protocol used by ``decode/asr.py``.

Decoding protocol (implemented by :class:`TransformerASR`, :class:`ConformerASR` and :class:`LSTMASR`):

- ``encode(features (B, T, M), feature_lengths (B,)) -> (enc (B, T', D), enc_lengths (B,))``
  (training calls ``encode_layers``, which may add intermediate encoder outputs for intermediate CTC)
- ``ctc_log_probs(enc) -> (B, T', V)`` (blank = 0; only when the model has a CTC head)
- ``decoder_log_probs(tokens (B, L), enc, enc_lengths) -> (B, L, V)``: teacher-forced, ``tokens``
  start with ``sos_id``; position i scores the token after ``tokens[:, :i + 1]``.
- ``init_decoder_state(enc, enc_lengths) -> state`` (a dict; tensors are batch first, other values
  are shared by all rows)
- ``decode_step(prev_tokens (B,), state) -> (log_probs (B, V), state)``: feed ``sos_id`` first.
- ``reorder_state(state, indices (B',)) -> state``: select / repeat hypotheses for beam search
  (``indices = arange(B).repeat_interleave(beam)`` expands a batch to beams).
``sos_id == eos_id`` (one ``<sos/eos>`` token, as in the tokenizers).

A model with a copy mechanism (``bias_phrases``, :mod:`speechs2s.models.asr_bias`; ``self.bias`` is not
None) takes ``phrases`` (token lists) in ``decoder_log_probs`` and ``init_decoder_state``."""
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence
from torchaudio.functional import edit_distance

from speechs2s.decode.asr import DecodeConfig, beam_search, sample_attention, search_ctc_weight
from speechs2s.losses import ctc_loss, label_smoothed_cross_entropy, mwer_risk
from speechs2s.metrics import error_counts
from speechs2s.models.asr_bias import PhraseSampler
from speechs2s.nn.normalization import FeatureNormalization


@dataclass
class ASRHeadConfig:
    """Options of every ASR model (:class:`ASRModel`): vocabulary, features, joint CTC/attention loss.
    The model configs extend it and define their named sizes in ``PRESETS``."""

    vocab_size: int                 # tokenizer size, <blank>/<pad> = 0 included
    sos_id: int = 2                 # the tokenizer's <sos/eos> id (== eos_id)
    n_mels: int = 80
    ctc_weight: float = 0.3         # loss = ctc_weight * CTC + (1 - ctc_weight) * attention CE; 0 builds no CTC head
    label_smoothing: float = 0.1
    scheduled_sampling: float = 0.0  # probability of feeding the model's own prediction while training
    mwer_weight: float = 0.0        # training loss += mwer_weight * MWER risk (see ASRModel.mwer_loss); 0 = off
    mwer_hypotheses: int = 4        # N-best size of the MWER loss
    mwer_nbest: str = "sample"      # its hypotheses: "sample" (greedy + N - 1 samples) or "beam" (beam search's N best)
    bias_phrases: bool = False      # a copy mechanism over hotword phrases in the decoder (models/asr_bias.py)
    bias_dim: int = 128             # width of its phrase vectors
    bias_probability: float = 0.5   # training: chance that an utterance puts an n-gram of its text in the list
    bias_distractors: int = 16      # training: n-grams of earlier batches added to each batch's list

    PRESETS: ClassVar[dict] = {}

    def __post_init__(self):
        if self.vocab_size < 3:
            raise ValueError(f"vocab_size must be at least 3 (blank, a token, <sos/eos>), got {self.vocab_size}")
        if not 0 < self.sos_id < self.vocab_size:
            raise ValueError(f"sos_id={self.sos_id} is not a valid non-blank id for vocab_size={self.vocab_size}")
        if not 0 <= self.ctc_weight <= 1:
            raise ValueError(f"ctc_weight must be in [0, 1], got {self.ctc_weight}")
        if self.mwer_weight < 0:
            raise ValueError(f"mwer_weight must be >= 0, got {self.mwer_weight}")
        if self.mwer_weight > 0 and self.ctc_weight == 1:
            raise ValueError("mwer_weight needs the attention decoder, which ctc_weight = 1 leaves untrained")
        if self.mwer_hypotheses < 2:
            raise ValueError(f"mwer_hypotheses must be at least 2 (the risk compares them), got {self.mwer_hypotheses}")
        if self.mwer_nbest not in ("sample", "beam"):
            raise ValueError(f"mwer_nbest must be sample or beam, got {self.mwer_nbest!r}")
        if not isinstance(self.bias_phrases, bool):
            raise ValueError(f"bias_phrases must be true or false, got {self.bias_phrases!r}")
        if self.bias_phrases and self.ctc_weight == 1:
            raise ValueError("bias_phrases needs the attention decoder, which ctc_weight = 1 leaves untrained")
        if self.bias_dim < 1:
            raise ValueError(f"bias_dim must be at least 1, got {self.bias_dim}")
        if not 0 <= self.bias_probability <= 1:
            raise ValueError(f"bias_probability must be in [0, 1], got {self.bias_probability}")
        if self.bias_distractors < 0:
            raise ValueError(f"bias_distractors must be >= 0, got {self.bias_distractors}")

    @classmethod
    def preset(cls, size: str, **overrides):
        """Config of a named size (``"tiny"`` or ``"base"``) with ``overrides`` (e.g. ``vocab_size``)."""
        if size not in cls.PRESETS:
            raise ValueError(f"unknown size {size!r} (choose from {', '.join(cls.PRESETS)})")
        return cls(**{**cls.PRESETS[size], **overrides})


class ASRModel(FeatureNormalization, nn.Module):
    """Base class; subclasses build ``self.ctc_head`` (or None) and implement ``encode``,
    ``decoder_logits``, ``init_decoder_state`` and ``decode_step``; one that supports ``bias_phrases``
    builds ``self.bias`` (a :class:`PhraseBias`) and takes ``phrases`` in ``decoder_logits``."""

    def __init__(self, config: ASRHeadConfig):
        super().__init__()
        self.config = config
        self.sos_id = self.eos_id = config.sos_id
        self.register_feature_stats(config.n_mels)
        self.tokenizer = None  # turns hypotheses into words for the MWER loss and phrases (set_tokenizer)
        self.bias = None  # the copy mechanism over hotword phrases (bias_phrases)
        self.phrase_sampler = PhraseSampler(config.bias_probability, config.bias_distractors)

    def encode_layers(self, features: torch.Tensor, feature_lengths: torch.Tensor):
        """``encode`` plus the outputs ``[(B, T', D), ...]`` of the encoder layers that take an intermediate
        CTC loss (Lee & Watanabe 2021), none by default. A model returning some has ``config.interctc_weight``."""
        return *self.encode(features, feature_lengths), []

    def ctc_log_probs(self, enc: torch.Tensor) -> torch.Tensor:
        """``enc (B, T', D) -> (B, T', V)`` CTC log-probabilities (float32)."""
        if self.ctc_head is None:
            raise RuntimeError("this model has no CTC head (ctc_weight = 0)")
        return self.ctc_head(enc).float().log_softmax(dim=-1)

    def decoder_log_probs(self, tokens, enc, enc_lengths, **bias) -> torch.Tensor:
        """Teacher-forced ``(B, L, V)`` log-probabilities of the token after each prefix of ``tokens``
        (``bias``: ``phrases=`` token lists, for a model with the copy mechanism)."""
        return self.decoder_logits(tokens, enc, enc_lengths, **bias).float().log_softmax(dim=-1)

    @staticmethod
    def reorder_state(state: dict, indices: torch.Tensor) -> dict:
        """Pick rows ``indices (B',)`` of every tensor in a decoder state (other values are shared)."""
        return {name: value.index_select(0, indices) if isinstance(value, torch.Tensor) else value
                for name, value in state.items()}

    def teacher_forcing_pairs(self, tokens: torch.Tensor, token_lengths: torch.Tensor):
        """``tokens (B, L)`` padded 0 -> decoder inputs ``<sos> t1..tn`` and targets ``t1..tn <eos>``,
        both ``(B, L + 1)`` padded 0; targets have ``token_lengths + 1`` valid positions."""
        pad = tokens.new_zeros(tokens.size(0), 1)
        inputs = torch.cat([pad + self.sos_id, tokens], dim=1)
        targets = torch.cat([tokens, pad], dim=1).scatter(1, token_lengths[:, None], self.eos_id)
        return inputs, targets

    def forward(self, batch: dict) -> dict:
        """``batch``: ``features (B, T, M)``, ``feature_lengths``, ``tokens (B, L)`` padded 0, ``token_lengths``
        -> ``dict(loss, ctc, att, acc)`` with ``loss = w * ctc + (1 - w) * att`` (``w = ctc_weight``);
        ``ctc`` is left out when ``w == 0``, ``att``/``acc`` when ``w == 1``. With intermediate CTC
        (``encode_layers``), ``interctc`` is the mean CTC loss of the intermediate layers (same CTC head)
        and ``ctc`` in the loss becomes ``(1 - v) * ctc + v * interctc`` (``v = interctc_weight``).

        Scheduled sampling (training only, probability ``p = scheduled_sampling``): a first
        teacher-forced pass without gradients predicts every position greedily; each decoder input
        after ``<sos>`` is then replaced by the model's own prediction with probability ``p`` and the
        loss comes from a second pass on these mixed inputs.

        MWER (training only, ``mwer_weight > 0``): adds ``mwer`` and ``nbest_wer`` (:meth:`mwer_loss`)
        and ``loss += mwer_weight * mwer``.

        Copy mechanism (training only, ``bias_phrases``): the attention loss is on the decoder's mixture
        with copying from the batch's phrases (:meth:`training_phrases`)."""
        config = self.config
        tokens, token_lengths = batch["tokens"], batch["token_lengths"]
        enc, enc_lengths, intermediate = self.encode_layers(batch["features"], batch["feature_lengths"])
        parts = {}
        if config.ctc_weight > 0:
            parts["ctc"] = ctc_loss(self.ctc_log_probs(enc), enc_lengths, tokens, token_lengths)
        ctc = parts.get("ctc", 0.0)
        if intermediate:
            parts["interctc"] = sum(ctc_loss(self.ctc_log_probs(h), enc_lengths, tokens, token_lengths)
                                    for h in intermediate) / len(intermediate)
            ctc = (1 - config.interctc_weight) * ctc + config.interctc_weight * parts["interctc"]
        if config.ctc_weight < 1:
            inputs, targets = self.teacher_forcing_pairs(tokens, token_lengths)
            if self.training and config.scheduled_sampling > 0:
                with torch.no_grad():
                    predicted = self.decoder_logits(inputs, enc, enc_lengths).argmax(dim=-1)
                sampled = torch.rand(inputs[:, 1:].shape, device=inputs.device) < config.scheduled_sampling
                inputs = torch.cat([inputs[:, :1], torch.where(sampled, predicted[:, :-1], inputs[:, 1:])], dim=1)
            copying = self.training and self.bias is not None
            bias = {"phrases": self.training_phrases(tokens, token_lengths)} if copying else {}
            logits = self.decoder_logits(inputs, enc, enc_lengths, **bias)
            parts["att"] = label_smoothed_cross_entropy(logits, targets, token_lengths + 1, config.label_smoothing)
            valid = targets != 0
            parts["acc"] = (logits.argmax(dim=-1) == targets)[valid].float().mean()
        loss = config.ctc_weight * ctc + (1 - config.ctc_weight) * parts.get("att", 0.0)
        if self.training and config.mwer_weight > 0:
            parts |= self.mwer_loss(enc, enc_lengths, tokens, token_lengths)
            loss = loss + config.mwer_weight * parts["mwer"]
        return {"loss": loss, **parts}

    def set_tokenizer(self, tokenizer) -> None:
        """The tokenizer of the training data (the trainer sets it): MWER counts word errors on its text,
        the copy mechanism's training phrases are n-grams of its words."""
        self.tokenizer = tokenizer

    def training_phrases(self, tokens: torch.Tensor, token_lengths: torch.Tensor) -> list[list[int]]:
        """A batch's phrase list for the copy mechanism (:class:`PhraseSampler`): ``tokens (B, L)`` padded 0."""
        if self.tokenizer is None:
            raise RuntimeError("bias_phrases needs the tokenizer: call model.set_tokenizer(tokenizer) first")
        return self.phrase_sampler(tokens, token_lengths, self.tokenizer)

    def sequence_log_probs(self, tokens, token_lengths, enc, enc_lengths) -> torch.Tensor:
        """Teacher-forced ``log p(tokens, eos)`` of each row: ``tokens (B, L)`` padded 0 (no sos/eos),
        ``token_lengths (B,)``, ``enc (B, T', D)``, ``enc_lengths (B,)`` -> ``(B,)``."""
        inputs, targets = self.teacher_forcing_pairs(tokens, token_lengths)
        log_probs = self.decoder_log_probs(inputs, enc, enc_lengths).gather(-1, targets[..., None])[..., 0]
        return (log_probs * (targets != 0)).sum(dim=-1)

    def mwer_loss(self, enc, enc_lengths, tokens, token_lengths) -> dict:
        """Minimum word error rate training (Prabhavalkar et al. 2018): ``{"mwer": risk, "nbest_wer"}``.

        Per utterance, ``N = mwer_hypotheses`` hypotheses (at most ``2 L + 5`` tokens for a reference of
        ``L``) are drawn without gradients (:meth:`nbest`), re-scored with teacher forcing
        (``log p(y, eos)``, differentiable through decoder and encoder) and compared word by word
        with the reference (both decoded by the tokenizer, :func:`speechs2s.metrics.error_counts`);
        ``risk`` is :func:`speechs2s.losses.mwer_risk`, ``nbest_wer`` the mean WER of the hypotheses.
        ``enc (B, T', D)``, ``enc_lengths (B,)``, ``tokens (B, L)`` padded 0, ``token_lengths (B,)``."""
        if self.tokenizer is None:
            raise RuntimeError("mwer_weight > 0 needs the tokenizer: call model.set_tokenizer(tokenizer) first")
        n = self.config.mwer_hypotheses
        hyps, hyp_lengths = self.nbest(enc.detach(), enc_lengths, 2 * token_lengths + 5)
        rows = torch.arange(len(enc), device=enc.device).repeat_interleave(n)
        log_probs = self.sequence_log_probs(hyps, hyp_lengths, enc[rows], enc_lengths[rows])
        refs = [self.tokenizer.decode(ref[:length]) for ref, length in zip(tokens, token_lengths.tolist())]
        counts = [error_counts(refs[i // n], self.tokenizer.decode(hyp[:length]))
                  for i, (hyp, length) in enumerate(zip(hyps, hyp_lengths.tolist()))]
        errors = torch.tensor([c["sub"] + c["del"] + c["ins"] for c in counts], device=enc.device).view(-1, n)
        ref_words = torch.tensor([c["ref_words"] for c in counts[::n]], device=enc.device)
        risk = mwer_risk(log_probs.view(-1, n), errors, ref_words)
        return {"mwer": risk, "nbest_wer": errors.sum() / (n * ref_words.sum().clamp(min=1))}

    @torch.no_grad()
    def nbest(self, enc, enc_lengths, limits) -> tuple[torch.Tensor, torch.Tensor]:
        """The MWER hypotheses: ``N = mwer_hypotheses`` per utterance, ``tokens (B * N, L)`` padded 0 and
        ``lengths (B * N,)`` (rows ``b * N ..`` belong to utterance b), at most ``limits (B,)`` tokens.
        ``mwer_nbest = "sample"``: the greedy hypothesis and ancestral samples, with dropout on;
        ``"beam"``: the N best of the joint attention/CTC beam search (beam N, dropout off), the
        competitors decoding really meets; an utterance with fewer repeats its last one."""
        n = self.config.mwer_hypotheses
        if self.config.mwer_nbest == "sample":
            return sample_attention(self, enc, enc_lengths, limits, self.eos_id, n)
        search = DecodeConfig(beam_size=n, ctc_weight=search_ctc_weight(self, self.config.ctc_weight),
                              max_len_ratio=float((limits / enc_lengths).max()))
        self.eval()
        try:
            results = beam_search(self, enc, enc_lengths, search, self.eos_id)
        finally:
            self.train()
        rows = [torch.tensor(hyp.tokens[:limit], dtype=torch.long)
                for found, limit in zip(results, limits.tolist()) for hyp in (found + found[-1:] * n)[:n]]
        lengths = torch.tensor([len(row) for row in rows], device=enc.device)
        return pad_sequence(rows, batch_first=True).to(enc.device), lengths

    @torch.no_grad()
    def validation_extras(self, batch: dict):
        """Greedy CTC token error rate on a validation batch (needs no decoder loop): ``({"ctc_ter": float}, {})``."""
        if self.ctc_head is None:
            return {}, {}
        enc, enc_lengths = self.encode(batch["features"], batch["feature_lengths"])
        best_paths = self.ctc_log_probs(enc).argmax(dim=-1)
        errors = 0
        for path, length, ref, ref_length in zip(best_paths, enc_lengths, batch["tokens"], batch["token_lengths"]):
            hyp = torch.unique_consecutive(path[:length])
            errors += edit_distance(hyp[hyp != 0].tolist(), ref[:ref_length].tolist())
        return {"ctc_ter": errors / max(int(batch["token_lengths"].sum()), 1)}, {}
