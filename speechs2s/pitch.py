"""Pitch (F0) tracking: YIN (de Cheveigné & Kawahara 2002), vectorised over frames in torch.

Frame ``i`` is centred on sample ``i * hop_length``, as the log-mel frames of
:class:`speechs2s.audio.LogMel` are, so ``T // hop_length + 1`` frames for ``T`` samples. Every frame's
difference function comes from one FFT cross-correlation; the period is the first dip of the
cumulative mean normalised difference below ``threshold``, else its global minimum (refined by
parabolic interpolation). Frames whose minimum stays above ``voicing`` (noise, breath) or that are
quieter than ``silence_db`` are unvoiced: F0 = 0.
"""
import math

import torch
import torch.nn.functional as F

F_MIN, F_MAX = 60.0, 500.0  # Hz: the speaking voice, low male to high child
THRESHOLD = 0.1  # YIN's absolute threshold: the period is the first dip of the normalised difference below it
VOICING = 0.35  # ... or, without one, its global minimum; frames whose minimum is above this are unvoiced
SILENCE_DB = -60.0  # frames with a mean square below this (dB full scale) are unvoiced


def track_pitch(wav: torch.Tensor, sample_rate: int, hop_length: int, f_min: float = F_MIN, f_max: float = F_MAX,
                threshold: float = THRESHOLD, voicing: float = VOICING, silence_db: float = SILENCE_DB) -> torch.Tensor:
    """``wav (T,)`` in [-1, 1] -> F0 in Hz per frame ``(T // hop_length + 1,)``, 0 where unvoiced."""
    tau_min, tau_max = math.floor(sample_rate / f_max), math.ceil(sample_rate / f_min)
    window = 2 * tau_max  # samples integrated by the difference function
    frame = window + tau_max + (window + tau_max) % 2  # even, so the centred frames count T // hop + 1
    x = F.pad(wav.float(), (frame // 2, frame // 2)).unfold(0, frame, hop_length)  # (N, frame)
    x = x - x.mean(-1, keepdim=True)
    n_fft = 2 ** math.ceil(math.log2(frame + window))
    # r(tau) = sum_j x[j] x[j + tau] over the window, for tau = 0 .. tau_max
    correlation = torch.fft.irfft(torch.fft.rfft(x, n_fft) * torch.fft.rfft(x[:, :window], n_fft).conj(), n_fft)
    correlation = correlation[:, :tau_max + 1]
    energy = F.pad(x.square().cumsum(-1), (1, 0))  # energy[:, k] = sum x[:k]^2
    lags = torch.arange(tau_max + 1)
    shifted_energy = energy[:, lags + window] - energy[:, lags]  # sum x[tau : tau + window]^2
    difference = (energy[:, window:window + 1] + shifted_energy - 2 * correlation).clamp(min=0)
    cumulative = difference[:, 1:].cumsum(-1)
    normalised = torch.ones_like(difference)  # d'(0) = 1
    normalised[:, 1:] = difference[:, 1:] * lags[1:] / cumulative.clamp(min=1e-12)
    normalised[:, 1:] = torch.where(cumulative > 1e-12, normalised[:, 1:], 1.0)

    # the first lag of a dip below the threshold where the curve stops falling, else the global minimum
    searched = normalised[:, tau_min:]
    dip = (searched[:, :-1] < threshold) & (searched[:, :-1] <= searched[:, 1:])
    minimum, lowest = searched.min(-1)
    tau = torch.where(dip.any(-1), dip.float().argmax(-1), lowest) + tau_min  # (N,)
    left, centre, right = (normalised.gather(1, (tau + k).clamp(max=tau_max)[:, None])[:, 0] for k in (-1, 0, 1))
    curvature = left - 2 * centre + right
    shift = torch.where(curvature > 0, 0.5 * (left - right) / curvature.clamp(min=1e-12), 0.0).clamp(-1, 1)
    loud = energy[:, window] / window > 10 ** (silence_db / 10)
    return torch.where((minimum < voicing) & loud, sample_rate / (tau + shift), 0.0)
