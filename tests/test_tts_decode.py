"""TTS inference: the guards hold for UNTRAINED models (synthesis always terminates, never stops
before the last token, length bounded by the text), sentence splitting, the TTS API and CLI."""
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner
from test_tts_models import tiny_tacotron, tiny_transformer

from speechs2s.audio import TTS_FEATURES
from speechs2s.decode.tts import SynthesisConfig, split_sentences, synthesize_batch, synthesize_sequences
from speechs2s.errors import TextError
from speechs2s.models.vocoder import GriffinLim
from speechs2s.text.tokenizers import CharTokenizer
from speechs2s.tts import TTS, load_tts

TOKENIZER = CharTokenizer("tts")
GUARD = SynthesisConfig()
MODELS = {"tacotron2": tiny_tacotron, "transformer_tts": tiny_transformer}


def max_frames(n_tokens: int, config: SynthesisConfig = GUARD) -> int:
    return int(config.max_frames_per_token * n_tokens + config.extra_frames)


@pytest.fixture(params=list(MODELS))
def untrained(request):
    torch.manual_seed(0)
    return request.param, MODELS[request.param](TOKENIZER.vocab_size).eval()


def test_split_sentences():
    assert split_sentences("Hi there.  How are you?\nFine; thanks!\n\nBye") == \
        ["Hi there.", "How are you?", "Fine;", "thanks!", "Bye"]
    assert split_sentences("   \n ") == []
    # a period after an abbreviation that a word follows, a single letter, or before a lowercase word ends nothing
    assert split_sentences("Then Mr. Smith met J. R. Jones of the U.S. Army at 5 p.m. on Friday. No. 5 won. Wait... "
                           "what? Bye.") == ["Then Mr. Smith met J. R. Jones of the U.S. Army at 5 p.m. on Friday.",
                                             "No. 5 won.", "Wait... what?", "Bye."]
    long = "word, " * 100 + "x" * 450
    pieces = split_sentences(long, max_chars=200)
    assert all(len(p) <= 200 for p in pieces)
    assert " ".join(pieces).replace(" ", "") == long.replace(" ", "")  # nothing lost
    assert pieces[0].endswith(",")  # cut after a comma when there is one


def test_split_sentences_is_linear_on_two_megabytes():
    text = ("The quick brown fox jumps over the lazy dog, again and again. " * 33000)[:2_000_000]
    start = time.perf_counter()
    pieces = split_sentences(text)
    assert time.perf_counter() - start < 5
    assert len(pieces) == 32259 and max(map(len, pieces)) <= 200


@pytest.mark.parametrize("stop_bias", [100.0, -100.0])
def test_guards_on_untrained_models(untrained, stop_bias):
    """Stop token always on: the loop still runs until the alignment reaches the last token.
    Always off: the stall detector / length guard still end every item, within the bound."""
    _, model = untrained
    r = model.reduction_factor
    model.stop_proj.bias.data.fill_(stop_bias)
    lengths = torch.tensor([40, 13, 1])
    tokens = torch.randint(3, TOKENIZER.vocab_size, (3, 40))
    result = synthesize_batch(model, tokens, lengths)
    assert result.mels.shape[0] == 3 and result.mels.shape[2] == 80 and torch.isfinite(result.mels).all()
    for n, frames in zip(lengths.tolist(), result.lengths.tolist()):
        assert 1 <= frames <= max_frames(n)
        if stop_bias > 0 and n > 1:  # position moves at most max_advance tokens per step
            assert frames > (math.ceil((n - 1) / GUARD.max_advance) - 1) * r
    assert result.alignments.shape[:2] == (3, math.ceil(int(result.lengths.max()) / r))


def test_batched_synthesis_keeps_order_and_shapes(untrained, monkeypatch):
    _, model = untrained
    sentences = ["hello.", "a", "this is a longer sentence, with a comma.", "ok?", "b c d e f g."]
    token_lists = [TOKENIZER.encode(s) for s in sentences]
    batches = []
    monkeypatch.setattr("speechs2s.decode.tts.synthesize_batch",
                        lambda model, tokens, *args: batches.append(len(tokens)) or synthesize_batch(model, tokens, *args))
    outputs = synthesize_sequences(model, token_lists, batch_size=2)
    first = next(outputs)
    assert batches == [1]  # the first sentence comes out alone, without waiting for a batch
    outputs = [first, *outputs]
    assert batches == [1, 2, 2] and len(outputs) == len(sentences)
    for ids, (mel, alignment) in zip(token_lists, outputs):
        assert mel.shape[1] == 80 and 1 <= mel.shape[0] <= max_frames(len(ids))
        assert alignment.shape == (math.ceil(mel.shape[0] / model.reduction_factor), len(ids))


@pytest.fixture
def tts(untrained):
    _, model = untrained
    return TTS(model, TOKENIZER, TTS_FEATURES, GriffinLim(TTS_FEATURES, n_iter=2))


