"""Token language model (LSTMLM), its training task (``task: lm``) and shallow fusion in beam search."""
import json

import pytest
import torch

from speechs2s.checkpoint import load_checkpoint
from speechs2s.data.datasets import TextDataset, read_sentences
from speechs2s.decode.asr import DecodeConfig, beam_search, decode
from speechs2s.models.lm import LSTMLM, LSTMLMConfig
from speechs2s.text.tokenizers import build_tokenizer
from speechs2s.train.config import load_config
from speechs2s.train.trainer import train
from test_decode_asr import EOS, _batch, tiny_model

SENTENCES = ["the cat sat on the mat", "a dog ran in the park", "we saw the sea at dawn"]


def tiny_lm(vocab_size: int = 6, sos_id: int = EOS, seed: int = 0) -> LSTMLM:
    torch.manual_seed(seed)
    return LSTMLM(LSTMLMConfig(vocab_size=vocab_size, sos_id=sos_id, embedding_dim=16, hidden_dim=32, layers=2,
                               dropout=0.0))


def fit(lm: LSTMLM, sequences: list[list[int]], steps: int = 150) -> LSTMLM:
    """Overfit ``lm`` on token sequences (full batch, Adam)."""
    tokens = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in sequences], batch_first=True)
    batch = {"tokens": tokens, "token_lengths": torch.tensor([len(s) for s in sequences])}
    optimizer = torch.optim.Adam(lm.parameters(), lr=3e-2)
    lm.train()
    for _ in range(steps):
        optimizer.zero_grad()
        lm(batch)["loss"].backward()
        optimizer.step()
    return lm.eval()


def test_lm_learns_its_sentences():
    lm = tiny_lm()
    before = lm.sentence_log_probs([[1, 2, 3, 4]])[0]
    fit(lm, [[1, 2, 3, 4], [4, 3, 2, 1]])
    seen, unseen = lm.sentence_log_probs([[1, 2, 3, 4], [1, 3, 2, 4]])
    assert seen > before
    assert seen > -0.8 and unseen < -3  # log 0.5 for the first token (two sentences), then near-certain


def test_decode_step_matches_teacher_forcing():
    lm = tiny_lm(seed=3)
    tokens = [1, 4, 2, 2, 3]
    expected = lm.sentence_log_probs([tokens])[0]
    state, prev, total = lm.init_state(1, "cpu"), torch.tensor([EOS]), 0.0
    with torch.no_grad():
        for token in tokens + [EOS]:
            log_probs, state = lm.decode_step(prev, state)
            total += float(log_probs[0, token])
            prev = torch.tensor([token])
    assert total == pytest.approx(expected, abs=1e-4)
    # reordering picks and repeats rows
    state = lm.init_state(2, "cpu")
    _, state = lm.decode_step(torch.tensor([1, 2]), state)
    picked = lm.reorder_state(state, torch.tensor([1, 1, 0]))
    assert torch.equal(picked["h"][0], state["h"][1]) and picked["h"].shape == (3, 2, 32)


def test_fusion_weight_zero_changes_nothing_and_a_strong_lm_takes_over():
    model = tiny_model("transformer", ctc_weight=0.3)
    features, lengths = _batch()
    plain = decode(model, features, lengths, DecodeConfig(beam_size=4), EOS)
    lm = fit(tiny_lm(), [[3, 1, 4, 1]])
    assert decode(model, features, lengths, DecodeConfig(beam_size=4, lm_weight=0.0), EOS, lm=lm) == plain
    fused = decode(model, features, lengths, DecodeConfig(beam_size=4, ctc_weight=0.0, lm_weight=20.0), EOS, lm=lm)
    assert fused == [[3, 1, 4, 1]] * 3


@torch.no_grad()
def test_length_bonus_lengthens_hypotheses():
    model = tiny_model("transformer", ctc_weight=0.3)
    features, lengths = _batch()
    enc, enc_lengths = model.encode(features, lengths)
    lm = tiny_lm(seed=1)
    lengths_with = [len(h[0].tokens) for h in beam_search(model, enc, enc_lengths, DecodeConfig(
        beam_size=4, lm_weight=0.5, length_bonus=5.0), EOS, lm=lm)]
    lengths_without = [len(h[0].tokens) for h in beam_search(model, enc, enc_lengths, DecodeConfig(
        beam_size=4, lm_weight=0.5, length_bonus=-5.0), EOS, lm=lm)]
    assert sum(lengths_with) > sum(lengths_without)


