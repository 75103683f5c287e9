"""Training losses. Token losses are averaged over valid (non-padded) target tokens."""
import torch
import torch.nn.functional as F

from speechs2s.nn.masks import sequence_mask


def label_smoothed_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor,
                                 smoothing: float = 0.0) -> torch.Tensor:
    """``logits (B, L, V)``, ``targets (B, L)``, ``lengths (B,)`` valid targets per row
    -> mean over valid tokens of the cross-entropy against ``(1 - smoothing) * one_hot + smoothing / V``."""
    valid = sequence_mask(lengths, targets.size(1))
    return F.cross_entropy(logits[valid].float(), targets[valid], label_smoothing=smoothing)


def ctc_loss(log_probs: torch.Tensor, input_lengths: torch.Tensor, targets: torch.Tensor,
             target_lengths: torch.Tensor, blank: int = 0) -> torch.Tensor:
    """CTC negative log-likelihood summed over the batch and divided by the number of target tokens
    (same per-token scale as the cross-entropy).

    ``log_probs (B, T, V)``, ``input_lengths (B,)``, ``targets (B, L)`` padded, ``target_lengths (B,)``.
    Utterances too short for their targets (impossible alignments) contribute zero instead of inf."""
    loss = F.ctc_loss(log_probs.float().transpose(0, 1), targets, input_lengths, target_lengths,
                      blank=blank, reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp(min=1)


def mwer_risk(sequence_log_probs: torch.Tensor, word_errors: torch.Tensor,
              ref_words: torch.Tensor) -> torch.Tensor:
    """Minimum word error rate risk (Prabhavalkar et al. 2018) of ``N`` hypotheses per utterance.

    ``sequence_log_probs (B, N)`` (differentiable), ``word_errors (B, N)``, ``ref_words (B,)`` ->
    mean over utterances of ``sum_i p_i * (errors_i - mean errors) / ref_words``, where ``p`` is the
    softmax of the log-probs over the N-best (renormalised) and the mean is the baseline that lowers
    the variance: 0 when every hypothesis has as many errors; its gradient moves probability mass
    toward the hypotheses with fewer errors than average."""
    probs = sequence_log_probs.float().softmax(dim=-1)
    errors = word_errors.float()
    relative = (errors - errors.mean(dim=-1, keepdim=True)) / ref_words.float().clamp(min=1)[:, None]
    return (probs * relative).sum(dim=-1).mean()


# --- TTS losses -------------------------------------------------------------------------------


def guided_attention_weights(token_lengths: torch.Tensor, frame_lengths: torch.Tensor, sigma: float = 0.4) -> torch.Tensor:
    """Tachibana et al. (2018) penalty ``W[b, t, n] = 1 - exp(-(n/N - t/T)^2 / (2 sigma^2))``.

    ``token_lengths (B,)`` = N, ``frame_lengths (B,)`` = T (decoder steps) -> ``(B, T_max, N_max)``,
    zero outside each item's ``T x N`` block (padding is never penalised)."""
    device = token_lengths.device
    n = torch.arange(int(token_lengths.max()), device=device)[None, None, :] / token_lengths[:, None, None]
    t = torch.arange(int(frame_lengths.max()), device=device)[None, :, None] / frame_lengths[:, None, None]
    weights = 1.0 - torch.exp(-((n - t) ** 2) / (2 * sigma**2))
    valid = sequence_mask(frame_lengths)[:, :, None] & sequence_mask(token_lengths)[:, None, :]
    return weights * valid


def guided_attention_loss(attention: torch.Tensor, token_lengths: torch.Tensor, frame_lengths: torch.Tensor,
                          sigma: float = 0.4) -> torch.Tensor:
    """Expected penalty ``sum_n W[t, n] * attention[t, n]`` averaged over the valid decoder steps
    of every item and head: 0 for a perfect diagonal, near 1 far from it, whatever the text length.

    ``attention (B, T, N)`` or ``(B, H, T, N)`` (any number of head dimensions between B and T)."""
    weights = guided_attention_weights(token_lengths, frame_lengths, sigma)
    weights = weights.view(weights.size(0), *[1] * (attention.dim() - 3), *weights.shape[1:])
    heads = attention[0, ..., 0, 0].numel()
    return (attention.float() * weights).sum() / (frame_lengths.sum() * heads)


def stop_token_loss(logits: torch.Tensor, lengths: torch.Tensor, pos_weight: float = 10.0) -> torch.Tensor:
    """Binary cross-entropy of the stop logits ``(B, T)``: target 1 on each item's last frame
    (``lengths - 1``) and 0 before it; padding is masked; positives weighted by ``pos_weight``."""
    frames = torch.arange(logits.size(1), device=logits.device)[None, :]
    target = (frames >= lengths[:, None] - 1).to(logits.dtype)
    mask = sequence_mask(lengths, logits.size(1))
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none",
                                              pos_weight=logits.new_tensor(pos_weight, dtype=torch.float32))
    return loss[mask].mean()


def mel_loss(predicted: torch.Tensor, target: torch.Tensor, lengths: torch.Tensor, kind: str = "l1+l2") -> torch.Tensor:
    """Masked spectrogram regression loss over valid frames of ``(B, T, M)``: ``"l1"``, ``"l2"`` or their sum."""
    mask = sequence_mask(lengths, target.size(1))
    difference = (predicted.float() - target.float())[mask]
    loss = difference.new_zeros(())
    if "l1" in kind:
        loss = loss + difference.abs().mean()
    if "l2" in kind:
        loss = loss + difference.pow(2).mean()
    return loss
