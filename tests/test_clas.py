"""The copy mechanism over hotword phrases (CLAS / pointer-generator, speechs2s/models/asr_bias.py):
its match automaton, the mixture, training phrases, decoding with and without phrases, and a tiny
model that learns to copy a name it never saw as a target."""
import dataclasses

import pytest
import torch
from click.testing import CliRunner
from test_asr_api import DIGITS
from test_asr_models import CONFIGS, TOKENIZER, digits  # noqa: F401 (fixture)
from test_cli import cli
from test_hotwords import _contains

from speechs2s.asr import ASR
from speechs2s.audio import ASR_FEATURES
from speechs2s.checkpoint import load_checkpoint, save_checkpoint
from speechs2s.cli import main
from speechs2s.decode.asr import DecodeConfig, decode_encoded
from speechs2s.decode.hotwords import ContextGraph, build_context_graph
from speechs2s.errors import ConfigError
from speechs2s.losses import label_smoothed_cross_entropy
from speechs2s.models.asr_bias import Phrases, PhraseSampler
from speechs2s.models.asr_conformer import ConformerASR, ConformerASRConfig
from speechs2s.models.asr_lstm import LSTMASRConfig
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig


def bias_model(cls=TransformerASR, config_cls=TransformerASRConfig, **overrides):
    torch.manual_seed(0)
    options = {"d_model": 32, "d_ff": 64, "encoder_layers": 1, "decoder_layers": 1, "bias_phrases": True,
               "bias_dim": 16, **overrides}
    return cls(config_cls.preset("tiny", vocab_size=TOKENIZER.vocab_size, sos_id=TOKENIZER.sos_id, **options))


def test_match_length_is_the_longest_suffix_that_is_a_prefix():
    phrases = Phrases([[5, 6, 5, 7], [8], [5, 5]])
    matched, seen = phrases.start(1), []
    for token in [5, 6, 5, 6, 5, 7, 5, 5, 5, 8]:
        matched = phrases.advance(matched, torch.tensor([token]))
        seen.append(matched[0].tolist())
    # "5 6 5" then 6 falls back to "5 6"; after a complete phrase a match starts over ("5 5 5": "5 5" again)
    assert seen == [[1, 0, 1], [2, 0, 0], [3, 0, 1], [2, 0, 0], [3, 0, 1], [4, 0, 0], [1, 0, 1], [1, 0, 2],
                    [1, 0, 2], [0, 1, 0]]
    assert phrases.next_tokens(torch.tensor([[3, 0, 1], [4, 1, 2]])).tolist() == [[7, 8, 5], [-1, -1, -1]]
    batch = torch.tensor([[2, 5, 6, 5, 6], [2, 8, 5, 5, 0]])  # teacher forcing: sos first, padded 0
    steps = phrases.matches(batch)
    assert steps.shape == (2, 5, 3) and steps[0, 1:].tolist() == seen[:4] and steps[1, 3].tolist() == [1, 0, 2]


def test_mixture_is_a_distribution_without_nan_at_either_end_of_the_gate():
    model = bias_model()
    phrases = Phrases([[5, 6], [7]])
    vectors = model.bias.encode(phrases).detach()
    assert vectors.shape == (3, 16)
    hidden = torch.randn(2, 4, 32, requires_grad=True)
    log_probs = torch.randn(2, 4, TOKENIZER.vocab_size).log_softmax(-1)
    next_tokens = phrases.next_tokens(phrases.start(8)).view(2, 4, 2)
    alpha = (model.bias.query(hidden) @ vectors.T / 4).softmax(-1).detach()  # (2, 4, 3): "no bias", [5, 6], [7]
    for gate in (-80.0, 0.0, 80.0):
        with torch.no_grad():
            model.bias.gate.bias.fill_(gate)
        mixed = model.bias(hidden, log_probs, vectors, next_tokens)
        assert mixed.shape == (2, 4, TOKENIZER.vocab_size) and mixed.dtype == torch.float32
        torch.testing.assert_close(mixed.exp().sum(-1), torch.ones(2, 4))
        mixed[..., 5].sum().backward()
        assert torch.isfinite(hidden.grad).all() and torch.isfinite(model.bias.gate.weight.grad).all()
        hidden.grad = None
        if gate < 0:  # g = 0: the decoder's own distribution
            torch.testing.assert_close(mixed, log_probs)
        if gate > 0:  # g = 1: all but the "no bias" share goes to the phrases' next tokens
            assert (mixed[..., [5, 7]].exp().sum(-1) >= 1 - alpha[..., 0] - 1e-5).all()


