"""FastSpeech: durations by hand, durations read off an attention model, training on real speech,
one-pass synthesis, and the ``speechs2s durations`` -> ``speechs2s train`` path."""
import json

import pytest
import torch

from speechs2s.models.tts_fastspeech import FastSpeech, FastSpeechConfig, regulate_length, step_durations
from test_tts_models import random_batch, short_batch, tiny_transformer  # noqa: F401 (fixture)


def tiny_fastspeech(vocab_size: int, **options) -> FastSpeech:
    return FastSpeech(FastSpeechConfig(vocab_size=vocab_size, reduction_factor=4, d_model=64, n_heads=2, d_ff=128,
                                       encoder_layers=2, decoder_layers=2, embedding_dim=64, duration_channels=64,
                                       postnet_channels=64, postnet_layers=3, dropout=0.0, **options))


def even_durations(token_lengths: torch.Tensor, mel_lengths: torch.Tensor, L: int) -> torch.Tensor:
    """Frames per token ``(B, L)`` that share each item's frames out evenly (the rounding error goes last)."""
    rows = []
    for tokens, frames in zip(token_lengths.tolist(), mel_lengths.tolist()):
        row = [frames // tokens] * tokens
        row[-1] += frames - sum(row)
        rows.append(row + [0] * (L - tokens))
    return torch.tensor(rows)


def train_on(model, batch: dict, mels: torch.Tensor, steps: int, lr: float = 2e-3) -> list[dict[str, float]]:
    """Adam on one batch (feature stats from ``mels (frames, M)``); the loss parts of every step."""
    model.set_feature_stats(mels.mean(0), mels.std(0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        out = model(batch)
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append({name: float(value.detach()) for name, value in out.items()})
    return losses


def test_step_durations_round_token_boundaries_on_the_running_sum():
    # boundaries 5, 8, 16, 16 frames -> ceil(/4) = steps 2, 2, 4, 4
    assert step_durations(torch.tensor([[5, 3, 8, 0]]), 4).tolist() == [[2, 0, 2, 0]]
    assert step_durations(torch.tensor([[4.0, 4.0, 1.0]]), 4).tolist() == [[1, 1, 1]]
    frames = torch.rand(5, 30) * 9
    assert torch.equal(step_durations(frames, 3).sum(-1), torch.ceil(frames.double().sum(-1) / 3 - 1e-6).long())


def test_regulate_length_repeats_tokens_by_hand():
    x = torch.tensor([[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]]])
    out, token = regulate_length(x, torch.tensor([[2, 0, 1], [1, 1, 0]]))
    assert out[..., 0].tolist() == [[1, 1, 3], [4, 5, 0]]  # the shorter item is zero-padded
    assert token.tolist() == [[0, 0, 2], [0, 1, 3]]


def test_attention_model_durations_add_up_to_the_frames():
    torch.manual_seed(0)
    batch = random_batch()
    frames = tiny_transformer(20).eval().token_durations(batch)
    assert frames.shape == batch["tokens"].shape and (frames >= 0).all()
    assert torch.equal(frames.sum(-1), batch["mel_lengths"])
    assert (frames[1, 5:] == 0).all() and (frames[2, 2:] == 0).all()  # padding tokens get no time


def test_forward_backward_and_generate_shapes():
    torch.manual_seed(0)
    batch = random_batch()
    batch["durations"] = even_durations(batch["token_lengths"], batch["mel_lengths"], 9)
    model = tiny_fastspeech(20)
    out = model(batch)
    assert set(out) == {"loss", "mel", "duration"} and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.duration_predictor.out.weight.grad.abs().sum() > 0 and model.embedding.weight.grad.abs().sum() > 0
    model.eval()
    mels, lengths, alignment = model.generate(batch["tokens"], batch["token_lengths"])
    assert mels.shape[0] == 3 and mels.shape[2] == 80 and (lengths > 0).all() and (lengths % 4 == 0).all()
    assert alignment.shape[:2] == (3, mels.shape[1] // 4) and alignment.shape[2] == 9
    slower = model.generate(batch["tokens"], batch["token_lengths"], duration_scale=2.0)[1]
    assert (slower >= lengths).all() and slower.sum() > lengths.sum()


def test_fastspeech_learns_real_speech_and_synthesizes_the_right_length(short_batch):  # noqa: F811
    """On four real sentences: mel and duration losses fall, and one-pass synthesis from the
    predicted durations lasts within 15% of the real recordings, along a diagonal alignment."""
    from speechs2s.decode.tts import synthesize_batch
    from speechs2s.metrics import diagonality

    batch, vocab_size, mels = short_batch
    batch = dict(batch, durations=even_durations(batch["token_lengths"], batch["mel_lengths"], batch["tokens"].size(1)))
    torch.manual_seed(0)
    model = tiny_fastspeech(vocab_size)
    losses = train_on(model, batch, mels, steps=150)
    assert losses[-1]["mel"] < 0.5 * losses[0]["mel"] and losses[-1]["duration"] < 0.1 * losses[0]["duration"]
    scalars, figures = model.eval().validation_extras(batch)
    assert set(figures) == {"alignment", "mel"} and scalars["duration_error_frames"] < 2.0
    result = synthesize_batch(model, batch["tokens"], batch["token_lengths"])
    ratio = result.lengths / batch["mel_lengths"]
    assert ((ratio > 0.85) & (ratio < 1.15)).all(), ratio
    steps = result.lengths // model.reduction_factor
    assert diagonality(result.alignments, steps, batch["token_lengths"]) > 0.9


def test_dataset_checks_durations_against_tokens_and_frames(tmp_path, caplog):
    import numpy as np
    import soundfile as sf

    from speechs2s.audio import TTS_FEATURES
    from speechs2s.data.collate import collate_tts
    from speechs2s.data.datasets import TTSDataset
    from speechs2s.errors import ManifestError
    from speechs2s.text.tokenizers import CharTokenizer

    sf.write(tmp_path / "a.wav", np.zeros(2560, dtype=np.float32), TTS_FEATURES.sample_rate)  # 11 frames
    entry = {"id": "a", "audio": str(tmp_path / "a.wav"), "duration": 2560 / 22050, "text": "ab"}
    tokenizer = CharTokenizer("tts")
    n_tokens = len(tokenizer.encode("ab"))
    good = [5] * (n_tokens - 1) + [11 - 5 * (n_tokens - 1)]
    items = TTSDataset([dict(entry, durations=good), dict(entry, id="b", durations=[1] * n_tokens)], tokenizer)
    assert items[0]["durations"].tolist() == good
    assert items[1] is None and "do not fit" in caplog.text
    assert collate_tts([items[0]])["durations"].tolist() == [good]
    with pytest.raises(ManifestError, match="no durations"):
        collate_tts([items[0], {k: v for k, v in items[0].items() if k != "durations"}])


def test_durations_then_fastspeech_training_from_the_transformer(tmp_path, corpora):
    """``speechs2s durations`` with the bundled Transformer-TTS on real sentences, then ``speechs2s
    train`` of a FastSpeech that starts from its encoder; a manifest without durations is one error line."""
    from click.testing import CliRunner

    from speechs2s.checkpoint import read_weights, resolve_checkpoint
    from speechs2s.cli import main
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.data.manifest import write_manifest
    from test_tts_models import SHORT_IDS

    entries = [e for e in import_ljspeech(corpora / "joe-lj" / "dev") if e["id"] in SHORT_IDS]
    write_manifest(tmp_path / "plain.jsonl", entries)
    runner = CliRunner()
    result = runner.invoke(main, ["durations", str(tmp_path / "plain.jsonl"), str(tmp_path / "d.jsonl"), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "wrote 4 entries" in result.output
    written = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    for entry in written:
        frames = round(entry["duration"] * 22050) // 256 + 1
        assert sum(entry["durations"]) == frames and min(entry["durations"]) >= 0
    teacher = resolve_checkpoint("tts-transformer")
    config = tmp_path / "fs.yaml"
    config.write_text(f"""
task: tts
model:
  name: fastspeech
  options: {{reduction_factor: 4, d_model: 192, n_heads: 2, d_ff: 768, encoder_layers: 3, decoder_layers: 1,
            embedding_dim: 192, postnet_channels: 256, dropout: 0.0}}
data: {{train: {tmp_path}/d.jsonl, valid: {tmp_path}/d.jsonl, tokenizer: {{kind: phoneme}}, max_frames: 1000, num_workers: 0}}
optim: {{lr: 1.0e-3, warmup_steps: 2}}
trainer: {{max_steps: 2, valid_every: 2, ckpt_every: 2, log_every: 1, out_dir: {tmp_path}/exp, device: cpu,
          init_from: tts-transformer}}
""")
    result = runner.invoke(main, ["train", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "init_from" in result.stderr and "encoder" in result.stderr
    start, trained = read_weights(teacher), read_weights(tmp_path / "exp/checkpoints/step-000002")
    assert torch.equal(trained["mean"], start["mean"].float())  # the feature stats came along
    assert not torch.equal(trained["embedding.weight"], start["embedding.weight"].float())  # ... and were trained on
    result = runner.invoke(main, ["train", str(config), "--set", f"data.train={tmp_path}/plain.jsonl",
                                  "--set", f"trainer.out_dir={tmp_path}/exp2"])
    assert result.exit_code == 1 and "have no 'durations'" in result.output and "Traceback" not in result.output
    # another reduction factor than the teacher's: its mel projection would not fit -> one error line, or fresh on request
    r2 = ["--set", "model.options.reduction_factor=2", "--set", f"trainer.out_dir={tmp_path}/exp3"]
    result = runner.invoke(main, ["train", str(config), *r2])
    assert result.exit_code == 1 and "have another shape in this fastspeech model" in result.stderr
    assert "trainer.init_from_partial=true" in result.stderr and not (tmp_path / "exp3" / "last").exists()
    result = runner.invoke(main, ["train", str(config), *r2, "--set", "trainer.init_from_partial=true"])
    assert result.exit_code == 0 and "of another shape start fresh" in result.stderr


def test_durations_errors_are_one_line(tmp_path):
    from click.testing import CliRunner

    from speechs2s.cli import main

    (tmp_path / "m.jsonl").write_text('{"id": "a", "audio": "a.wav", "duration": 1.0, "text": "hi"}\n')
    runner = CliRunner()
    for args, message in [([str(tmp_path / "none.jsonl")], "none.jsonl"),
                          ([str(tmp_path / "m.jsonl")], "audio file(s) not found"),
                          ([str(tmp_path / "m.jsonl"), "--model", "default"], "not FastSpeech"),
                          ([str(tmp_path / "m.jsonl"), "--model", str(tmp_path / "nowhere")], "nowhere")]:
        result = runner.invoke(main, ["durations", *args, str(tmp_path / "out.jsonl"), "--device", "cpu"])
        assert result.exit_code == 1 and result.output.startswith("error: ") and message in result.output, result.output
        assert result.output.count("\n") == 1
