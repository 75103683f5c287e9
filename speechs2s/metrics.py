"""Evaluation metrics: WER/CER for ASR; attention focus, diagonality and mel cepstral distortion for TTS.

Text metrics compare :func:`~speechs2s.text.normalize.normalize_for_asr` forms of both sides, so
"Dr. Smith paid $5." and "doctor smith paid five dollars" match exactly.
"""
import math

import jiwer
import torch

from speechs2s.text.normalize import normalize_for_asr


def error_counts(ref: str, hyp: str) -> dict[str, int]:
    """Word-level edit counts of one utterance: ``{"sub", "del", "ins", "ref_words"}`` (normalised text)."""
    ref_words, hyp_words = normalize_for_asr(ref).split(), normalize_for_asr(hyp).split()
    if not ref_words or not hyp_words:  # nothing to align: all deletions or all insertions
        return {"sub": 0, "del": len(ref_words), "ins": len(hyp_words), "ref_words": len(ref_words)}
    out = jiwer.process_words(" ".join(ref_words), " ".join(hyp_words))
    return {"sub": out.substitutions, "del": out.deletions, "ins": out.insertions, "ref_words": len(ref_words)}


def _check_pairs(refs: list[str], hyps: list[str]) -> None:
    if isinstance(refs, str) or isinstance(hyps, str):
        raise TypeError("wer/cer take lists of strings; use [ref], [hyp] for one utterance")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate: total (substitutions + deletions + insertions) / total reference words."""
    _check_pairs(refs, hyps)
    totals = [error_counts(ref, hyp) for ref, hyp in zip(refs, hyps)]
    words = sum(t["ref_words"] for t in totals)
    if words == 0:
        raise ValueError("wer: the references contain no words")
    return sum(t["sub"] + t["del"] + t["ins"] for t in totals) / words


def cer(refs: list[str], hyps: list[str]) -> float:
    """Corpus character error rate over the normalised texts (spaces between words count as characters)."""
    _check_pairs(refs, hyps)
    errors = chars = 0
    for ref, hyp in zip(refs, hyps):
        ref, hyp = normalize_for_asr(ref), normalize_for_asr(hyp)
        if ref and hyp:
            out = jiwer.process_characters(ref, hyp)
            errors += out.substitutions + out.deletions + out.insertions
        else:
            errors += len(ref) + len(hyp)
        chars += len(ref)
    if chars == 0:
        raise ValueError("cer: the references contain no characters")
    return errors / chars


def _attention_batch(attn: torch.Tensor, dec_lengths, enc_lengths) -> list[torch.Tensor]:
    """``(T_dec, T_enc)`` or ``(B, T_dec, T_enc)`` (+ optional lengths) -> list of unpadded ``(T_dec_i, T_enc_i)``."""
    attn = attn.detach().float()
    if attn.dim() == 2:
        attn = attn[None]
    batch, max_dec, max_enc = attn.shape
    dec_lengths = [max_dec] * batch if dec_lengths is None else [int(n) for n in dec_lengths]
    enc_lengths = [max_enc] * batch if enc_lengths is None else [int(n) for n in enc_lengths]
    return [a[:d, :e] for a, d, e in zip(attn, dec_lengths, enc_lengths)]


def focus_rate(attn: torch.Tensor, dec_lengths=None, enc_lengths=None) -> float:
    """Mean over decoder steps of the largest attention weight (FastSpeech's focus rate), in [0, 1].

    ``attn``: ``(T_dec, T_enc)`` or ``(B, T_dec, T_enc)`` with rows summing to 1; optional lengths
    ``(B,)`` exclude padding. Batches average the per-utterance values. A sharp alignment scores
    near 1; uniform attention scores ``1 / T_enc``.
    """
    values = [a.max(dim=1).values.mean() for a in _attention_batch(attn, dec_lengths, enc_lengths)]
    return torch.stack(values).mean().item()


def diagonality(attn: torch.Tensor, dec_lengths=None, enc_lengths=None, band: float = 0.2) -> float:
    """Share of attention mass near the diagonal, in [0, 1].

    Decoder step ``s`` and encoder step ``t`` get relative positions ``(s + 0.5) / T_dec`` and
    ``(t + 0.5) / T_enc``; the score is the attention mass with ``|t_rel - s_rel| <= band``, divided
    by the total mass (both summed over all valid cells), averaged over the batch. A monotonic
    alignment at constant speed scores 1; uniform attention scores about ``2 * band - band ** 2``
    (0.36 for the default band of 0.2). Shapes as in :func:`focus_rate`.
    """
    values = []
    for a in _attention_batch(attn, dec_lengths, enc_lengths):
        n_dec, n_enc = a.shape
        s = (torch.arange(n_dec, device=a.device) + 0.5) / n_dec
        t = (torch.arange(n_enc, device=a.device) + 0.5) / n_enc
        near = (t[None, :] - s[:, None]).abs() <= band
        values.append((a * near).sum() / a.sum().clamp(min=1e-12))
    return torch.stack(values).mean().item()


def mel_cepstral_distortion(ref_log_mel: torch.Tensor, hyp_log_mel: torch.Tensor, n_coeffs: int = 13) -> float:
    """MCD in dB between two log power mel spectrograms ``(frames, M)`` (e.g. :class:`~speechs2s.audio.LogMel`).

    Cepstra are the orthonormal DCT-II of the log *amplitude* mel (``0.5 * log_mel``), coefficients
    1..n_coeffs-1 (energy c0 excluded); frames are aligned with DTW and
    ``MCD = 10 / ln 10 * sqrt(2 * sum_k (c_k - c'_k)^2)`` is averaged over the path. This is the
    common MFCC-based approximation of MCD, not SPTK's all-pass-warped mel-cepstrum.
    """
    import librosa
    import scipy.fft

    ref, hyp = (scipy.fft.dct(0.5 * x.detach().float().cpu().numpy(), type=2, norm="ortho", axis=-1)[:, 1:n_coeffs] for x in (ref_log_mel, hyp_log_mel))
    _, path = librosa.sequence.dtw(X=ref.T, Y=hyp.T, metric="euclidean")
    diff = ref[path[:, 0]] - hyp[path[:, 1]]
    return float((10 / math.log(10) * (2 * (diff**2).sum(axis=1)) ** 0.5).mean())
