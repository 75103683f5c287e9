"""Minimum word error rate training: the risk, its gradient, the N-best sampler and a training run."""
import math

import pytest
import torch
from test_asr_models import CONFIGS, MODELS, TOKENIZER, digits, tiny_model  # noqa: F401 (fixture)
from test_cli import cli

from speechs2s.data.corpora import import_fsdd
from speechs2s.data.manifest import write_manifest
from speechs2s.decode.asr import DecodeConfig, beam_search, sample_attention
from speechs2s.losses import mwer_risk
from speechs2s.train.config import from_dict
from speechs2s.train.trainer import train


def test_risk_is_zero_when_every_hypothesis_has_as_many_errors():
    log_probs = torch.randn(3, 4, requires_grad=True)
    risk = mwer_risk(log_probs, torch.full((3, 4), 2), torch.tensor([5, 3, 0]))
    risk.backward()
    assert risk.item() == 0 and torch.count_nonzero(log_probs.grad) == 0


def test_risk_is_the_expected_relative_errors_under_the_renormalised_n_best():
    log_probs = torch.tensor([[math.log(0.75), math.log(0.25)]]) - 7.0  # renormalised: the offset cancels
    risk = mwer_risk(log_probs, torch.tensor([[0, 2]]), torch.tensor([4]))
    torch.testing.assert_close(risk, torch.tensor(0.75 * (0 - 1) / 4 + 0.25 * (2 - 1) / 4))


@pytest.mark.parametrize("kind", MODELS)
def test_one_step_moves_probability_toward_the_better_hypothesis(kind, digits):
    """Reference "zero": an SGD step on the risk of {"zero", "two"} (0 and 1 word errors) raises
    log p("zero") - log p("two") for the first utterance."""
    torch.manual_seed(0)
    model = tiny_model(kind, dropout=0.0)
    features, lengths = digits["features"][:1], digits["feature_lengths"][:1]
    hyps = torch.nn.utils.rnn.pad_sequence([torch.tensor(TOKENIZER.encode(word)) for word in ("zero", "two")], True)
    hyp_lengths = torch.tensor([4, 3])

    def margin_and_risk():
        enc, enc_lengths = model.encode(features, lengths)
        log_probs = model.sequence_log_probs(hyps, hyp_lengths, enc.expand(2, -1, -1), enc_lengths.expand(2))
        return log_probs[0] - log_probs[1], mwer_risk(log_probs[None], torch.tensor([[0, 1]]), torch.tensor([1]))

    before, risk = margin_and_risk()
    risk.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    after, _ = margin_and_risk()
    assert after > before + 0.01, (before, after)


def test_sampler_gives_the_greedy_hypothesis_first_then_samples_within_the_limits(digits):
    torch.manual_seed(0)
    model = tiny_model("transformer").eval()
    enc, enc_lengths = model.encode(digits["features"][:2], digits["feature_lengths"][:2])
    limits = torch.tensor([3, 7])
    hyps, lengths = sample_attention(model, enc, enc_lengths, limits, TOKENIZER.eos_id, 5)
    assert hyps.shape[0] == 10 and all(lengths[:5] <= 3)
    assert all(lengths[5:] <= 7) and not (hyps == TOKENIZER.eos_id).any()
    assert all((row[n:] == 0).all() and (row[:n] != 0).all() for row, n in zip(hyps, lengths))
    greedy, greedy_lengths = sample_attention(model, enc, enc_lengths, limits, TOKENIZER.eos_id, 1)
    torch.testing.assert_close(lengths[::5], greedy_lengths)
    assert hyps[::5, :greedy.shape[1]].equal(greedy)
    assert len({tuple(row[:n].tolist()) for row, n in zip(hyps[5:], lengths[5:])}) > 1  # samples differ