@pytest.mark.parametrize("text", ["", "   \n\t", "?!... ;", "🙂🙂🎉", "日本語"])
def test_nothing_to_speak_raises_text_error(tts, text):
    with pytest.raises(TextError, match="nothing to speak"):
        tts.synthesize(text)


@pytest.mark.parametrize("text", ["a", "hello 🙂 world!", "the " * 40, ("The quick brown fox jumps over the lazy dog, again. " * 40)[:2000], "x" * 300])
def test_adversarial_text_terminates_with_bounded_length(tts, text):
    wav, sample_rate = tts.synthesize(text)
    assert sample_rate == 22050 and wav.dtype == np.float32 and wav.ndim == 1 and np.isfinite(wav).all()
    sentences = tts.sentences(text)
    bound = sum(max_frames(len(TOKENIZER.encode(s))) * TTS_FEATURES.hop_length for s in sentences)
    assert 0 < len(wav) <= bound + (len(sentences) - 1) * round(0.25 * sample_rate)


def test_synthesize_with_alignment_stacks_sentences(tts):
    wav, _, alignment = tts.synthesize_with_alignment("One two. Three!")
    tokens = sum(len(TOKENIZER.encode(s)) for s in ["One two.", "Three!"])
    assert alignment.shape[1] == tokens and len(wav) > 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from speechs2s.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = tiny_transformer(TOKENIZER.vocab_size)
    config = {"task": "tts", "features": TTS_FEATURES.to_dict(),
              "model": {"name": "transformer_tts", **dataclasses.asdict(model.config)}}
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tts", model, config, TOKENIZER)


def test_load_tts_from_checkpoint(checkpoint):
    tts = load_tts(checkpoint, device="cpu")
    wav, sample_rate = tts.synthesize("Hello there.")
    assert sample_rate == 22050 and len(wav) > 0


def test_a_checkpoint_brings_its_own_vocoder(checkpoint, tmp_path):
    """``vocoder="auto"`` (the default of load_tts and ``speak``) takes the checkpoint's ``vocoder/`` folder when it
    has one and Griffin-Lim otherwise; an explicit choice wins."""
    import shutil

    from speechs2s.checkpoint import save_checkpoint
    from speechs2s.cli import main
    from speechs2s.models.vocoder import VOCOS_PRESETS, Vocos, VocosConfig
    from speechs2s.tts import OWN_VOCODER_DIR

    assert isinstance(load_tts(checkpoint, device="cpu").vocoder, GriffinLim)
    with_vocoder = Path(shutil.copytree(checkpoint, tmp_path / "tts"))
    torch.manual_seed(0)
    config = {"task": "vocoder", "model": {"name": "vocos", **VOCOS_PRESETS["tiny"]}, "features": TTS_FEATURES.to_dict()}
    save_checkpoint(with_vocoder / OWN_VOCODER_DIR, Vocos(VocosConfig(**VOCOS_PRESETS["tiny"])), config)
    assert isinstance(load_tts(with_vocoder, device="cpu").vocoder, Vocos)
    assert isinstance(load_tts(with_vocoder, device="cpu", vocoder="griffin-lim").vocoder, GriffinLim)

    out = tmp_path / "own.wav"
    runner = CliRunner()
    for vocoder in [[], ["--vocoder", "griffin-lim"]]:
        result = runner.invoke(main, ["speak", "Hello there.", "-o", str(out), "--model", str(with_vocoder),
                                      "--device", "cpu", *vocoder])
        assert result.exit_code == 0 and sf.info(str(out)).frames > 0, result.output


def test_cli_speak(checkpoint, tmp_path):
    from speechs2s.cli import main

    runner = CliRunner()
    out, plot = tmp_path / "out.wav", tmp_path / "alignment.png"
    result = runner.invoke(main, ["speak", "Hello there. How are you?", "-o", str(out), "--model", str(checkpoint),
                                  "--plot-alignment", str(plot), "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.frames > 0 and plot.stat().st_size > 1000

    text = "First line from standard input.\nSecond sentence; third one!\n"
    result = runner.invoke(main, ["speak", "-", "-o", str(out), "--model", str(checkpoint)], input=text)
    assert result.exit_code == 0, result.output

    (tmp_path / "text.txt").write_text("From a file.", encoding="utf-8")
    result = runner.invoke(main, ["speak", "--file", str(tmp_path / "text.txt"), "-o", str(out), "--model", str(checkpoint)])
    assert result.exit_code == 0, result.output

    result = runner.invoke(main, ["speak", "  ...  ", "-o", str(tmp_path / "empty.wav"), "--model", str(checkpoint)])
    assert result.exit_code == 1 and "error: nothing to speak" in result.output
    assert not (tmp_path / "empty.wav").exists()
