"""Data augmentation: SpecAugment on features; speed, pitch, noise, reverberation, telephone band and codecs on waveforms.

Every random choice draws from an optional ``torch.Generator`` so a seeded pipeline is reproducible.
"""
from dataclasses import dataclass, field

import torch
import torchaudio


@dataclass
class SpecAugment:
    """Frequency and time masking (Park et al., 2019) on one utterance's features ``(frames, M)``.

    ``freq_masks`` bands of up to ``freq_width`` mel bins and ``time_masks`` spans of up to
    ``time_width_ratio * frames`` frames are set to the utterance's mean value (a neutral level
    for log-mel features, which are normalised later inside the model). Returns a new tensor.
    """

    freq_masks: int = 2
    freq_width: int = 27
    time_masks: int = 2
    time_width_ratio: float = 0.05

    def __call__(self, features: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        frames, bins = features.shape
        keep = torch.ones(frames, bins, dtype=torch.bool, device=features.device)
        for _ in range(self.freq_masks):
            start, stop = _random_span(bins, self.freq_width, generator)
            keep[:, start:stop] = False
        for _ in range(self.time_masks):
            start, stop = _random_span(frames, int(self.time_width_ratio * frames), generator)
            keep[start:stop, :] = False
        return torch.where(keep, features, features.mean())


def _random_span(size: int, max_width: int, generator: torch.Generator | None) -> tuple[int, int]:
    """``[start, stop)`` of width uniform in ``[0, min(max_width, size)]`` at a uniform position."""
    width = int(torch.randint(0, min(max_width, size) + 1, (), generator=generator))
    start = int(torch.randint(0, size - width + 1, (), generator=generator))
    return start, start + width


def speed_perturb(wav: torch.Tensor, sample_rate: int, factor: float) -> torch.Tensor:
    """Play ``wav`` ``(..., T)`` ``factor`` times faster, changing tempo and pitch together like
    Kaldi/sox ``speed``: resampled to ``sample_rate / factor`` and read at ``sample_rate``, so the
    result has about ``T / factor`` samples."""
    if factor == 1.0:
        return wav
    return torchaudio.functional.resample(wav, round(sample_rate * factor), sample_rate)


def add_noise(
    wav: torch.Tensor, snr_db: float, noise: torch.Tensor | None = None, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``wav`` ``(T,)`` plus noise at a signal-to-noise ratio of ``snr_db`` decibels.

    ``noise`` ``(T_noise,)`` is a recording (e.g. MUSAN), looped if shorter and cut at a random
    offset; without it, white Gaussian noise is used.
    """
    if noise is None:
        noise = torch.randn(wav.shape, generator=generator).to(wav)
    else:
        noise = noise.to(wav).repeat(-(-wav.numel() // noise.numel()) + 1)
        offset = int(torch.randint(0, noise.numel() - wav.numel() + 1, (), generator=generator))
        noise = noise[offset : offset + wav.numel()]
    signal_power = wav.square().mean()
    noise_power = noise.square().mean().clamp(min=1e-10)
    return wav + noise * (signal_power / (noise_power * 10 ** (snr_db / 10))).sqrt()


def reverberate(wav: torch.Tensor, rir: torch.Tensor) -> torch.Tensor:
    """Convolve ``wav`` ``(T,)`` with a room impulse response ``rir`` ``(K,)``.

    The output ``(T,)`` stays time-aligned with the input (shifted back by the RIR's direct-path
    peak) and keeps the input's RMS level.
    """
    rir = rir.to(wav)
    peak = int(rir.abs().argmax())
    wet = torchaudio.functional.fftconvolve(wav, rir / rir.norm())[peak : peak + wav.numel()]
    return wet * (wav.square().mean() / wet.square().mean().clamp(min=1e-10)).sqrt()


@dataclass
class ChannelAugment:
    """Random speaker and channel changes of a waveform ``(T,)`` at ``sample_rate``, each with its own
    probability, in this order: pitch shift (up to ``pitch_semitones`` either way, tempo kept), room
    reverberation (a synthetic impulse response whose 60 dB decay time is drawn from ``rt60`` seconds),
    background noise (white or pink, signal-to-noise ratio drawn from ``snr_db``), the telephone band
    (8 kHz, 300-3400 Hz) and a lossy codec round trip (Opus or MP3 through soundfile). The output has
    the input's length. Config ``data.channel_augment`` (ASR training set only; ``{}`` = defaults)."""

    pitch_prob: float = 0.2
    pitch_semitones: float = 2.0
    reverb_prob: float = 0.2
    rt60: list[float] = field(default_factory=lambda: [0.2, 0.8])
    noise_prob: float = 0.3
    snr_db: list[float] = field(default_factory=lambda: [5.0, 30.0])
    telephone_prob: float = 0.1
    codec_prob: float = 0.2

    def __post_init__(self):
        for name in ("pitch_prob", "reverb_prob", "noise_prob", "telephone_prob", "codec_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("rt60", "snr_db"):
            low_high = getattr(self, name)
            if len(low_high) != 2 or low_high[0] > low_high[1]:
                raise ValueError(f"{name} must be [low, high], got {low_high}")

    def __call__(self, wav: torch.Tensor, sample_rate: int, generator: torch.Generator | None = None) -> torch.Tensor:
        def chance(probability: float) -> bool:
            return float(torch.rand((), generator=generator)) < probability

        def uniform(low: float, high: float) -> float:
            return low + (high - low) * float(torch.rand((), generator=generator))

        length = wav.numel()
        if chance(self.pitch_prob):
            wav = pitch_shift(wav, sample_rate, uniform(-self.pitch_semitones, self.pitch_semitones))
        if chance(self.reverb_prob):
            wav = reverberate(wav, room_impulse_response(uniform(*self.rt60), sample_rate, generator))
        if chance(self.noise_prob):
            noise = colored_noise(length, 1.0 if chance(0.5) else 0.0, generator)  # pink or white
            wav = add_noise(wav, uniform(*self.snr_db), noise, generator)
        if chance(self.telephone_prob):
            wav = telephone_band(wav, sample_rate)
        if chance(self.codec_prob):
            wav = codec_round_trip(wav, sample_rate, "opus" if chance(0.5) else "mp3", uniform(0.6, 1.0))
        return _fit(wav, length)


def _fit(wav: torch.Tensor, length: int) -> torch.Tensor:
    """``wav`` cut or zero-padded to ``length`` samples."""
    return torch.nn.functional.pad(wav[:length], (0, max(0, length - wav.numel())))


def pitch_shift(wav: torch.Tensor, sample_rate: int, semitones: float) -> torch.Tensor:
    """``wav`` ``(T,)`` with pitch and formants moved by about ``semitones`` and its tempo kept: a phase-vocoder
    stretch, then a resampling that plays it back faster or slower. The frequency ratio is rounded to a
    multiple of 1/20 (so the resampling ratio is small and fast); ratio 1 returns ``wav`` as is."""
    ratio = round(20 * 2 ** (semitones / 12)) / 20
    if ratio == 1.0:
        return wav
    n_fft, hop = 512, 128
    window = torch.hann_window(n_fft, device=wav.device)
    spectrum = torch.stft(wav, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, torch.pi * hop, spectrum.size(0), device=wav.device)[:, None]
    stretched = torchaudio.functional.phase_vocoder(spectrum, 1 / ratio, advance)
    longer = torch.istft(stretched, n_fft, hop, window=window, length=round(wav.numel() * ratio))
    return _fit(torchaudio.functional.resample(longer, round(sample_rate * ratio), sample_rate), wav.numel())


def room_impulse_response(rt60: float, sample_rate: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A synthetic room impulse response ``(rt60 * sample_rate,)``: the direct path, then exponentially
    decaying noise that falls 60 dB in ``rt60`` seconds (the diffuse tail of a room)."""
    samples = max(2, round(rt60 * sample_rate))
    t = torch.arange(samples) / sample_rate
    rir = 0.3 * torch.randn(samples, generator=generator) * torch.exp(-6.9 * t / rt60)
    rir[0] = 1.0
    return rir


def colored_noise(length: int, exponent: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gaussian noise ``(length,)`` whose power falls as ``1 / f ** exponent`` (0 white, 1 pink), unit RMS."""
    spectrum = torch.fft.rfft(torch.randn(length, generator=generator))
    frequencies = torch.arange(spectrum.numel()).clamp(min=1).float()
    noise = torch.fft.irfft(spectrum / frequencies ** (exponent / 2), n=length)
    return noise / noise.square().mean().sqrt().clamp(min=1e-10)


def telephone_band(wav: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``wav`` ``(T,)`` as a narrow-band telephone line passes it: 8 kHz sampling, 300-3400 Hz, back at ``sample_rate``."""
    narrow = torchaudio.functional.resample(wav, sample_rate, 8000)
    narrow = torchaudio.functional.lowpass_biquad(torchaudio.functional.highpass_biquad(narrow, 8000, 300.0), 8000, 3400.0)
    return _fit(torchaudio.functional.resample(narrow, 8000, sample_rate), wav.numel())


OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


MP3_MAX_COMPRESSION = 0.999  # libsndfile's MP3 encoder fails on levels above about 0.9999 (1.0 always)


def codec_round_trip(wav: torch.Tensor, sample_rate: int, codec: str, compression: float) -> torch.Tensor:
    """``wav`` ``(T,)`` encoded and decoded again with ``codec`` (``"opus"`` or ``"mp3"``, through soundfile) at
    libsndfile's ``compression`` level in [0, 1] (1: lowest bit rate; MP3 takes at most :data:`MP3_MAX_COMPRESSION`);
    Opus runs at the nearest rate it takes."""
    import io

    import soundfile

    if codec == "mp3":
        compression = min(compression, MP3_MAX_COMPRESSION)
    rate = min(OPUS_RATES, key=lambda r: abs(r - sample_rate)) if codec == "opus" else sample_rate
    audio = torchaudio.functional.resample(wav, sample_rate, rate) if rate != sample_rate else wav
    subtype, file_format = ("OPUS", "OGG") if codec == "opus" else ("MPEG_LAYER_III", "MP3")
    data = io.BytesIO()
    soundfile.write(data, audio.clamp(-1, 1).numpy(), rate, format=file_format, subtype=subtype, compression_level=compression)
    data.seek(0)
    decoded = torch.from_numpy(soundfile.read(data, dtype="float32")[0])
    if rate != sample_rate:
        decoded = torchaudio.functional.resample(decoded, rate, sample_rate)
    return _fit(decoded.to(wav), wav.numel())
