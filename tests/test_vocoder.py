import pytest
import torch

from speechs2s.audio import TTS_FEATURES, FeatureConfig, LogMel, load_audio
from speechs2s.checkpoint import save_checkpoint
from speechs2s.errors import ConfigError
from speechs2s.metrics import mel_cepstral_distortion
from speechs2s.models import build_model
from speechs2s.models.vocoder import HIFIGAN_PRESETS, VOCOS_PRESETS, GriffinLim, HiFiGAN, HiFiGANConfig, Vocos, VocosConfig
from speechs2s.vocoder import load_vocoder

HOP = TTS_FEATURES.hop_length
UTTERANCE = "joe-lj/dev/wavs/LJ002-0043.ogg"  # 5.0 s


@pytest.fixture(scope="module")
def speech(corpora) -> torch.Tensor:
    """5 s of real speech at 22,050 Hz: ``(T,)``."""
    return load_audio(corpora / UTTERANCE, TTS_FEATURES.sample_rate)


def tiny_hifigan(seed: int = 0) -> HiFiGAN:
    torch.manual_seed(seed)
    return HiFiGAN(HiFiGANConfig(**HIFIGAN_PRESETS["tiny"]))


def tiny_vocos(seed: int = 0) -> Vocos:
    torch.manual_seed(seed)
    return Vocos(VocosConfig(**VOCOS_PRESETS["tiny"]))


def test_griffin_lim_reconstructs_real_speech(speech):
    log_mel = LogMel(TTS_FEATURES)
    mel = log_mel(speech)
    vocoder = GriffinLim(n_iter=32)
    wav = vocoder(mel)
    assert wav.shape == ((len(mel) - 1) * HOP,)
    assert wav.abs().max() <= 1.0
    resynthesized = log_mel(wav)
    assert resynthesized.shape == mel.shape
    l1 = (resynthesized - mel).abs().mean().item()
    mcd = mel_cepstral_distortion(mel, resynthesized)
    print(f"griffin-lim on real speech: mel L1 {l1:.3f}, MCD-like {mcd:.2f} dB")
    assert l1 < 0.3  # measured 0.22; a wrong inverse or phase gives > 1
    assert mcd < 8.0  # measured 6.8
    batched = vocoder(torch.stack([mel, mel]))
    torch.testing.assert_close(batched[1], wav)


@pytest.mark.parametrize("n_fft, win_length, hop", [(1024, 1024, 256), (512, 400, 160), (400, 400, 160)])
def test_griffin_lim_inverse_stft_matches_torch(n_fft, win_length, hop):
    features = FeatureConfig(sample_rate=16000, n_fft=n_fft, win_length=win_length, hop_length=hop)
    vocoder = GriffinLim(features)
    spectrum = torch.randn(2, n_fft // 2 + 1, 50, dtype=torch.complex64)
    expected = torch.istft(spectrum, n_fft, hop, win_length, torch.hann_window(win_length))
    torch.testing.assert_close(vocoder._istft(spectrum, vocoder._envelope(50)), expected)
    with pytest.raises(ValueError, match="overlapping windows"):
        GriffinLim(FeatureConfig(n_fft=400, win_length=400, hop_length=400))._envelope(50)


def test_hifigan_output_length():
    model = tiny_hifigan()
    mel = torch.randn(20, 80) - 5
    assert model.generate(mel).shape == (20 * HOP,)
    assert model.generate(mel.expand(3, -1, -1)).shape == (3, 20 * HOP)


def test_vocos_output_length_and_config():
    model = tiny_vocos()
    mel = torch.randn(20, 80) - 5
    assert model.generate(mel).shape == (19 * HOP,)  # frame i centred on sample i * hop, as LogMel's
    assert model.generate(mel.expand(3, -1, -1)).shape == (3, 19 * HOP)
    assert isinstance(build_model("vocos", VOCOS_PRESETS["tiny"]), Vocos)
    with pytest.raises(ConfigError, match="kernel_size"):
        VocosConfig(kernel_size=8)


def test_hifigan_config_is_checked():
    with pytest.raises(ConfigError, match="upsample_rates"):
        HiFiGANConfig(upsample_rates=[8, 8, 2])
    with pytest.raises(ConfigError, match="n_mels"):
        HiFiGANConfig(n_mels=64)
    assert isinstance(build_model("hifigan", HIFIGAN_PRESETS["tiny"]), HiFiGAN)


def test_hifigan_single_loss_separates_generator_and_discriminator_gradients(speech):
    model = tiny_hifigan()
    wavs = torch.stack([speech[22050:30242], speech[44100:52292]])
    out = model({"wavs": wavs, "mels": model.log_mel(wavs)[:, :32]})
    generator = list(model.generator.parameters())
    discriminator = list(model.discriminator.parameters())

    def grads(loss, params):
        return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)

    # The discriminator loss reaches the discriminator only, the generator losses the generator only.
    assert all(g is None for g in grads(out["loss_d"], generator))
    for part in ("adversarial", "feature_matching", "mel_l1", "loss_g"):
        assert all(g is None for g in grads(out[part], discriminator)), part
    assert all(g is not None and g.abs().sum() > 0 for g in grads(out["loss_d"], discriminator))
    for part in ("adversarial", "feature_matching"):
        assert all(g is not None for g in grads(out[part], generator)), part
    # Hence one backward of the sum gives each network exactly its own loss's gradient.
    total_g = grads(out["loss"], generator)
    total_d = grads(out["loss"], discriminator)
    for total, own in zip(total_g, grads(out["loss_g"], generator)):
        torch.testing.assert_close(total, own)
    for total, own in zip(total_d, grads(out["loss_d"], discriminator)):
        torch.testing.assert_close(total, own)


