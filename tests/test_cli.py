"""The command line as a whole: usage errors, ``speechs2s models``, and the default thread count."""
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from speechs2s.audio import ASR_FEATURES
from speechs2s.checkpoint import list_models, save_checkpoint
from speechs2s.cli import main
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.text.tokenizers import CharTokenizer
from speechs2s.utils import free_cores, set_threads


def cli(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A training out_dir (``exp/tiny``: step checkpoint + ``last``) and a loose checkpoint (``exp/loose``)."""
    tokenizer = CharTokenizer()
    config = TransformerASRConfig.preset("tiny", vocab_size=tokenizer.vocab_size, sos_id=tokenizer.sos_id,
                                         d_model=16, d_ff=32, encoder_layers=1, decoder_layers=1)
    checkpoint_config = {"task": "asr", "model": {"name": "transformer_asr", **dataclasses.asdict(config)},
                         "features": ASR_FEATURES.to_dict()}
    exp = tmp_path_factory.mktemp("models") / "exp"
    model = TransformerASR(config)
    save_checkpoint(exp / "tiny" / "checkpoints" / "step-000002", model, checkpoint_config, tokenizer)
    (exp / "tiny" / "last").write_text("checkpoints/step-000002\n")
    save_checkpoint(exp / "loose", model, checkpoint_config, tokenizer)
    return exp, sum(p.numel() for p in model.state_dict().values())


@pytest.mark.parametrize("args,message", [
    (["transcribe", "x.wav", "--beam", "0"], "Invalid value for '--beam': 0 is not in the range x>=1."),
    (["transcribe"], "Missing argument 'INPUTS...'."),
    (["transcribe", "x.wav", "--bogus"], "No such option '--bogus'"),
    (["speak", "hi", "--file", "x.txt", "-o", "x.wav"], "give the text as an argument"),
    (["nosuch"], "No such command 'nosuch'."),
    (["models", "/no/such/folder"], "'/no/such/folder' does not exist"),
])
def test_usage_errors_are_one_line(args, message):
    result = cli(*args)
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and result.stdout == ""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
    assert lines[0].endswith("--help')")


def test_usage_error_in_a_real_process():
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-m", "speechs2s", "transcribe", "x.wav", "--beam", "0"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")


def test_models_lists_bundled_and_local_checkpoints(run_folder, monkeypatch):
    exp, parameters = run_folder
    models = {model.name: model for model in list_models([exp])}
    assert list(models)[:3] == ["asr-default", "tts-default", "tts-transformer"]
    bundled = models["asr-default"]
    assert (bundled.task, bundled.architecture) == ("asr", "transformer_asr") and 4e6 < bundled.parameters < 6e6
    assert bundled.summary.startswith("small Transformer") and bundled.size_bytes > 1e6
    assert models["tts-default"].architecture == "fastspeech2"
    local = models[str(exp / "tiny")]  # the run folder once, not each of its step checkpoints
    assert (local.task, local.parameters, local.summary) == ("asr", parameters, "")
    assert str(exp / "loose") in models and len(models) == 5

    monkeypatch.chdir(exp.parent)  # default folder: ./exp
    result = cli("models")
    lines = result.stdout.splitlines()
    assert result.exit_code == 0 and lines[0].split() == ["NAME", "TASK", "MODEL", "PARAMS", "SIZE", "SUMMARY"]
    assert lines[1].split()[:5] == ["asr-default", "asr", "transformer_asr", "4.7", "M"]
    assert [line.split()[0] for line in lines[1:]] == ["asr-default", "tts-default", "tts-transformer",
                                                      "exp/loose", "exp/tiny"]


def test_unreadable_checkpoint_is_listed_with_its_reason(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{oops")
    (broken / "model.safetensors").write_bytes(b"")
    (info,) = [model for model in list_models([tmp_path]) if model.name == str(broken)]
    assert info.task == "?" and info.summary.startswith("unreadable: ") and "config.json" in info.summary


def test_unknown_model_lists_the_available_ones(run_folder, monkeypatch, tmp_path):
    exp, _ = run_folder
    monkeypatch.chdir(exp.parent)
    result = cli("transcribe", tmp_path / "x.wav", "--model", "asr-nope")
    (line,) = result.stderr.splitlines()
    assert result.exit_code == 1
    assert line == ("error: asr-nope: no such checkpoint directory or bundled model "
                    "(available: asr-default, exp/loose, exp/tiny; see speechs2s models)")
    (line,) = cli("speak", "hi", "-o", tmp_path / "x.wav", "--model", "tts-nope").stderr.splitlines()
    assert "(available: tts-default, tts-transformer; see speechs2s models)" in line


def test_threads_default_leaves_busy_cores_alone():
    cores = len(os.sched_getaffinity(0))
    if cores < 2:
        pytest.skip("one core: nothing to cap")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert free_cores(sample_seconds=0.3) <= cores - 1
    finally:
        busy.kill()
        busy.wait()


def test_set_threads():
    try:
        assert set_threads(3) == 3 and torch.get_num_threads() == 3
        assert set_threads() <= 3  # the default never raises torch's own count
    finally:
        torch.set_num_threads(1)
