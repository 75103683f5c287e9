"""Vocoders: log-mel ``(frames, M)`` -> waveform ``(T,)``.

All vocoders expect the mels of :class:`speechs2s.audio.LogMel` with the features they were
built for (by default ``TTS_FEATURES``: 22,050 Hz, n_fft 1024, hop 256, 80 slaney mels,
0-8000 Hz, natural log of the power mel clamped at 1e-5), and share one inference interface:
``vocoder.generate(mel) -> wav`` for ``mel (frames, M)`` or ``(B, frames, M)``, plus the
``sample_rate`` and ``hop_length`` attributes.

- :class:`GriffinLim`: no training, runs anywhere; robotic but intelligible.
- :class:`HiFiGAN` (Kong et al., 2020): a generator that upsamples to the sample rate with transposed
  convolutions; :class:`Vocos` (Siuzdak, 2023): a generator that predicts an STFT at frame rate and
  inverts it (:mod:`speechs2s.models.vocos`), far cheaper on a CPU. Both train as a GAN
  (:class:`GANVocoder`) against multi-period and multi-scale discriminators. ``forward(batch)``
  returns generator and discriminator losses whose single backward gives each network only its own
  gradients; ``parameter_groups()`` names the two networks, so the trainer gives each its own
  optimizer, schedule and clipping (``optim.groups``). In eval mode ``forward`` returns the mel L1
  alone as ``loss``: checkpoints are chosen on how close the audio is, not on a GAN's balance.
"""
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from speechs2s.audio import TTS_FEATURES, FeatureConfig, LogMel, mel_to_linear
from speechs2s.errors import ConfigError
from speechs2s.models.vocos import VocosGenerator

LRELU_SLOPE = 0.1