@pytest.mark.parametrize("make", [tiny_hifigan, tiny_vocos])
def test_training_steps_reduce_mel_loss(speech, make):
    model = make()
    wav = speech[22050:22050 + 32 * HOP][None]
    batch = {"wavs": wav, "mels": model.log_mel(wav)[:, :32]}
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-4, betas=(0.8, 0.99))
    history = []
    for _ in range(12):
        out = model(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        history.append(out["mel_l1"].item())
    print(f"{type(model).__name__} tiny mel L1:", [round(x, 2) for x in history])
    assert all(torch.isfinite(v) for v in out.values())
    assert history[-1] < 0.6 * history[0]  # measured 4.2 -> 1.8 (HiFi-GAN), 3.9 -> 1.8 (Vocos)
    model.eval()  # validation compares the mel L1 alone, not the GAN's balance of losses
    with torch.no_grad():
        evaluated = model(batch)
    assert set(evaluated) == {"loss", "mel_l1"} and evaluated["loss"] == evaluated["mel_l1"]


def test_hifigan_validation_extras(speech):
    model = tiny_hifigan()
    wav = speech[22050:22050 + 32 * HOP][None]
    scalars, figures = model.validation_extras({"wavs": wav, "mels": model.log_mel(wav)[:, :32]})
    assert scalars["mel_l1_generated"] > 0
    assert len(figures["mels"].axes) >= 2


def test_load_vocoder_round_trip(tmp_path):
    assert isinstance(load_vocoder("griffin-lim"), GriffinLim)
    model = tiny_hifigan()
    config = {"task": "vocoder", "model": {"name": "hifigan", **HIFIGAN_PRESETS["tiny"]},
              "features": TTS_FEATURES.to_dict()}
    save_checkpoint(tmp_path / "vocoder", model, config)
    mel = torch.randn(12, 80) - 5
    expected = model.eval().generate(mel)

    vocoder = load_vocoder(tmp_path / "vocoder", "cpu")
    assert isinstance(vocoder, HiFiGAN) and not hasattr(vocoder, "discriminator")
    assert not any("parametrizations" in name for name, _ in vocoder.named_parameters())  # weight norm folded
    torch.testing.assert_close(vocoder.generate(mel), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ConfigError, match="features"):
        load_vocoder(tmp_path / "vocoder", "cpu", features=FeatureConfig(sample_rate=16000))


def test_gan_vocoder_trains_with_an_optimizer_per_network(corpora, tmp_path):
    """Generator and discriminator get their own optimizer, schedule and clipping (optim.groups); validation
    (hence best/ and keep-best) compares the mel L1 alone."""
    from speechs2s.checkpoint import load_train_state, read_config
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.data.manifest import write_manifest
    from speechs2s.train.config import load_config
    from speechs2s.train.trainer import train

    entries = import_ljspeech(corpora / "joe-lj" / "dev")
    write_manifest(tmp_path / "train.jsonl", entries[:4])
    write_manifest(tmp_path / "valid.jsonl", entries[4:6])
    options = ", ".join(f"{key}: {value}" for key, value in VOCOS_PRESETS["tiny"].items())
    (tmp_path / "vocos.yaml").write_text(f"""
model: {{name: vocos, options: {{{options}}}}}
data: {{train: {tmp_path}/train.jsonl, valid: {tmp_path}/valid.jsonl, max_frames: 64, num_workers: 0, feature_stats: false}}
optim: {{lr: 2.0e-4, betas: [0.8, 0.99], warmup_steps: 1, schedule: constant,
        groups: {{discriminator: {{lr: 1.0e-4, grad_clip: 50.0}}}}}}
trainer: {{max_steps: 3, valid_every: 3, ckpt_every: 3, log_every: 1, average_last: 1, out_dir: {tmp_path}/exp}}
""")
    with pytest.raises(ConfigError, match=r"optim.groups.discriminator.lrr: unknown key \(did you mean"):
        load_config(tmp_path / "vocos.yaml", ["optim.groups.discriminator.lrr=1.0"])
    with pytest.raises(ConfigError, match="optim.groups: critic is not a parameter group of this model"):
        train(load_config(tmp_path / "vocos.yaml", ["optim.groups.critic.lr=1.0", f"trainer.out_dir={tmp_path}/bad"]))

    final = train(load_config(tmp_path / "vocos.yaml"))
    state = load_train_state(tmp_path / "exp" / "checkpoints" / "step-000003")
    assert set(state["optimizer"]) == {"generator", "discriminator"}
    lrs = {name: optimizer["param_groups"][0]["lr"] for name, optimizer in state["optimizer"].items()}
    assert lrs == {"generator": pytest.approx(2e-4), "discriminator": pytest.approx(1e-4)}
    assert read_config(final)["model"]["name"] == "vocos"
    assert isinstance(load_vocoder(final, "cpu"), Vocos)
    best = (tmp_path / "exp" / "best" / "metrics.json").read_text()
    assert '"loss"' in best and '"mel_l1"' in best and "loss_d" not in best
