"""FastSpeech 2: the YIN pitch tracker, per-token pitch and energy from real speech (cached), training,
starting from the bundled FastSpeech, ``speak --pitch``, the adversarial mel loss and the flow
sharpener."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from speechs2s.audio import TTS_FEATURES, LogMel, load_audio
from speechs2s.data.collate import collate_tts
from speechs2s.data.datasets import VarianceTTSDataset, token_means
from speechs2s.models.tts_fastspeech2 import FastSpeech2, FastSpeech2Config
from speechs2s.pitch import shift_pitch, track_pitch
from test_tts_fastspeech import even_durations, train_on
from test_tts_models import SHORT_IDS

REPO = Path(__file__).resolve().parents[1]
SR, HOP = TTS_FEATURES.sample_rate, TTS_FEATURES.hop_length


def tiny_fastspeech2(vocab_size: int, **options) -> FastSpeech2:
    return FastSpeech2(FastSpeech2Config(vocab_size=vocab_size, reduction_factor=4, d_model=64, n_heads=2, d_ff=128,
                                         encoder_layers=2, decoder_layers=2, embedding_dim=64, duration_channels=64,
                                         variance_channels=64, postnet_channels=64, postnet_layers=3, dropout=0.0,
                                         **options))


@pytest.mark.parametrize("f0", [75.0, 150.0, 320.0])
def test_yin_finds_the_f0_of_a_tone_and_leaves_silence_and_noise_unvoiced(f0):
    t = torch.arange(SR) / SR
    tone = 0.4 * torch.sin(2 * math.pi * f0 * t) + 0.2 * torch.sin(2 * math.pi * 2 * f0 * t + 1.0)  # a strong octave
    wav = torch.cat([torch.zeros(SR // 2), tone, 0.05 * torch.randn(SR // 2, generator=torch.Generator().manual_seed(0))])
    pitch = track_pitch(wav, SR, HOP)
    assert pitch.shape == (len(wav) // HOP + 1,)
    inside = pitch[(SR // 2) // HOP + 4:(3 * SR // 2) // HOP - 4]
    assert (inside - f0).abs().max() < 0.03 * f0, inside
    assert (pitch[:(SR // 2) // HOP - 4] == 0).all() and (pitch[(3 * SR // 2) // HOP + 4:] == 0).all()


def spectral_centroid(wav: torch.Tensor) -> float:
    power = torch.stft(wav, 1024, 256, window=torch.hann_window(1024), return_complex=True).abs().square().mean(-1)
    return float((power * torch.fft.rfftfreq(1024, 1 / SR)).sum() / power.sum())


@pytest.mark.parametrize("semitones", [4.0, -4.0])
def test_shift_pitch_moves_f0_and_keeps_length_loudness_and_formants(semitones):
    """A 130 Hz buzz through one resonance (a vowel's formant at 900 Hz): TD-PSOLA moves its F0 by the asked
    ratio and keeps the resonance, where resampling (the ASR augmentation's pitch_shift) moves it too."""
    import torchaudio

    from speechs2s.data.augment import pitch_shift

    buzz = sum(torch.sin(k * 2 * math.pi * 130 * torch.arange(SR) / SR) for k in range(1, 60)) / 20
    vowel = torchaudio.functional.bandpass_biquad(buzz, SR, 900.0, Q=2.0)
    shifted = shift_pitch(vowel, SR, semitones)
    assert shifted.shape == vowel.shape and shifted.abs().max() <= 1
    before, after = track_pitch(vowel, SR, HOP), track_pitch(shifted, SR, HOP)
    both = (before > 0) & (after > 0)
    assert both.sum() > 0.9 * len(before)
    assert abs(float((after[both] / before[both]).median()) / 2 ** (semitones / 12) - 1) < 0.01
    assert abs(float(shifted.square().mean().sqrt() / vowel.square().mean().sqrt()) - 1) < 0.05
    assert abs(spectral_centroid(shifted) / spectral_centroid(vowel) - 1) < 0.03
    assert abs(spectral_centroid(pitch_shift(vowel, SR, semitones)) / spectral_centroid(vowel) - 1) > 0.15


def test_shift_pitch_leaves_unvoiced_sound_alone_and_follows_real_speech():
    noise = 0.1 * torch.randn(SR, generator=torch.Generator().manual_seed(0))
    assert float(torch.corrcoef(torch.stack([noise, shift_pitch(noise, SR, 4.0)]))[0, 1]) > 0.98
    assert shift_pitch(noise, SR, 0.0) is noise
    wav = load_audio(REPO / "samples" / "theo_three_seven.wav", 8000)  # a real voice, 8 kHz
    before = track_pitch(wav, 8000, 80)
    for semitones in (4.0, -4.0):
        after = track_pitch(shift_pitch(wav, 8000, semitones, hop_length=80), 8000, 80)
        both = (before > 0) & (after > 0)
        assert both.sum() > 20
        assert abs(float((after[both] / before[both]).median()) / 2 ** (semitones / 12) - 1) < 0.04


def test_token_means_average_the_frames_that_have_a_value():
    values = torch.tensor([1.0, 3.0, torch.nan, 5.0, torch.nan, 2.0])
    assert torch.allclose(token_means(values, torch.tensor([2, 0, 2, 1, 1])),
                          torch.tensor([2.0, torch.nan, 5.0, torch.nan, 2.0]), equal_nan=True)


@pytest.fixture(scope="module")
def variance_entries(corpora):
    """The four short joe-lj sentences with durations (each item's frames shared out evenly) in the
    bundled tts-default's phoneme tokenizer."""
    from speechs2s.checkpoint import resolve_checkpoint
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.text.tokenizers import Tokenizer

    tokenizer = Tokenizer.load(resolve_checkpoint("tts-default") / "tokenizer.json")
    entries = [e for e in import_ljspeech(corpora / "joe-lj" / "dev") if e["id"] in SHORT_IDS]
    for entry in entries:
        tokens = len(tokenizer.encode(entry["text"]))
        frames = len(LogMel(TTS_FEATURES)(load_audio(entry["audio"], SR)))
        entry["durations"] = even_durations(torch.tensor([tokens]), torch.tensor([frames]), tokens)[0].tolist()
    return entries, tokenizer


def test_dataset_gives_per_token_pitch_and_energy_from_the_cache(variance_entries, tmp_path):
    entries, tokenizer = variance_entries
    dataset = VarianceTTSDataset(entries, tokenizer, cache_dir=tmp_path)
    item = dataset[0]
    assert item["pitch"].shape == item["energy"].shape == item["tokens"].shape
    voiced = item["pitch"][~item["pitch"].isnan()].exp()
    assert len(voiced) > 0.3 * len(item["pitch"]) and 60 < float(voiced.median()) < 200  # joe speaks low
    assert not item["energy"].isnan().any()
    assert len(list(tmp_path.rglob("*.npy"))) == 2  # the mel and the F0
    again = VarianceTTSDataset(entries, tokenizer, cache_dir=tmp_path)[0]
    assert torch.equal(again["pitch"].nan_to_num(), item["pitch"].nan_to_num())
    batch = collate_tts([dataset[i] for i in range(len(entries))])
    assert batch["pitch"].shape == batch["energy"].shape == batch["tokens"].shape


def test_fastspeech2_learns_durations_pitch_and_energy_of_real_speech(variance_entries):
    entries, tokenizer = variance_entries
    batch = collate_tts([item for item in VarianceTTSDataset(entries, tokenizer)])
    torch.manual_seed(0)
    model = tiny_fastspeech2(tokenizer.vocab_size)
    mels = torch.cat([batch["mels"][i, :n] for i, n in enumerate(batch["mel_lengths"])])
    losses = train_on(model, batch, mels, steps=60)
    assert set(losses[0]) == {"loss", "mel", "duration", "pitch", "energy"}
    for name, share in [("mel", 0.6), ("duration", 0.1), ("pitch", 0.5), ("energy", 0.5)]:
        assert losses[-1][name] < share * losses[0][name], (name, losses[0], losses[-1])
    mask = torch.arange(batch["tokens"].size(1))[None] < batch["token_lengths"][:, None]
    voiced = batch["pitch"][mask & ~batch["pitch"].isnan()]
    assert torch.allclose(model.variance_mean[0], voiced.mean()) and 4.0 < float(model.variance_mean[0]) < 5.5


def test_fastspeech2_starts_from_a_fastspeech_keeping_its_weights(tmp_path):
    from speechs2s.checkpoint import read_config, read_weights, resolve_checkpoint, save_checkpoint
    from speechs2s.models import build_model
    from speechs2s.train.trainer import load_initial_weights

    config = read_config(resolve_checkpoint("tts-default"))  # the bundled FastSpeech 2's sizes
    variance_only = ("variance_channels", "variance_kernel_size", "embedding_kernel_size", "pitch_weight",
                     "energy_weight")
    options = {key: value for key, value in config["model"].items() if key not in ("name", *variance_only)}
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "fastspeech", build_model("fastspeech", options),
                    {"task": "tts", "model": {"name": "fastspeech", **options}, "features": config["features"]})
    model = build_model("fastspeech2", options)
    load_initial_weights(model, str(tmp_path / "fastspeech"), "fastspeech2", partial=True)
    start, state = read_weights(tmp_path / "fastspeech"), model.state_dict()
    assert all(torch.equal(state[key].float(), value.float()) for key, value in start.items())
    fresh = {key.split(".")[0] for key in state if key not in start}
    assert fresh == {"pitch_predictor", "energy_predictor", "pitch_embedding", "energy_embedding",
                     "variance_mean", "variance_std"}


def test_train_then_speak_with_pitch(variance_entries, tmp_path):
    """``speechs2s train configs/tts_fastspeech2.yaml`` (from tts-default) for two steps (the F0 cached beside the
    mels), then ``speak --pitch``, which shifts the waveform of any model (Transformer-TTS too)."""
    from click.testing import CliRunner

    from speechs2s.cli import main
    from speechs2s.data.manifest import write_manifest
    from speechs2s.tts import load_tts

    write_manifest(tmp_path / "d.jsonl", variance_entries[0])
    overrides = {"data.train": tmp_path / "d.jsonl", "data.valid": tmp_path / "d.jsonl", "data.num_workers": 0,
                 "data.feature_cache": tmp_path / "cache", "trainer.out_dir": tmp_path / "exp", "trainer.device": "cpu",
                 "trainer.max_steps": 2, "trainer.valid_every": 2, "trainer.ckpt_every": 2, "trainer.log_every": 1}
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(REPO / "configs" / "tts_fastspeech2.yaml"),
                                  *[arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "init_from" in result.stderr and "start fresh" not in result.stderr  # no tensor of another shape
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2 * len(SHORT_IDS)  # mels and F0

    tts = load_tts(tmp_path / "exp" / "final", "cpu")
    assert not tts.model.variance_mean.isnan().any()
    low, high = (tts.synthesize("Hello there.", pitch=pitch)[0] for pitch in (0, 4))
    assert low.shape == high.shape and not (low == high).all()
    for model in [str(tmp_path / "exp" / "final"), "tts-transformer"]:
        result = runner.invoke(main, ["speak", "Hello there.", "-o", str(tmp_path / "x.wav"), "--model", model,
                                      "--pitch", "4", "--device", "cpu"])
        assert result.exit_code == 0, result.output


def tiny_model_and_batch(variance_entries, **options):
    """A tiny FastSpeech 2 with ``options`` (seed 0, feature stats from the batch), the four sentences' batch and
    the tokenizer."""
    entries, tokenizer = variance_entries
    batch = collate_tts([item for item in VarianceTTSDataset(entries, tokenizer)])
    torch.manual_seed(0)
    model = tiny_fastspeech2(tokenizer.vocab_size, **options)
    mels = torch.cat([batch["mels"][i, :n] for i, n in enumerate(batch["mel_lengths"])])
    model.set_feature_stats(mels.mean(0), mels.std(0))
    return model, batch, tokenizer


def test_adversarial_loss_gives_each_network_only_its_own_gradients(variance_entries):
    """One backward of ``loss``: the discriminator's gradient is that of ``loss_d`` alone, the generator's
    gets nothing from ``loss_d``; validation leaves the GAN losses out; off (the default) there is no
    discriminator and the state dict is the bundled tts-default's."""
    from speechs2s.checkpoint import read_config, read_weights, resolve_checkpoint
    from speechs2s.models import build_model

    model, batch, _ = tiny_model_and_batch(variance_entries, adversarial_weight=0.1, discriminator_frames=32)
    groups = model.parameter_groups()
    generator, discriminator = groups["generator"], groups["discriminator"]
    assert len(generator) + len(discriminator) == len(list(model.parameters()))
    assert {id(p) for p in discriminator} == {id(p) for p in model.discriminator.parameters()}

    out = model(batch)
    assert set(out) == {"loss", "mel", "duration", "pitch", "energy", "loss_d", "adversarial", "feature_matching"}

    def grads(loss, params):
        return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)

    assert all(g is None for g in grads(out["loss_d"], generator))
    assert all(g is not None and g.abs().sum() > 0 for g in grads(out["loss_d"], discriminator))
    for part in ("adversarial", "feature_matching"):
        assert all(g is None for g in grads(out[part], discriminator)), part
        assert sum(float(g.abs().sum()) for g in grads(out[part], generator) if g is not None) > 0, part
    for total, own in zip(grads(out["loss"], discriminator), grads(out["loss_d"], discriminator)):
        assert torch.allclose(total, own)
    model.eval()
    assert set(model(batch)) == {"loss", "mel", "duration", "pitch", "energy"}

    options = read_config(resolve_checkpoint("tts-default"))["model"]
    plain = build_model("fastspeech2", {key: value for key, value in options.items() if key != "name"})
    assert plain.discriminator is None and set(plain.parameter_groups()) == {"all"}
    assert plain.state_dict().keys() == read_weights(resolve_checkpoint("tts-default")).keys()


@pytest.mark.parametrize("config, new_part, kept", [("tts_fastspeech2_adversarial.yaml", "discriminator", False),
                                                    ("tts_fastspeech2_flow.yaml", "flow", True)])
def test_fine_tuning_tts_default_with_a_new_part_then_a_bundle_for_synthesis(variance_entries, tmp_path, config,
                                                                             new_part, kept):
    """``speechs2s train configs/tts_fastspeech2_{adversarial,flow}.yaml`` from the bundled (plain) FastSpeech 2:
    the discriminator or the flow is the one new part and has its own optimizer; the result synthesises, and
    ``speechs2s average --inference`` makes a checkpoint that synthesises the same, without the discriminator
    (used in training only) and with the flow (used in synthesis, unless ``flow_steps`` is 0)."""
    from click.testing import CliRunner

    from speechs2s.checkpoint import load_train_state, read_config, read_weights
    from speechs2s.cli import main
    from speechs2s.data.manifest import write_manifest
    from speechs2s.tts import load_tts

    write_manifest(tmp_path / "d.jsonl", variance_entries[0])
    overrides = {"data.train": tmp_path / "d.jsonl", "data.valid": tmp_path / "d.jsonl", "data.num_workers": 0,
                 "trainer.out_dir": tmp_path / "exp", "trainer.device": "cpu", "trainer.max_steps": 2,
                 "trainer.valid_every": 2, "trainer.ckpt_every": 2, "trainer.log_every": 1}
    runner = CliRunner()
    result = runner.invoke(main, ["train", str(REPO / "configs" / config),
                                  *[arg for key, value in overrides.items() for arg in ("--set", f"{key}={value}")]])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert f"; new: {new_part}\n" in result.stderr and "start fresh" not in result.stderr
    parts = ("loss_d", "feature_matching") if new_part == "discriminator" else ("flow",)
    assert all(f" {part} " in result.stderr for part in parts)
    state = load_train_state(tmp_path / "exp" / "checkpoints" / "step-000002")
    assert set(state["optimizer"]) == {"generator", new_part}

    final = tmp_path / "exp" / "final"
    assert any(key.startswith(f"{new_part}.") for key in read_weights(final))
    result = runner.invoke(main, ["average", "--inference", str(tmp_path / "bundle"), str(final)])
    assert result.exit_code == 0, result.output
    weights = read_weights(tmp_path / "bundle")
    assert any(key.startswith(f"{new_part}.") for key in weights) == kept
    part_size = len(getattr(load_tts(final, "cpu").model, new_part).state_dict())
    assert len(weights) == len(read_weights(final)) - (0 if kept else part_size)
    assert read_config(tmp_path / "bundle")["model"]["adversarial_weight"] == 0.0
    trained, bundled = (load_tts(path, "cpu").synthesize("Hello there.")[0] for path in (final, tmp_path / "bundle"))
    assert len(trained) > 0 and (trained == bundled).all()
    if kept:  # a flow that synthesis skips (flow_steps 0) is left out too
        config = json.loads((final / "config.json").read_text())
        config["model"]["flow_steps"] = 0
        (final / "config.json").write_text(json.dumps(config))
        assert runner.invoke(main, ["average", "--inference", str(tmp_path / "plain"), str(final)]).exit_code == 0
        assert read_config(tmp_path / "plain")["model"]["flow_channels"] == 0
        assert len(read_weights(tmp_path / "plain")) == len(weights) - part_size
        trained, plain = (load_tts(path, "cpu").synthesize("Hello there.")[0] for path in (final, tmp_path / "plain"))
        assert len(plain) > 0 and (trained == plain).all()


def test_mel_flow_learns_a_two_peaked_residual_that_a_regression_would_average_away():
    """Real mels that are ``mu`` plus or minus 1 (a coin per value): the L1/L2 optimum is ``mu`` itself, the
    over-smoothing the flow is for. After training, the flow's samples sit near ``mu +- 1``; its untrained start
    (``mu`` plus noise) does not; with temperature 0 and no training it returns ``mu``."""
    from speechs2s.models.mel_flow import MelFlow

    torch.manual_seed(0)
    flow, mu, lengths = MelFlow(8, channels=32, layers=2), torch.randn(16, 20, 8), torch.full((16,), 20)

    def near_the_peaks(sample):
        return float((((sample - mu).abs() - 1).abs() < 0.3).float().mean())

    assert torch.equal(flow.sample(mu, lengths, 4, 0.0), mu)
    assert near_the_peaks(flow.sample(mu, lengths, 8, 1.0, torch.Generator().manual_seed(1))) < 0.35
    optimizer = torch.optim.Adam(flow.parameters(), 1e-2)
    for _ in range(400):
        loss = flow.loss(mu + torch.where(torch.rand(mu.shape) < 0.5, -1.0, 1.0), mu, lengths)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert near_the_peaks(flow.sample(mu, lengths, 8, 1.0, torch.Generator().manual_seed(1))) > 0.7
    lengths[0] = 5  # padding: zero velocity and zero output
    assert (flow.sample(mu, lengths, 4, 1.0)[0, 5:] == 0).all()


def test_flow_sharpener_trains_on_detached_postnet_output_and_synthesises_the_same_twice(variance_entries):
    """With ``flow_channels`` the loss gains ``flow``, whose gradient reaches the flow alone (its own parameter
    group); synthesis redraws the postnet output with seeded noise (the same text gives the same mels, and
    ``flow_steps`` 0 gives the postnet output itself)."""
    model, batch, tokenizer = tiny_model_and_batch(variance_entries, flow_channels=16, flow_layers=2)
    groups = model.parameter_groups()
    assert set(groups) == {"generator", "flow"}
    assert {id(p) for p in groups["flow"]} == {id(p) for p in model.flow.parameters()}
    out = model(batch)
    assert set(out) == {"loss", "mel", "duration", "pitch", "energy", "flow"} and out["flow"] > 0
    grads = torch.autograd.grad(out["flow"], groups["generator"] + groups["flow"], allow_unused=True)
    assert all(g is None for g in grads[:len(groups["generator"])])
    assert sum(float(g.abs().sum()) for g in grads[len(groups["generator"]):] if g is not None) > 0

    model.eval()
    tokens = torch.tensor([tokenizer.encode("Hello there.")])
    token_lengths = torch.tensor([tokens.size(1)])
    with torch.no_grad():
        model.flow.out.weight.normal_(0, 0.05)  # a flow that moves its start
        first, second = (model.generate(tokens, token_lengths)[0] for _ in range(2))
        assert torch.equal(first, second)
        model.config.flow_steps = 0
        plain = model.generate(tokens, token_lengths)[0]
    assert plain.shape == first.shape and not torch.allclose(plain, first)


def test_aligned_mels_are_in_step_with_the_recordings_and_feed_the_vocoder(variance_entries, tmp_path):
    """``speechs2s aligned-mels``: the bundled FastSpeech 2's mels on each recording's own durations, one ``.npy``
    per entry with the recording's frame count; a vocoder piece pairs the recording's samples with those frames."""
    from click.testing import CliRunner

    from speechs2s.cli import main
    from speechs2s.data.datasets import VocoderDataset
    from speechs2s.data.manifest import read_manifest, write_manifest

    entries, _ = variance_entries
    write_manifest(tmp_path / "d.jsonl", entries)
    runner = CliRunner()
    result = runner.invoke(main, ["aligned-mels", str(tmp_path / "d.jsonl"), str(tmp_path / "out"), "--threads", "1"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    written = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [entry["id"] for entry in written] == [entry["id"] for entry in entries]
    dataset = VocoderDataset(written, segment_frames=16)
    for index, entry in enumerate(written):
        wav, given = load_audio(entry["audio"], SR), torch.from_numpy(np.load(entry["mel"])).float()
        real = LogMel(TTS_FEATURES)(wav)
        assert given.shape == real.shape and given.isfinite().all() and not torch.allclose(given, real, atol=0.1)
        item = dataset[index]
        first = next(f for f in range(len(real)) if torch.equal(wav[f * HOP:(f + 16) * HOP], item["wav"]))
        assert torch.equal(item["mel"], given[first:first + 16])

    result = runner.invoke(main, ["aligned-mels", str(tmp_path / "d.jsonl"), str(tmp_path / "x"), "--model", "tts-transformer"])
    assert result.exit_code == 1 and result.output.startswith("error: tts-transformer: aligned mels come from a FastSpeech")
