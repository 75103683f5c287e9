"""TransformerASR and LSTMASR: shapes, the decoding protocol, and overfitting real speech."""
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from speechs2s.audio import ASR_FEATURES, LogMel, load_audio
from speechs2s.decode.asr import ctc_greedy, greedy_attention
from speechs2s.errors import ConfigError
from speechs2s.models import build_model
from speechs2s.models.asr_lstm import LSTMASR, LSTMASRConfig
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.text.tokenizers import CharTokenizer

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
TOKENIZER = CharTokenizer()
# At least 0.35 s each: CTC after ×4 subsampling (40 ms frames) needs 6 frames for "three".
UTTERANCES = [(0, "george", 5), (1, "jackson", 5), (2, "jackson", 6), (3, "nicolas", 5),
              (4, "george", 5), (5, "yweweler", 5), (6, "theo", 5), (7, "nicolas", 6)]
MODELS = {"transformer": (TransformerASR, TransformerASRConfig, 1e-3, 100),
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