def test_text_dataset_reads_text_files_and_manifests(tmp_path):
    tokenizer = build_tokenizer("char", [])
    text = tmp_path / "lm.txt"
    text.write_text("hello world\n\n  second line  \n!!!\n")
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav", "duration": 1.0, "text": "from a manifest"}) + "\n")
    assert read_sentences(text) == ["hello world", "second line", "!!!"]
    assert read_sentences(manifest) == ["from a manifest"]
    dataset = TextDataset(text, tokenizer)
    assert len(dataset) == 2 and dataset.skipped == 1  # "!!!" has no tokens
    assert dataset.lengths == [len("hello world") + 1, len("second line") + 1]
    assert tokenizer.decode(dataset[0]["tokens"].tolist()) == "hello world"


def test_train_task_lm_end_to_end(tmp_path):
    """``task: lm`` trains from text files with a given tokenizer and saves a loadable checkpoint."""
    tokenizer = build_tokenizer("char", [])
    tokenizer.save(tmp_path / "tokenizer.json")
    (tmp_path / "train.txt").write_text("\n".join(SENTENCES * 4) + "\n")
    (tmp_path / "valid.txt").write_text(SENTENCES[0] + "\n")
    config_path = tmp_path / "lm.yaml"
    config_path.write_text(f"""
task: lm
model: {{name: lstm_lm, options: {{embedding_dim: 16, hidden_dim: 32, layers: 1, dropout: 0.0}}}}
data: {{train: {tmp_path}/train.txt, valid: {tmp_path}/valid.txt, tokenizer: {{path: {tmp_path}/tokenizer.json}},
        max_frames: 400, num_workers: 0, feature_stats: false}}
optim: {{lr: 1.0e-2, warmup_steps: 5}}
trainer: {{max_steps: 60, valid_every: 30, ckpt_every: 30, log_every: 30, average_last: 1, out_dir: {tmp_path}/exp}}
""")
    final = train(load_config(config_path))
    lm, lm_tokenizer, config = load_checkpoint(final)
    assert config["task"] == "lm" and isinstance(lm, LSTMLM)
    assert lm_tokenizer.to_dict() == tokenizer.to_dict()
    seen = lm.sentence_log_probs([tokenizer.encode(SENTENCES[0])])[0]
    scrambled = lm.sentence_log_probs([tokenizer.encode(SENTENCES[0][::-1])])[0]
    assert seen > scrambled + 10


@pytest.fixture(scope="module")
def asr_and_lm(tmp_path_factory):
    """A tiny ASR checkpoint (char tokenizer) and an LM checkpoint with the same tokenizer."""
    from speechs2s.audio import ASR_FEATURES
    from speechs2s.checkpoint import save_checkpoint
    from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig

    root = tmp_path_factory.mktemp("fusion")
    tokenizer = build_tokenizer("char", [])
    torch.manual_seed(0)
    config = TransformerASRConfig.preset("tiny", vocab_size=tokenizer.vocab_size, sos_id=tokenizer.sos_id,
                                         d_model=32, d_ff=64, encoder_layers=2, decoder_layers=1)
    save_checkpoint(root / "asr", TransformerASR(config), {"task": "asr", "features": ASR_FEATURES.to_dict(),
                    "model": {"name": "transformer_asr", **config.__dict__}}, tokenizer)
    lm = tiny_lm(tokenizer.vocab_size, tokenizer.sos_id)
    lm_config = {"task": "lm", "model": {"name": "lstm_lm", **lm.config.__dict__}}
    save_checkpoint(root / "lm", lm, lm_config, tokenizer)
    save_checkpoint(root / "lm_other", lm, lm_config, build_tokenizer("char", [], normalizer="tts"))
    return root


