"""Pitch (F0) tracking: YIN (de Cheveigné & Kawahara 2002), vectorised over frames in torch; and pitch
shifting that keeps timing and formants: TD-PSOLA on the tracked periods (:func:`shift_pitch`).

Frame ``i`` is centred on sample ``i * hop_length``, as the log-mel frames of
:class:`speechs2s.audio.LogMel` are, so ``T // hop_length + 1`` frames for ``T`` samples. Every frame's
difference function comes from one FFT cross-correlation; the period is the first dip of the
cumulative mean normalised difference below ``threshold``, else its global minimum (refined by
parabolic interpolation). Frames whose minimum stays above ``voicing`` (noise, breath) or that are
quieter than ``silence_db`` are unvoiced: F0 = 0.
"""
import bisect
import math

import numpy as np
import torch
import torch.nn.functional as F

F_MIN, F_MAX = 60.0, 500.0  # Hz: the speaking voice, low male to high child
THRESHOLD = 0.1  # YIN's absolute threshold: the period is the first dip of the normalised difference below it
VOICING = 0.35  # ... or, without one, its global minimum; frames whose minimum is above this are unvoiced
SILENCE_DB = -60.0  # frames with a mean square below this (dB full scale) are unvoiced
# shift_pitch's tracker is more lenient: a voiced frame left unshifted is heard as a pitch jump inside a vowel.
# White, high-passed and low-passed noise all stay unvoiced with it; speech gets about 0.68 voiced frames, not 0.45.
SHIFT_THRESHOLD, SHIFT_VOICING = 0.3, 0.6


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


def shift_pitch(wav: torch.Tensor, sample_rate: int, semitones: float, hop_length: int = 256) -> torch.Tensor:
    """``wav (T,)`` with its voiced parts ``semitones`` higher (negative: lower), same length, formants kept.

    TD-PSOLA (Moulines & Charpentier 1990): pitch marks one tracked period apart on the waveform's peaks
    (:func:`track_pitch` every ``hop_length`` samples), a Hann-windowed grain of two periods around each,
    overlap-added one period / ratio apart (the tracker's thresholds: ``SHIFT_THRESHOLD``, ``SHIFT_VOICING``).
    Unvoiced parts are cut into ``hop_length`` grains and put back where they were. A gain per ``hop_length`` frame
    (interpolated) then gives each frame its old loudness, and the whole is scaled down if it would exceed [-1, 1]."""
    ratio = 2.0 ** (semitones / 12)
    if abs(ratio - 1.0) < 1e-4 or wav.numel() == 0:
        return wav
    x = wav.detach().float().cpu().numpy()
    f0 = track_pitch(torch.from_numpy(x), sample_rate, hop_length, threshold=SHIFT_THRESHOLD, voicing=SHIFT_VOICING).numpy()
    marks, periods = _pitch_marks(x, f0, sample_rate, hop_length)
    out = np.zeros_like(x)
    position = float(marks[0])
    while position < len(x):
        k = bisect.bisect_left(marks, position)
        k = min((i for i in (k - 1, k) if 0 <= i < len(marks)), key=lambda i: abs(marks[i] - position))
        voiced = periods[k] > 0
        period = periods[k] if voiced else hop_length
        centre, target = (marks[k] if voiced else round(position)), round(position)
        half = max(1, round(period))
        lo, hi = max(0, centre - half, half - target + centre), min(len(x), centre + half + 1, len(x) + centre - target)
        window = np.hanning(2 * half + 1)[lo - centre + half:hi - centre + half]
        out[lo - centre + target:hi - centre + target] += x[lo:hi] * window
        position += period / ratio if voiced else period
    before, after = (_frame_rms(signal, hop_length) for signal in (x, out))
    gain = np.clip(before / np.maximum(after, 1e-8), 0.25, 4.0)
    centres = np.arange(len(gain)) * hop_length + hop_length / 2
    out = out * np.interp(np.arange(len(x)), centres, gain).astype(np.float32)
    return torch.from_numpy(out / max(1.0, float(np.abs(out).max()))).to(wav)  # denser pulses peak higher: no clipping


def _frame_rms(x: np.ndarray, hop_length: int) -> np.ndarray:
    """Root mean square of each ``hop_length`` samples of ``x`` (the last frame zero-padded)."""
    frames = np.pad(x, (0, -len(x) % hop_length)).reshape(-1, hop_length)
    return np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))


def _pitch_marks(x: np.ndarray, f0: np.ndarray, sample_rate: int, hop_length: int) -> tuple[list[int], list[float]]:
    """Analysis marks of :func:`shift_pitch`: ``(sample positions, periods in samples)``, ascending. In voiced frames
    one per period, on the strongest sample of the first period, then on the peak of the same sign within a quarter
    period of where the last period predicts; in unvoiced ones every ``hop_length`` samples, period 0."""
    marks, periods, polarity, expected = [], [], 0.0, 0.0
    while expected < len(x):
        f = f0[min(round(expected / hop_length), len(f0) - 1)]
        if f <= 0:
            marks.append(round(expected))
            periods.append(0.0)
            polarity, expected = 0.0, round(expected) + hop_length
            continue
        period = sample_rate / f
        if polarity == 0.0:  # a voiced stretch begins
            lo, hi = round(expected), min(len(x), round(expected + period) + 1)
            peak = lo + int(np.argmax(np.abs(x[lo:hi])))
            polarity = 1.0 if x[peak] >= 0 else -1.0
        else:
            lo, hi = max(marks[-1] + 1, round(expected - period / 4)), min(len(x), round(expected + period / 4) + 1)
            peak = lo + int(np.argmax(polarity * x[lo:hi])) if hi > lo else lo
        if peak >= len(x):
            break
        marks.append(peak)
        periods.append(period)
        expected = peak + period
    return marks, periods