def test_beam_n_best_is_beam_search_s_hypotheses_in_eval_mode_and_keeps_training_mode(digits):
    torch.manual_seed(0)
    model = tiny_model("transformer", mwer_nbest="beam", mwer_hypotheses=3)
    with torch.no_grad():
        enc, enc_lengths = model.encode(digits["features"][:2], digits["feature_lengths"][:2])
    limits = torch.tensor([4, 9])
    hyps, lengths = model.nbest(enc, enc_lengths, limits)
    assert model.training and hyps.shape[0] == 6 and all(lengths[:3] <= 4) and all(lengths[3:] <= 9)
    model.eval()
    search = DecodeConfig(beam_size=3, max_len_ratio=float((limits / enc_lengths).max()))
    with torch.no_grad():
        expected = beam_search(model, enc, enc_lengths, search, TOKENIZER.eos_id)
    for b, found in enumerate(expected):
        found = (found + found[-1:] * 3)[:3]
        for i, hyp in enumerate(found):
            row, n = hyps[b * 3 + i], int(lengths[b * 3 + i])
            assert row[:n].tolist() == hyp.tokens[:int(limits[b])] and not row[n:].any()


@pytest.mark.parametrize("nbest", ["sample", "beam"])
@pytest.mark.parametrize("kind", MODELS)
def test_mwer_adds_its_term_to_the_training_loss_only(kind, nbest, digits):
    torch.manual_seed(0)
    model = tiny_model(kind, mwer_weight=0.5, mwer_hypotheses=3, mwer_nbest=nbest)
    model.set_tokenizer(TOKENIZER)
    out = model(digits)
    assert {"mwer", "nbest_wer"} <= set(out) and 0 <= out["nbest_wer"] and torch.isfinite(out["mwer"])
    w = model.config.ctc_weight
    torch.testing.assert_close(out["loss"], w * out["ctc"] + (1 - w) * out["att"] + 0.5 * out["mwer"])
    out["loss"].backward()
    assert model.output.weight.grad.abs().sum() > 0
    assert "mwer" not in model.eval()(digits)  # validation keeps the CE/CTC loss


def test_training_with_mwer_runs_and_logs_the_term(tmp_path, corpora, capfd):
    entries = sorted(import_fsdd(corpora / "fsdd"), key=lambda e: e["id"])
    write_manifest(tmp_path / "train.jsonl", entries[:8])
    write_manifest(tmp_path / "valid.jsonl", entries[8:10])
    options = {"d_model": 32, "n_heads": 2, "encoder_layers": 1, "decoder_layers": 1, "d_ff": 64,
               "subsampling_channels": 4, "mwer_weight": 0.5, "mwer_hypotheses": 3}
    final = train(from_dict({
        "model": {"name": "transformer_asr", "options": options},
        "data": {"train": str(tmp_path / "train.jsonl"), "valid": str(tmp_path / "valid.jsonl"), "max_frames": 800,
                 "num_workers": 0, "tokenizer": {"kind": "char"}, "features": {"sample_rate": 8000, "n_fft": 200,
                 "win_length": 200, "hop_length": 80, "n_mels": 20}},
        "optim": {"lr": 1e-3, "warmup_steps": 1},
        "trainer": {"max_steps": 4, "valid_every": 4, "ckpt_every": 4, "log_every": 2, "average_last": 1,
                    "out_dir": str(tmp_path / "run"), "device": "cpu"}}))
    logged = capfd.readouterr().err
    assert (final / "model.safetensors").is_file()
    assert "step 2: " in logged and " mwer " in logged and " nbest_wer " in logged, logged


@pytest.mark.parametrize("option,message", [
    ("mwer_weight=-1", "mwer_weight must be >= 0, got -1.0"),
    ("mwer_hypotheses=1", "mwer_hypotheses must be at least 2"),
    ("mwer_nbest=greedy", "mwer_nbest must be sample or beam, got 'greedy'"),
    ("mwer_weight=0.5 --set model.options.ctc_weight=1", "mwer_weight needs the attention decoder"),
])
def test_bad_mwer_options_are_one_error_line(option, message):
    result = cli("train", CONFIGS / "asr_transformer_tiny.yaml", *f"--set model.options.{option}".split())
    assert result.exit_code == 1 and result.stdout == "", result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: model.options: ")
    assert message in result.stderr