def test_load_asr_with_lm_uses_stored_weights_and_refuses_another_tokenizer(asr_and_lm, corpora, tmp_path):
    import speechs2s
    from speechs2s.errors import CheckpointError
    from speechs2s.fusion import FusionWeights, read_fusion, tune_fusion

    root = asr_and_lm
    with pytest.raises(CheckpointError, match="another tokenizer"):
        speechs2s.load_asr(root / "asr", device="cpu", lm=root / "lm_other")
    asr = speechs2s.load_asr(root / "asr", device="cpu", lm=root / "lm")
    assert asr.lm is not None and (asr.decode.lm_weight, asr.decode.length_bonus) == (0.3, 0.5)  # untuned: defaults
    clip = corpora / "fsdd" / "recordings" / "3_theo_3.wav"
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": str(clip), "duration": 0.4, "text": "three"}) + "\n")
    report = tune_fusion(asr, root / "lm", manifest, [0.5, 1.0], [0.0, 1.0], DecodeConfig(beam_size=2, max_len_ratio=0.3))
    assert len(report["runs"]) == 5  # weight 0 once, then 2 x 2
    assert report["best"] == min(report["runs"], key=lambda run: (run["wer"], run["lm_weight"], run["length_bonus"]))
    assert read_fusion(root / "lm") == FusionWeights(report["best"]["lm_weight"], report["best"]["length_bonus"])
    reloaded = speechs2s.load_asr(root / "asr", device="cpu", lm=root / "lm")
    assert reloaded.decode.lm_weight == report["best"]["lm_weight"]


def test_cli_tune_lm_then_transcribe_with_lm(asr_and_lm, corpora, tmp_path):
    from click.testing import CliRunner

    from speechs2s.cli import main

    root = asr_and_lm
    clip = str(corpora / "fsdd" / "recordings" / "7_george_7.wav")
    manifest = tmp_path / "dev.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": clip, "duration": 0.4, "text": "seven"}) + "\n")
    common = ["--model", str(root / "asr"), "--beam", "2", "--threads", "1", "--device", "cpu"]
    result = CliRunner().invoke(main, ["tune-lm", "--manifest", str(manifest), *common])
    assert result.exit_code == 1 and result.stderr.strip() == "error: tune-lm: --lm DIR is required"
    result = CliRunner().invoke(main, ["tune-lm", "--manifest", str(manifest), *common, "--lm", str(root / "lm"),
                                       "--weights", "0.5", "--bonuses", "0,1"])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 4 and (root / "lm" / "fusion.json").exists()  # 3 runs + best
    assert json.loads((root / "lm" / "fusion.json").read_text())["asr"] == str(root / "asr")
    with_lm = CliRunner().invoke(main, ["transcribe", clip, *common, "--lm", str(root / "lm"), "--lm-weight", "0"])
    without = CliRunner().invoke(main, ["transcribe", clip, *common])
    assert with_lm.exit_code == 0 and with_lm.stdout == without.stdout  # weight 0 = no fusion


def test_a_checkpoint_with_its_own_lm_uses_it_unless_told_not_to(asr_and_lm, corpora, tmp_path):
    import dataclasses
    import shutil

    from click.testing import CliRunner

    import speechs2s
    from speechs2s.asr import OWN_LM_DIR
    from speechs2s.cli import main

    root = asr_and_lm
    model = tmp_path / "asr"
    shutil.copytree(root / "asr", model)
    assert speechs2s.load_asr(model, device="cpu").lm is None  # no lm/ folder: no LM
    shutil.copytree(root / "lm", model / OWN_LM_DIR)
    (model / OWN_LM_DIR / "fusion.json").write_text(json.dumps({"best": {"lm_weight": 2.0, "length_bonus": 1.0}}))
    own = speechs2s.load_asr(model, device="cpu")
    assert own.lm is not None and (own.decode.lm_weight, own.decode.length_bonus) == (2.0, 1.0)
    assert speechs2s.load_asr(model, device="cpu", lm=None).lm is None
    clip = str(corpora / "fsdd" / "recordings" / "7_george_7.wav")
    common = ["--model", str(model), "--beam", "2", "--threads", "1", "--device", "cpu"]
    fused, plain = (CliRunner().invoke(main, ["transcribe", clip, *common, *extra]) for extra in ([], ["--lm", "none"]))
    unfused = CliRunner().invoke(main, ["transcribe", clip, *common, "--lm-weight", "0"])
    assert fused.exit_code == plain.exit_code == 0 and plain.stdout == unfused.stdout
    cli_search = dataclasses.replace(own.decode, mode="beam", beam_size=2, ctc_weight=0.3)
    assert fused.stdout == own.transcribe(clip, cli_search).text + "\n"