def _batched(mel: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """``(frames, M)`` or ``(B, frames, M)`` -> ``((B, frames, M), was_unbatched)``."""
    if mel.dim() not in (2, 3):
        raise ValueError(f"expected a mel of shape (frames, M) or (B, frames, M), got {tuple(mel.shape)}")
    return (mel.unsqueeze(0), True) if mel.dim() == 2 else (mel, False)


class GriffinLim(nn.Module):
    """Log-mel -> waveform by Griffin-Lim phase reconstruction (no learned weights, deterministic).

    The mel is mapped back to a linear magnitude (``audio.mel_to_linear``) and the phase is
    estimated by ``n_iter`` fast (momentum) Griffin-Lim iterations, starting from zero phase.
    ``sharpen > 1`` raises each frame's magnitudes to that power at constant frame energy,
    deepening spectral valleys as Tacotron does: it can reduce the buzz of over-smoothed TTS
    mels, but moves the audio away from a ground-truth mel (mel L1 0.22 -> 0.75 at 1.2).
    """

    def __init__(self, features: FeatureConfig = TTS_FEATURES, n_iter: int = 32,
                 momentum: float = 0.99, sharpen: float = 1.0):
        super().__init__()
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        self.features = features
        self.sample_rate = features.sample_rate
        self.hop_length = features.hop_length
        self.n_iter, self.momentum, self.sharpen = n_iter, momentum, sharpen
        left = (features.n_fft - features.win_length) // 2  # centred in the FFT frame, as torch.stft does
        window = F.pad(torch.hann_window(features.win_length), (left, features.n_fft - features.win_length - left))
        self.register_buffer("window", window, persistent=False)

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` -> complex ``(B, F, frames)``, centred (reflect padding), as :class:`LogMel`'s."""
        n_fft = self.features.n_fft
        return torch.stft(wav, n_fft, self.hop_length, n_fft, self.window, return_complex=True)

    def _overlap_add(self, frames: torch.Tensor) -> torch.Tensor:
        """``frames (B, N, n_fft)`` -> their sum placed ``hop`` samples apart ``(B, (N - 1) * hop + n_fft)``:
        each frame is cut into ``ceil(n_fft / hop)`` hop-long pieces, and the k-th pieces of all frames
        land ``k`` hops later (one shifted add per piece)."""
        B, N, n_fft = frames.shape
        hop = self.hop_length
        pieces = -(-n_fft // hop)
        frames = F.pad(frames, (0, pieces * hop - n_fft)).view(B, N, pieces, hop)
        out = frames.new_zeros(B, N + pieces - 1, hop)
        for k in range(pieces):
            out[:, k:k + N] += frames[:, :, k]
        return out.flatten(1)[:, :(N - 1) * hop + n_fft]

    def _istft(self, spectrum: torch.Tensor, envelope: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`_stft`, ``(B, F, N) -> (B, (N - 1) * hop)``, given ``envelope`` from
        :meth:`_envelope`: what ``torch.istft`` computes, ~1.5x faster on CPU (it rebuilds the
        window envelope at every call, and its overlap-add is slower)."""
        n_fft = self.features.n_fft
        frames = torch.fft.irfft(spectrum.transpose(1, 2), n_fft).mul_(self.window)  # (B, N, n_fft)
        return self._overlap_add(frames)[:, n_fft // 2:n_fft // 2 + envelope.size(-1)] / envelope

    def _envelope(self, frames: int) -> torch.Tensor:
        """Overlap-added squared window ``((frames - 1) * hop,)`` that :meth:`_istft` divides by."""
        n_fft = self.features.n_fft
        envelope = self._overlap_add(self.window.square().expand(1, frames, n_fft))[0]
        envelope = envelope[n_fft // 2:n_fft // 2 + (frames - 1) * self.hop_length]
        if envelope.min() < 1e-11:
            raise ValueError(f"Griffin-Lim needs overlapping windows: hop {self.hop_length} is too long "
                             f"for a {self.features.win_length}-sample window")
        return envelope

    def griffin_lim(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Fast Griffin-Lim (Perraudin et al. 2013) from zero phase: ``magnitude (B, F, frames)`` -> ``wav (B, T)``.

        Each iteration keeps the phase of the consistent spectrum ``stft(istft(.))``, extrapolated
        by ``momentum`` past the previous one (the same iterates as ``torchaudio``'s ``GriffinLim``)."""
        step = self.momentum / (1 + self.momentum)  # the phase is scale-free: (1 + m) c - m c' ~ c - m / (1 + m) c'
        envelope = self._envelope(magnitude.size(-1))
        spectrum = magnitude.to(torch.complex64)
        previous = torch.zeros((), dtype=spectrum.dtype, device=spectrum.device)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(spectrum, envelope))
            spectrum = torch.sgn(torch.sub(rebuilt, previous, alpha=step)).mul_(magnitude)  # sgn: unit-modulus phase
            previous = rebuilt
        return self._istft(spectrum, envelope)

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (frames, M) | (B, frames, M)`` -> ``wav (T,) | (B, T)``, ``T = (frames - 1) * hop``."""
        mel, unbatched = _batched(mel)
        magnitude = mel_to_linear(mel, self.features)  # (B, F, frames)
        if self.sharpen != 1.0:
            energy = magnitude.square().sum(1, keepdim=True)
            magnitude = magnitude ** self.sharpen
            magnitude = magnitude * (energy / magnitude.square().sum(1, keepdim=True).clamp_min(1e-10)).sqrt()
        wav = self.griffin_lim(magnitude)
        wav = wav / wav.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)  # avoid clipping
        return wav[0] if unbatched else wav

    forward = generate


@dataclass
class GANVocoderConfig:
    """What every GAN vocoder has: the mel ``features`` it reads and its mel loss uses (a
    :class:`FeatureConfig` dict), the discriminators (``periods`` of the multi-period one, ``n_scales``
    of the multi-scale one, ``discriminator_channels`` their widest layer, 1024 in HiFi-GAN's paper) and
    the generator's loss weights."""

    n_mels: int = 80
    features: dict = field(default_factory=TTS_FEATURES.to_dict)
    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    n_scales: int = 3
    discriminator_channels: int = 1024
    mel_loss_weight: float = 45.0
    feature_loss_weight: float = 2.0

    def __post_init__(self):
        features = FeatureConfig.from_dict(self.features)
        if features.n_mels != self.n_mels:
            raise ConfigError(f"model.n_mels: {self.n_mels} but model.features.n_mels is {features.n_mels}")


@dataclass
class HiFiGANConfig(GANVocoderConfig):
    """HiFi-GAN generator; the defaults are the paper's V1 (13.9 M generator weights).
    ``prod(upsample_rates)`` must equal the features' ``hop_length``."""

    upsample_initial_channel: int = 512
    upsample_rates: list[int] = field(default_factory=lambda: [8, 8, 2, 2])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 16, 4, 4])
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilations: list[list[int]] = field(default_factory=lambda: [[1, 3, 5], [1, 3, 5], [1, 3, 5]])

    def __post_init__(self):
        super().__post_init__()
        features = FeatureConfig.from_dict(self.features)
        if math.prod(self.upsample_rates) != features.hop_length:
            raise ConfigError(f"model.upsample_rates: product {math.prod(self.upsample_rates)} "
                              f"must equal the hop length {features.hop_length}")
        if len(self.upsample_kernel_sizes) != len(self.upsample_rates):
            raise ConfigError("model.upsample_kernel_sizes: needs one kernel size per upsample rate")
        if len(self.resblock_dilations) != len(self.resblock_kernel_sizes):
            raise ConfigError("model.resblock_dilations: needs one dilation list per resblock kernel size")


# Option overrides of HiFiGANConfig: ``HiFiGANConfig(**HIFIGAN_PRESETS["tiny"])``.
HIFIGAN_PRESETS = {
    "v1": {},
    # 0.41 M weights in all (0.13 M generator): a step on one 8192-sample segment takes ~0.3 s on one CPU core.
    "tiny": dict(upsample_initial_channel=64, upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8],
                 resblock_kernel_sizes=[3, 7], resblock_dilations=[[1, 3], [1, 3]], discriminator_channels=64),
}


@dataclass
class VocosConfig(GANVocoderConfig):
    """Vocos generator (:class:`speechs2s.models.vocos.VocosGenerator`): ``layers`` ConvNeXt blocks of
    ``channels`` (pointwise ``hidden``) at frame rate; the inverse STFT uses the features' ``n_fft`` and
    ``hop_length``. The defaults are the paper's (13.5 M generator weights)."""

    channels: int = 512
    hidden: int = 1536
    layers: int = 8
    kernel_size: int = 7

    def __post_init__(self):
        super().__post_init__()
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size: must be odd, got {self.kernel_size}")


VOCOS_PRESETS = {
    "base": {},
    # 2.8 M generator weights; discriminators as HiFi-GAN's tiny preset: trains on a CPU
    "tiny": dict(channels=256, hidden=768, layers=6, discriminator_channels=64),
}


def _padding(kernel_size: int, dilation: int = 1) -> int:
    return (kernel_size * dilation - dilation) // 2


class ResBlock(nn.Module):
    """Dilated residual convolutions at one kernel size: ``(B, C, T) -> (B, C, T)``."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.dilated = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, dilation=d, padding=_padding(kernel_size, d)))
            for d in dilations)
        self.plain = nn.ModuleList(
            weight_norm(nn.Conv1d(channels, channels, kernel_size, padding=_padding(kernel_size)))
            for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for dilated, plain in zip(self.dilated, self.plain):
            x = x + plain(F.leaky_relu(dilated(F.leaky_relu(x, LRELU_SLOPE)), LRELU_SLOPE))
        return x


class Generator(nn.Module):
    """``mel (B, M, frames) -> wav (B, 1, frames * hop)``: transposed-conv upsampling, each stage
    followed by a multi-receptive-field fusion (the mean of one ResBlock per kernel size)."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__()
        channels = config.upsample_initial_channel
        self.conv_pre = weight_norm(nn.Conv1d(config.n_mels, channels, 7, padding=3))
        self.upsamples = nn.ModuleList()
        self.fusions = nn.ModuleList()
        for rate, kernel in zip(config.upsample_rates, config.upsample_kernel_sizes):
            self.upsamples.append(weight_norm(nn.ConvTranspose1d(
                channels, channels // 2, kernel, stride=rate, padding=(kernel - rate) // 2)))
            channels //= 2
            self.fusions.append(nn.ModuleList(
                ResBlock(channels, k, d) for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilations)))
        self.conv_post = weight_norm(nn.Conv1d(channels, 1, 7, padding=3))
        for module in self.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                nn.init.normal_(module.parametrizations.weight.original1, 0.0, 0.01)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for upsample, fusion in zip(self.upsamples, self.fusions):
            x = upsample(F.leaky_relu(x, LRELU_SLOPE))
            x = sum(block(x) for block in fusion) / len(fusion)
        return torch.tanh(self.conv_post(F.leaky_relu(x)))


class PeriodDiscriminator(nn.Module):
    """Looks at every ``period``-th sample: the waveform ``(B, 1, T)`` is folded to
    ``(B, 1, T / period, period)`` and scanned by 2-D convolutions along time only."""

    def __init__(self, period: int, width: int):
        super().__init__()
        self.period = period
        channels = [1, width // 32, width // 8, width // 2, width]
        self.convs = nn.ModuleList(
            weight_norm(nn.Conv2d(c_in, c_out, (5, 1), (3, 1), padding=(2, 0)))
            for c_in, c_out in zip(channels, channels[1:]))
        self.convs.append(weight_norm(nn.Conv2d(width, width, (5, 1), padding=(2, 0))))
        self.conv_post = weight_norm(nn.Conv2d(width, 1, (3, 1), padding=(1, 0)))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = F.pad(wav, (0, -wav.size(-1) % self.period), mode="reflect")
        return scan_convs(self, x.view(x.size(0), 1, -1, self.period))


class ScaleDiscriminator(nn.Module):
    """Grouped strided 1-D convolutions over the waveform ``(B, 1, T)`` average-pooled
    ``downsample`` times (x2 each); the full-rate one uses spectral norm, as in the paper."""

    def __init__(self, width: int, downsample: int):
        super().__init__()
        self.downsample = downsample
        norm = spectral_norm if downsample == 0 else weight_norm
        channels = [1, width // 8, width // 8, width // 4, width // 2, width, width]
        kernels, strides, groups = [15, 41, 41, 41, 41, 41], [1, 2, 2, 4, 4, 1], [1, 4, 16, 16, 16, 16]
        self.convs = nn.ModuleList(
            norm(nn.Conv1d(c_in, c_out, k, s, groups=math.gcd(g, c_in, c_out), padding=k // 2))
            for c_in, c_out, k, s, g in zip(channels, channels[1:], kernels, strides, groups))
        self.convs.append(norm(nn.Conv1d(width, width, 5, padding=2)))
        self.conv_post = norm(nn.Conv1d(width, 1, 3, padding=1))

    def forward(self, wav: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        for _ in range(self.downsample):
            wav = F.avg_pool1d(wav, 4, 2, padding=2)
        return scan_convs(self, wav)


def scan_convs(discriminator: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Run ``discriminator.convs`` then ``conv_post``: ``(logits (B, N), feature maps)``."""
    features = []
    for conv in discriminator.convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        features.append(x)
    x = discriminator.conv_post(x)
    features.append(x)
    return x.flatten(1), features


class Discriminator(nn.Module):
    """Multi-period + multi-scale discriminators: ``wav (B, T)`` -> one ``(logits, feature maps)``
    pair per sub-discriminator."""

    def __init__(self, config: GANVocoderConfig):
        super().__init__()
        width = config.discriminator_channels
        self.discriminators = nn.ModuleList(
            [PeriodDiscriminator(period, width) for period in config.periods]
            + [ScaleDiscriminator(width, downsample) for downsample in range(config.n_scales)])

    def forward(self, wav: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [discriminator(wav.unsqueeze(1)) for discriminator in self.discriminators]


def discriminator_loss(real_outputs, fake_outputs) -> torch.Tensor:
    """LSGAN: push real logits to 1 and fake logits to 0, summed over sub-discriminators."""
    return sum(((1 - real) ** 2).mean() + (fake ** 2).mean()
               for (real, _), (fake, _) in zip(real_outputs, fake_outputs))


def adversarial_loss(fake_outputs) -> torch.Tensor:
    """LSGAN generator loss: push the fake logits to 1."""
    return sum(((1 - fake) ** 2).mean() for fake, _ in fake_outputs)


def feature_matching_loss(real_outputs, fake_outputs) -> torch.Tensor:
    """L1 between the discriminators' feature maps of real (constant) and generated audio."""
    return sum(F.l1_loss(fake, real.detach())
               for (_, real_maps), (_, fake_maps) in zip(real_outputs, fake_outputs)
               for real, fake in zip(real_maps, fake_maps))


def gan_losses(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor):
    """``(loss_d, adversarial, feature_matching)`` of a discriminator that returns ``(logits, feature maps)``
    pairs, such that one backward of their (weighted) sum gives each network only its own gradients:

    - the discriminator loss sees ``fake.detach()``: no gradient reaches the generator;
    - the generator's adversarial and feature-matching losses run the discriminator with
      detached parameters (``functional_call``): no gradient reaches the discriminator."""
    real_outputs = discriminator(real)
    loss_d = discriminator_loss(real_outputs, discriminator(fake.detach()))
    frozen = {name: p.detach() for name, p in discriminator.named_parameters()}
    fake_outputs = torch.func.functional_call(discriminator, frozen, (fake,))
    return loss_d, adversarial_loss(fake_outputs), feature_matching_loss(real_outputs, fake_outputs)


class GANVocoder(nn.Module):
    """A vocoder trained as a GAN: ``generate(mel (frames, M)) -> wav (T,)``; subclasses build
    ``self.generator`` (``mel (B, M, frames) -> wav (B, 1, T)``).

    Training batch: ``{"wavs": (B, S) in [-1, 1], "mels": (B, frames, M)}`` (mels of the wavs, or
    of a TTS model's teacher-forced output for fine-tuning; the mel-loss target is always
    recomputed from ``wavs``). The generated audio and ``wavs`` are cut to the shorter of the two,
    so generators of ``frames * hop`` and of ``(frames - 1) * hop`` samples both fit.
    """

    def __init__(self, config: GANVocoderConfig, generator: nn.Module):
        super().__init__()
        self.config = config
        self.features = FeatureConfig.from_dict(config.features)
        self.sample_rate = self.features.sample_rate
        self.hop_length = self.features.hop_length
        self.generator = generator
        self.discriminator = Discriminator(config)
        self.log_mel = LogMel(self.features)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The two networks, each with its own optimizer, schedule and clipping in the trainer."""
        return {"generator": list(self.generator.parameters()), "discriminator": list(self.discriminator.parameters())}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        """Training: the GAN losses (:func:`gan_losses`) summed into one ``loss`` whose backward gives each
        network only the gradients of its own objective (the trainer then steps each with its own optimizer).

        Eval mode: ``loss`` is the mel L1 of the generated audio (what validation compares)."""
        real = batch["wavs"]
        fake = self.generator(batch["mels"].transpose(1, 2)).squeeze(1)
        length = min(real.size(-1), fake.size(-1))
        real, fake = real[:, :length], fake[:, :length]
        if not self.training:
            mel_l1 = self.mel_l1(fake, real)
            return dict(loss=mel_l1, mel_l1=mel_l1)

        loss_d, adversarial, feature_matching = gan_losses(self.discriminator, real, fake)
        mel_l1 = self.mel_l1(fake, real)
        loss_g = adversarial + self.config.feature_loss_weight * feature_matching \
            + self.config.mel_loss_weight * mel_l1
        return dict(loss=loss_g + loss_d, loss_g=loss_g, loss_d=loss_d, adversarial=adversarial,
                    feature_matching=feature_matching, mel_l1=mel_l1)

    def mel_l1(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Mean absolute log-mel difference of two waveforms ``(B, T)`` (LogMel runs in float32)."""
        with torch.no_grad():
            target = self.log_mel(real)
        return F.l1_loss(self.log_mel(fake), target)

    @torch.no_grad()
    def validation_extras(self, batch: dict):
        """Mel L1 of the first item's generated audio, and its mel next to the real one."""
        from speechs2s.plots import plot_mels

        fake = self.generator(batch["mels"][:1].transpose(1, 2)).squeeze(1)
        length = min(fake.size(-1), batch["wavs"].size(-1))
        real, fake = batch["wavs"][:1, :length], fake[:, :length]
        real_mel, fake_mel = self.log_mel(real)[0], self.log_mel(fake)[0]
        figure = plot_mels({"real": real_mel, "generated": fake_mel})
        return {"mel_l1_generated": (real_mel - fake_mel).abs().mean().item()}, {"mels": figure}

    @torch.inference_mode()
    def generate(self, mel: torch.Tensor) -> torch.Tensor:
        """``mel (frames, M) | (B, frames, M)`` -> ``wav (T,) | (B, T)``, ``T = frames * hop`` (HiFi-GAN)
        or ``(frames - 1) * hop`` (Vocos)."""
        mel, unbatched = _batched(mel)
        wav = self.generator(mel.transpose(1, 2)).squeeze(1)
        return wav[0] if unbatched else wav

    def for_inference(self) -> "GANVocoder":
        """Fold weight norm into the generator's weights, drop the discriminators, switch to eval.
        Irreversible: the result can generate but no longer train or load training checkpoints."""
        for module in self.generator.modules():
            if parametrize.is_parametrized(module, "weight"):
                parametrize.remove_parametrizations(module, "weight")
        del self.discriminator
        return self.eval()


class HiFiGAN(GANVocoder):
    """HiFi-GAN vocoder: ``generate(mel (frames, M)) -> wav (frames * hop,)``."""

    def __init__(self, config: HiFiGANConfig):
        super().__init__(config, Generator(config))


class Vocos(GANVocoder):
    """Vocos vocoder: ``generate(mel (frames, M)) -> wav ((frames - 1) * hop,)``."""

    def __init__(self, config: VocosConfig):
        features = FeatureConfig.from_dict(config.features)
        super().__init__(config, VocosGenerator(config.n_mels, features.n_fft, features.hop_length, config.channels,
                                                config.hidden, config.layers, config.kernel_size))