def test_training_phrases_are_word_ngrams_of_the_batch_and_of_earlier_batches():
    texts = ["the cat sat on the mat", "new york is big", "hello"]
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(TOKENIZER.encode(t)) for t in texts], batch_first=True)
    lengths = torch.tensor([len(TOKENIZER.encode(t)) for t in texts])
    torch.manual_seed(0)
    sampler = PhraseSampler(probability=1.0, distractors=4)
    first = [TOKENIZER.decode(p) for p in sampler(tokens, lengths, TOKENIZER)]
    assert len(first) == 3 and all(phrase in text for phrase, text in zip(first, texts))
    assert all(1 <= len(phrase.split()) <= 3 for phrase in first)
    later = [TOKENIZER.decode(p) for p in PhraseSampler(0.0, 0)(tokens, lengths, TOKENIZER)]
    assert len(later) == 1  # probability 0 still gives one phrase (every parameter needs its gradient)
    again = [TOKENIZER.decode(p) for p in sampler(tokens[:1], lengths[:1], TOKENIZER)]
    assert set(first) <= set(again) and len(again) <= 4  # earlier batches' n-grams are the distractors


@pytest.mark.parametrize("cls,config_cls", [(TransformerASR, TransformerASRConfig), (ConformerASR, ConformerASRConfig)])
def test_training_loss_mixes_copying_and_validation_does_not(cls, config_cls, digits):  # noqa: F811
    model = bias_model(cls, config_cls)
    with pytest.raises(RuntimeError, match="set_tokenizer"):
        model(digits)
    model.set_tokenizer(TOKENIZER)
    out = model(digits)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.bias.embedding.weight.grad.abs().sum() > 0 and model.bias.gate.weight.grad.abs().sum() > 0
    plain = bias_model(cls, config_cls, bias_phrases=False)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("bias.")})
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(digits)["loss"], plain.eval()(digits)["loss"])


def test_no_phrases_decode_exactly_as_the_model_without_the_module(digits):  # noqa: F811
    model = bias_model().eval()
    with torch.no_grad():
        model.bias.gate.bias.fill_(10.0)  # copying wherever there is something to copy
    plain = bias_model(bias_phrases=False).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("bias.")})
    enc, lengths = model.encode(digits["features"][:3], digits["feature_lengths"][:3])
    for config in (DecodeConfig(mode="greedy", max_len_ratio=0.5), DecodeConfig(beam_size=3, max_len_ratio=0.5)):
        expected = decode_encoded(plain, enc, lengths, config, TOKENIZER.eos_id)
        assert decode_encoded(model, enc, lengths, config, TOKENIZER.eos_id) == expected
        assert decode_encoded(model, enc, lengths, config, TOKENIZER.eos_id,
                              context=build_context_graph([], TOKENIZER)) == expected
        copied = decode_encoded(model, enc, lengths, config, TOKENIZER.eos_id,
                                context=build_context_graph(["bux"], TOKENIZER, bonus=0.0))
        assert all("bux" in TOKENIZER.decode(tokens) for tokens in copied), copied


