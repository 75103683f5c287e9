"""TransformerASR, ConformerASR and LSTMASR: shapes, the decoding protocol, and overfitting real speech."""
from pathlib import Path

import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from speechs2s.asr import load_asr
from speechs2s.audio import ASR_FEATURES, LogMel, load_audio
from speechs2s.checkpoint import load_checkpoint, read_weights
from speechs2s.data.corpora import import_fsdd
from speechs2s.data.manifest import write_manifest
from speechs2s.decode.asr import DecodeConfig, ctc_greedy, greedy_attention
from speechs2s.errors import ConfigError
from speechs2s.models import build_model
from speechs2s.models.asr_conformer import ConformerASR, ConformerASRConfig
from speechs2s.models.asr_lstm import LSTMASR, LSTMASRConfig
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.nn.attention import MultiHeadAttention, rotary_embedding
from speechs2s.text.tokenizers import CharTokenizer
from speechs2s.train.config import from_dict, load_config
from speechs2s.train.trainer import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TOKENIZER = CharTokenizer()
# At least 0.35 s each: CTC after ×4 subsampling (40 ms frames) needs 6 frames for "three".
UTTERANCES = [(0, "george", 5), (1, "jackson", 5), (2, "jackson", 6), (3, "nicolas", 5),
              (4, "george", 5), (5, "yweweler", 5), (6, "theo", 5), (7, "nicolas", 6)]
MODELS = {"transformer": (TransformerASR, TransformerASRConfig, 1e-3, 100),
          "conformer": (ConformerASR, ConformerASRConfig, 1e-3, 100),
          "lstm": (LSTMASR, LSTMASRConfig, 5e-3, 100)}


def tiny_model(kind: str, **overrides):
    model_cls, config_cls, _, _ = MODELS[kind]
    return model_cls(config_cls.preset("tiny", vocab_size=TOKENIZER.vocab_size, sos_id=TOKENIZER.sos_id, **overrides))


@pytest.fixture(scope="module")
def digits(corpora):
    """Eight real FSDD utterances (8 kHz -> 16 kHz, 80 log-mels) of the words zero..seven as a padded batch."""
    logmel = LogMel(ASR_FEATURES)
    paths = [corpora / "fsdd" / "recordings" / f"{digit}_{speaker}_{index}.wav" for digit, speaker, index in UTTERANCES]
    features = [logmel(load_audio(path, ASR_FEATURES.sample_rate)) for path in paths]
    tokens = [torch.tensor(TOKENIZER.encode(WORDS[digit])) for digit, _, _ in UTTERANCES]
    return {"features": pad_sequence(features, batch_first=True),
            "feature_lengths": torch.tensor([len(f) for f in features]),
            "tokens": pad_sequence(tokens, batch_first=True),
            "token_lengths": torch.tensor([len(t) for t in tokens])}


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_presets_sizes_and_registry():
    count = lambda model: sum(p.numel() for p in model.parameters())
    assert 1e6 < count(tiny_model("transformer")) < 3e6
    assert 1e6 < count(tiny_model("lstm")) < 3e6
    base = TransformerASR(TransformerASRConfig(vocab_size=5000))
    assert 25e6 < count(base) < 35e6  # ESPnet LibriSpeech-100 Transformer: ~30M
    assert (base.config.d_model, base.config.encoder_layers, base.config.decoder_layers) == (256, 12, 6)
    model = build_model("lstm_asr", {"vocab_size": 10, "encoder_hidden": 16, "decoder_hidden": 16})
    assert isinstance(model, LSTMASR) and model.sos_id == model.eos_id == 2
    with pytest.raises(ConfigError, match="d_modle"):
        build_model("transformer_asr", {"vocab_size": 10, "d_modle": 8})
    with pytest.raises(ConfigError, match="sos_id"):
        build_model("lstm_asr", {"vocab_size": 10, "sos_id": 10})
    with pytest.raises(ConfigError, match="ctc_weight"):
        build_model("transformer_asr", {"vocab_size": 10, "ctc_weight": 1.5})
    with pytest.raises(ConfigError, match="n_mels=4 is too small"):
        build_model("transformer_asr", {"vocab_size": 10, "n_mels": 4})