def test_lstm_and_bad_bias_options_are_refused():
    with pytest.raises(ValueError, match="needs a Transformer decoder"):
        LSTMASRConfig.preset("tiny", vocab_size=10, bias_phrases=True)
    for option, message in [("bias_probability=2", "bias_probability must be in [0, 1]"),
                            ("bias_distractors=-1", "bias_distractors must be >= 0"),
                            ("bias_phrases=true --set model.options.ctc_weight=1", "bias_phrases needs the attention")]:
        result = cli("train", CONFIGS / "asr_transformer_tiny.yaml", *f"--set model.options.{option}".split())
        assert result.exit_code == 1 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def test_a_tiny_model_learns_to_copy_a_name_it_never_saw_as_a_target(seed=0):
    """Synthetic speech: words 3..12 each sound their own, the letters 13..20 of names all sound alike.
    Trained with each batch's name as its phrase list, the model copies a held-out name from the list;
    without the list it cannot know the name."""
    torch.manual_seed(seed)
    words, letters, frames = torch.arange(3, 13), torch.arange(13, 21), 8
    sounds = torch.randn(21, 16)
    sounds[letters] = sounds[13].clone()
    held_out = [13, 14, 15]
    config = TransformerASRConfig(vocab_size=21, sos_id=2, n_mels=16, d_model=32, n_heads=2, encoder_layers=1,
                                  decoder_layers=1, d_ff=64, subsampling_channels=8, dropout=0.0, ctc_weight=0.0,
                                  bias_phrases=True, bias_dim=32)
    model = TransformerASR(config)

    def batch(name, size=16):
        around = words[torch.stack([torch.randperm(10)[:3] for _ in range(size)])]  # 3 different words each
        tokens = torch.cat([around[:, :2], torch.tensor(name).expand(size, 3), around[:, 2:]], dim=1)  # w w name w
        features = sounds[tokens].repeat_interleave(frames, dim=1) + 0.1 * torch.randn(size, 6 * frames, 16)
        return tokens, features, torch.full((size,), 6 * frames)

    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for _ in range(300):
        name = letters[torch.randint(8, (3,))].tolist()
        if name == held_out:
            continue
        tokens, features, lengths = batch(name)
        enc, enc_lengths = model.encode(features, lengths)
        inputs, targets = model.teacher_forcing_pairs(tokens, torch.full((16,), 6))
        log_probs = model.decoder_logits(inputs, enc, enc_lengths, phrases=[name])
        loss = label_smoothed_cross_entropy(log_probs, targets, torch.full((16,), 7))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    tokens, features, lengths = batch(held_out, size=8)
    enc, enc_lengths = model.encode(features, lengths)
    greedy = DecodeConfig(mode="greedy")
    copied = decode_encoded(model, enc, enc_lengths, greedy, 2, context=ContextGraph([held_out], 21, bonus=0.0))
    plain = decode_encoded(model, enc, enc_lengths, greedy, 2)
    assert sum(_contains(row, held_out) for row in copied) >= 6, copied  # (a row may still fail on its words)
    assert not any(_contains(row, held_out) for row in plain), plain


@pytest.fixture(scope="module")
def copying_checkpoint(tmp_path_factory):
    """A saved (untrained) bias model whose gate copies wherever a phrase offers a token."""
    model = bias_model().eval()
    with torch.no_grad():
        model.bias.gate.bias.fill_(10.0)
    directory = tmp_path_factory.mktemp("clas") / "tiny"
    options = {"name": "transformer_asr", **dataclasses.asdict(model.config)}
    save_checkpoint(directory, model, {"task": "asr", "model": options, "features": ASR_FEATURES.to_dict()}, TOKENIZER)
    return directory