@pytest.mark.parametrize("kind", MODELS)
def test_batched_encoding_matches_single_utterances(kind, digits):
    model = tiny_model(kind).eval()
    enc, enc_lengths = model.encode(digits["features"], digits["feature_lengths"])
    assert enc.shape[:2] == (8, int(enc_lengths.max())) and enc.size(1) <= digits["features"].size(1) // 4
    for i in (1, 2):  # shorter than the longest: padding must not leak in
        length = digits["feature_lengths"][i]
        alone, alone_length = model.encode(digits["features"][i:i + 1, :length], length[None])
        assert alone_length.item() == enc_lengths[i].item()
        torch.testing.assert_close(enc[i, :alone_length.item()], alone[0], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("kind", MODELS)
def test_decode_step_matches_teacher_forcing_and_reorders(kind, digits):
    torch.manual_seed(0)
    model = tiny_model(kind).eval()
    enc, enc_lengths = model.encode(digits["features"][:3], digits["feature_lengths"][:3])
    prefix = torch.tensor([[model.sos_id, 3, 5, 7]] * 3)
    full = model.decoder_log_probs(prefix, enc, enc_lengths)
    assert full.shape == (3, 4, TOKENIZER.vocab_size)
    state = model.reorder_state(model.init_decoder_state(enc, enc_lengths), torch.arange(3).repeat_interleave(2))
    for i in range(prefix.size(1)):
        log_probs, state = model.decode_step(prefix[:, i].repeat_interleave(2), state)
        torch.testing.assert_close(log_probs[0::2], full[:, i], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(log_probs[1::2], full[:, i], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(6))


@pytest.mark.parametrize("kind", MODELS)
def test_loss_parts_and_scheduled_sampling(kind, digits):
    torch.manual_seed(0)
    model = tiny_model(kind, scheduled_sampling=0.5)
    out = model(digits)
    assert set(out) == {"loss", "ctc", "att", "acc"}
    w = model.config.ctc_weight
    torch.testing.assert_close(out["loss"], w * out["ctc"] + (1 - w) * out["att"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    attention_only = tiny_model(kind, ctc_weight=0.0)
    assert attention_only.ctc_head is None and set(attention_only(digits)) == {"loss", "att", "acc"}
    ctc_only = tiny_model(kind, ctc_weight=1.0)
    assert set(ctc_only(digits)) == {"loss", "ctc"}


@pytest.mark.parametrize("kind", MODELS)
def test_tiny_model_overfits_real_digits(kind, digits):
    """A few hundred optimizer steps on 8 real utterances: loss ~0, greedy attention and CTC decoding exact."""
    torch.manual_seed(0)
    _, _, lr, steps = MODELS[kind]
    model = tiny_model(kind, dropout=0.0, label_smoothing=0.0)
    all_frames = torch.cat([f[:n] for f, n in zip(digits["features"], digits["feature_lengths"])])
    model.set_feature_stats(all_frames.mean(0), all_frames.std(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    first_loss = None
    for _ in range(steps):
        out = model(digits)
        optimizer.zero_grad()
        out["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        first_loss = first_loss or out["loss"].item()
    assert out["loss"].item() < 0.05 < first_loss
    assert out["acc"].item() == 1.0

    model.eval()
    with torch.no_grad():
        enc, enc_lengths = model.encode(digits["features"], digits["feature_lengths"])
        expected = [WORDS[digit] for digit, _, _ in UTTERANCES]
        attention_hyps = greedy_attention(model, enc, enc_lengths, model.eos_id)
        ctc_hyps = ctc_greedy(model.ctc_log_probs(enc), enc_lengths)
        assert [TOKENIZER.decode(hyp) for hyp in attention_hyps] == expected
        assert [TOKENIZER.decode(hyp) for hyp in ctc_hyps] == expected
        assert model.validation_extras(digits) == ({"ctc_ter": 0.0}, {})


# -- Conformer ----------------------------------------------------------------------------------


def test_rotary_attention_depends_on_distance_only():
    """Rotary positions: shifting every position by the same offset leaves the attention weights unchanged."""
    torch.manual_seed(0)
    attention = MultiHeadAttention(16, 2).eval()
    x = torch.randn(1, 5, 16)
    cos, sin = rotary_embedding(12, 8)
    _, at_zero = attention(x, x, x, need_weights=True, rotary=(cos[:5], sin[:5]))
    _, shifted = attention(x, x, x, need_weights=True, rotary=(cos[7:], sin[7:]))
    _, plain = attention(x, x, x, need_weights=True)
    torch.testing.assert_close(at_zero, shifted, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(at_zero, plain, atol=1e-3)


@pytest.mark.parametrize("name, size", [("asr_conformer_tiny", (2.5e6, 3e6)), ("asr_conformer_small", (6.5e6, 7.5e6)),
                                        ("asr_conformer_base", (30e6, 36e6))])
def test_conformer_configs_build(name, size):
    config = load_config(CONFIGS / f"{name}.yaml", check_files=False)
    vocab_size = 5000 if name.endswith("base") else TOKENIZER.vocab_size
    model = build_model(config.model.name, {"vocab_size": vocab_size, **config.model.options})
    assert isinstance(model, ConformerASR) and size[0] < count(model) < size[1]


def test_conformer_presets_and_config_checks():
    assert 1e6 < count(tiny_model("conformer")) < 4e6
    assert 5e6 < count(ConformerASR(ConformerASRConfig.preset("small", vocab_size=256))) < 8e6  # <= 32 MB float32
    base = build_model("conformer_asr", {"vocab_size": 5000})
    assert isinstance(base, ConformerASR) and 30e6 < count(base) < 36e6  # ESPnet LibriSpeech-100 Conformer
    config = base.config
    assert (config.d_model, config.n_heads, config.encoder_layers, config.d_ff, config.conv_kernel) == (256, 4, 12, 1024, 31)
    assert (config.decoder_layers, config.decoder_d_ff) == (6, 2048)
    for options, message in [({"conv_kernel": 30}, "odd"), ({"d_model": 12, "n_heads": 4}, "even"),
                             ({"conv_norm": "group"}, "conv_norm"), ({"interctc_layers": [4]}, "blocks 1..3"),
                             ({"interctc_layers": [2]}, "go together"), ({"subsampling_factor": 5}, "4, 6, 8"),
                             ({"interctc_layers": [2], "interctc_weight": 0.5, "ctc_weight": 0.0}, "CTC head")]:
        with pytest.raises(ConfigError, match=message):
            build_model("conformer_asr", {"vocab_size": 10, "encoder_layers": 4, **options})


@pytest.mark.parametrize("factor", [6, 8])
def test_subsampling_6_and_8_lengths_and_padding(factor, digits):
    """×6 (3x3 stride 2, 5x5 stride 3) and ×8 (three 3x3 stride 2) front-ends: output lengths follow the
    convolutions, and a padded utterance encodes as it does alone."""
    model = tiny_model("conformer", subsampling_factor=factor).eval()
    features, lengths = digits["features"], digits["feature_lengths"]
    expected = (lengths - 1) // 2
    expected = (expected - 5) // 3 + 1 if factor == 6 else ((expected - 1) // 2 - 1) // 2
    with torch.no_grad():
        enc, enc_lengths = model.encode(features, lengths)
        assert enc_lengths.tolist() == expected.tolist() and enc.shape[:2] == (8, int(expected.max()))
        n = int(lengths[1])  # shorter than the longest: padding must not leak in
        alone, alone_length = model.encode(features[1:2, :n], lengths[1:2])
        assert alone_length.item() == enc_lengths[1].item()
        torch.testing.assert_close(enc[1, :alone_length.item()], alone[0], atol=1e-5, rtol=1e-4)
        receptive_field = model.subsampling.receptive_field
        assert receptive_field == {6: 11, 8: 15}[factor]
        for n in (1, receptive_field - 1, receptive_field):  # a clip under the receptive field gives one frame
            out, out_lengths = model.encode(features[1:3, :n], torch.tensor([n, 1]))
            assert out.shape[:2] == (2, 1) and out_lengths.tolist() == [1, 1] and torch.isfinite(out).all()


def test_conformer_intermediate_ctc_loss(digits):
    torch.manual_seed(0)
    model = tiny_model("conformer", interctc_layers=[1, 2], interctc_weight=0.4)
    out = model(digits)
    assert set(out) == {"loss", "ctc", "interctc", "att", "acc"}
    ctc = 0.6 * out["ctc"] + 0.4 * out["interctc"]
    torch.testing.assert_close(out["loss"], 0.3 * ctc + 0.7 * out["att"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())
    with torch.no_grad():  # the CTC head scores the outputs of blocks 1 and 2 as well (same loss as training)
        model.eval()
        enc, enc_lengths, intermediate = model.encode_layers(digits["features"], digits["feature_lengths"])
        assert len(intermediate) == 2 and all(h.shape == enc.shape for h in intermediate)
        torch.testing.assert_close(model.encode(digits["features"], digits["feature_lengths"])[0], enc)


def test_conformer_trains_resumes_exactly_and_transcribes(tmp_path, corpora):
    """The trainer runs a Conformer with intermediate CTC on real speech: a resumed run equals an
    uninterrupted one bit for bit (batch-norm statistics included), and the checkpoint decodes."""
    entries = sorted(import_fsdd(corpora / "fsdd"), key=lambda e: e["id"])
    write_manifest(tmp_path / "train.jsonl", entries[:16])
    write_manifest(tmp_path / "valid.jsonl", entries[16:20])

    def run(out_dir: str, max_steps: int, resume: bool = False):
        options = {"d_model": 32, "n_heads": 2, "encoder_layers": 2, "decoder_layers": 1, "d_ff": 64, "decoder_d_ff": 64,
                   "conv_kernel": 5, "subsampling_channels": 4, "interctc_layers": [1], "interctc_weight": 0.3}
        return train(from_dict({
            "task": "asr", "model": {"name": "conformer_asr", "options": options},
            "data": {"train": str(tmp_path / "train.jsonl"), "valid": str(tmp_path / "valid.jsonl"), "max_frames": 800,
                     "num_workers": 0, "spec_augment": {}, "speed_perturb": [0.9, 1.0, 1.1],
                     "features": {"sample_rate": 8000, "n_fft": 200, "win_length": 200, "hop_length": 80, "n_mels": 20}},
            "optim": {"lr": 3e-3, "warmup_steps": 2},
            "trainer": {"max_steps": max_steps, "valid_every": 3, "ckpt_every": 3, "log_every": 3, "average_last": 1,
                        "out_dir": str(tmp_path / out_dir), "device": "cpu"}}), resume=resume)

    run("split", 3)
    final = run("split", 6, resume=True)
    run("full", 6)
    resumed, full = (read_weights(tmp_path / f"{run}/checkpoints/step-000006") for run in ("split", "full"))
    assert resumed.keys() == full.keys() and any("running_mean" in name for name in full)
    assert all(torch.equal(resumed[name], full[name]) for name in full)
    model, _, saved = load_checkpoint(final)
    assert isinstance(model, ConformerASR) and saved["model"]["interctc_layers"] == [1]
    transcripts = load_asr(final, device="cpu").transcribe([entries[0]["audio"], entries[1]["audio"]],
                                                           decode=DecodeConfig(beam_size=3))
    assert len(transcripts) == 2 and all(isinstance(transcript.text, str) for transcript in transcripts)