def test_api_and_cli_feed_hotwords_to_the_copy_mechanism(copying_checkpoint, corpora, tmp_path):
    model, tokenizer, _ = load_checkpoint(copying_checkpoint, "cpu", task="asr")
    assert model.bias is not None and torch.equal(model.bias.gate.bias.detach(), torch.tensor([10.0]))
    asr = ASR(model, tokenizer, ASR_FEATURES, "cpu")
    audio = str(corpora / "fsdd" / "recordings" / f"{DIGITS[0]}.wav")
    greedy = DecodeConfig(mode="greedy", max_len_ratio=0.5)
    assert "bux" in asr.transcribe(audio, greedy, hotwords=["bux"], hotword_bonus=0).text
    assert "bux" not in asr.transcribe(audio, greedy, hotwords=[]).text
    with pytest.raises(ConfigError, match="greedy decoding with hotword_bonus=0"):
        asr.transcribe(audio, greedy, hotwords=["bux"])  # the trie bonus needs beam search
    decode = ["--model", str(copying_checkpoint), "--beam", "2", "--threads", "1", "--device", "cpu"]
    plain = CliRunner().invoke(main, ["transcribe", audio, *decode])
    copied = CliRunner().invoke(main, ["transcribe", audio, *decode, "--hotwords", "bux", "--hotword-bonus", "0"])
    assert plain.exit_code == 0 and copied.exit_code == 0, copied.output
    assert "bux" in copied.stdout and "bux" not in plain.stdout
    assert "(bias_phrases)" in CliRunner().invoke(main, ["transcribe", "--help"]).stdout


def test_a_model_without_the_module_initialises_one_with_it(tmp_path):
    from speechs2s.train.trainer import load_initial_weights

    plain = bias_model(bias_phrases=False)
    with torch.no_grad():
        for parameter in plain.parameters():
            parameter.add_(1.0)
    options = {"name": "transformer_asr", **dataclasses.asdict(plain.config)}
    save_checkpoint(tmp_path, plain, {"task": "asr", "model": options, "features": ASR_FEATURES.to_dict()}, TOKENIZER)
    model = bias_model()
    fresh = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("bias.")}
    with pytest.raises(ConfigError, match="does not fit this model"):
        load_initial_weights(model, str(tmp_path), "transformer_asr")
    load_initial_weights(model, str(tmp_path), "transformer_asr", partial=True)
    for key, value in model.state_dict().items():
        assert torch.equal(value, fresh[key] if key.startswith("bias.") else plain.state_dict()[key]), key


def test_training_with_bias_phrases_resumes_and_saves_the_module(tmp_path, corpora):
    from speechs2s.asr import load_asr
    from speechs2s.data.corpora import import_fsdd
    from speechs2s.data.manifest import write_manifest
    from speechs2s.train.config import from_dict
    from speechs2s.train.trainer import train

    entries = sorted(import_fsdd(corpora / "fsdd"), key=lambda e: e["id"])
    write_manifest(tmp_path / "train.jsonl", entries[:8])
    write_manifest(tmp_path / "valid.jsonl", entries[8:10])
    options = {"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 64,
               "subsampling_channels": 4, "bias_phrases": True, "bias_dim": 16}

    def run(steps, resume=False):
        return train(from_dict({
            "model": {"name": "transformer_asr", "options": options},
            "data": {"train": str(tmp_path / "train.jsonl"), "valid": str(tmp_path / "valid.jsonl"),
                     "max_frames": 800, "num_workers": 0, "tokenizer": {"kind": "char"},
                     "features": {"sample_rate": 8000, "n_fft": 200, "win_length": 200, "hop_length": 80,
                                  "n_mels": 20}},
            "optim": {"lr": 1e-3, "warmup_steps": 1},
            "trainer": {"max_steps": steps, "valid_every": 2, "ckpt_every": 2, "log_every": 2, "average_last": 1,
                        "out_dir": str(tmp_path / "run"), "device": "cpu"}}), resume=resume)

    run(2)
    final = run(4, resume=True)
    asr = load_asr(final, "cpu", lm=None)
    assert asr.model.bias is not None and asr.model.config.bias_phrases
    text = asr.transcribe(entries[0]["audio"], DecodeConfig(beam_size=2), hotwords=["zero"]).text
    assert isinstance(text, str)
