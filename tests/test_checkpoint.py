"""Checkpoints: round trip, pickle-free train state, refusal of pickles, errors on damaged
folders, atomic writes under SIGKILL, name resolution and weight averaging."""
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from speechs2s import models
from speechs2s.checkpoint import (
    average_checkpoints,
    flatten_state,
    load_checkpoint,
    load_train_state,
    read_weights,
    resolve_checkpoint,
    save_checkpoint,
    unflatten_state,
)
from speechs2s.cli import main
from speechs2s.errors import CheckpointError

TESTS = Path(__file__).resolve().parent


@dataclass
class TiedConfig:
    vocab_size: int = 10
    dim: int = 4


class TiedModel(nn.Module):
    """Embedding and output projection share one weight; ``updates`` is an integer buffer."""

    def __init__(self, config: TiedConfig):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.dim)
        self.output = nn.Linear(config.dim, config.vocab_size)
        self.output.weight = self.embedding.weight
        self.register_buffer("updates", torch.tensor(0))

    def forward(self, batch):
        return {"loss": self.output(self.embedding(batch["tokens"])).logsumexp(-1).mean()}


CONFIG = {"task": "asr", "model": {"name": "tied_test", "vocab_size": 10, "dim": 4}, "features": {}}
TIED_SPEC = models.ModelSpec("tied_test", models.ASR, TiedModel, TiedConfig)


@pytest.fixture(autouse=True)
def tied_registered(monkeypatch):
    monkeypatch.setitem(models.MODELS, "tied_test", TIED_SPEC)


def make_model(value: float | None = None, updates: int = 0) -> TiedModel:
    torch.manual_seed(0)
    model = TiedModel(TiedConfig())
    if value is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(value)
    model.updates.fill_(updates)
    return model


def test_round_trip_with_tied_weights_and_tokenizer(tmp_path):
    from speechs2s.text.tokenizers import CharTokenizer

    model = make_model(updates=7)
    metrics = {"metrics.json": {"wer": 0.1}}
    path = save_checkpoint(tmp_path / "ckpt", model, CONFIG, CharTokenizer(), extra_json=metrics)
    files = ["config.json", "metrics.json", "model.safetensors", "tokenizer.json"]
    assert sorted(p.name for p in path.iterdir()) == files
    loaded, tokenizer, config = load_checkpoint(path)
    assert not loaded.training and config["format_version"] == 1 and config["model"]["dim"] == 4
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loaded.output.weight is loaded.embedding.weight  # still tied after loading
    assert tokenizer.decode(tokenizer.encode("hello world")) == "hello world"
    assert not list(tmp_path.glob("*.tmp-*"))


def test_overwrite_replaces_the_whole_folder(tmp_path):
    save_checkpoint(tmp_path / "best", make_model(1.0), CONFIG, extra_json={"old.json": 1})
    save_checkpoint(tmp_path / "best", make_model(2.0), CONFIG)
    assert not (tmp_path / "best/old.json").exists()
    assert torch.all(read_weights(tmp_path / "best")["embedding.weight"] == 2.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_train_state_is_pickle_free_and_exact(tmp_path):
    model = make_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model({"tokens": torch.tensor([[1, 2, 3]])})["loss"].backward()
    optimizer.step()
    state = {"optimizer": optimizer.state_dict(), "rng": {"python": (3, (1, 2), None), "torch": torch.get_rng_state()},
             "step": 5, "best": float("inf"), "scores": {"step-000005": 1.5}}
    skeleton, tensors = flatten_state(state)
    json.dumps(skeleton)  # the rest really is JSON
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    save_checkpoint(tmp_path / "ckpt", model, CONFIG, train_state=state)
    restored = load_train_state(tmp_path / "ckpt")
    assert restored["rng"]["python"] == (3, (1, 2), None) and restored["step"] == 5
    assert restored["best"] == float("inf") and restored["scores"] == {"step-000005": 1.5}
    assert torch.equal(restored["rng"]["torch"], state["rng"]["torch"])
    assert restored["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    assert unflatten_state(skeleton, tensors)["optimizer"]["state"].keys() == state["optimizer"]["state"].keys()

    twin = make_model()
    twin.load_state_dict(model.state_dict())
    twin_optimizer = torch.optim.AdamW(twin.parameters(), lr=0.1)
    twin_optimizer.load_state_dict(restored["optimizer"])
    for m, opt in ((model, optimizer), (twin, twin_optimizer)):
        opt.zero_grad()
        m({"tokens": torch.tensor([[4, 5]])})["loss"].backward()
        opt.step()
    for a, b in zip(model.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)


class Malicious:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["model.pt", "pytorch_model.bin", "weights.pkl", "model.pth"])
def test_pickles_are_refused(tmp_path, name):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"weight": Malicious(str(marker))}, folder / name)
    (folder / "config.json").write_text(json.dumps({"format_version": 1, **CONFIG}))
    with pytest.raises(CheckpointError, match=f"refusing to load pickle file {name}"):
        load_checkpoint(folder)
    assert not marker.exists()
    # next to a real model.safetensors, a stray pickle is simply never opened
    save_checkpoint(folder, make_model(), CONFIG)
    torch.save({"weight": Malicious(str(marker))}, folder / name)
    load_checkpoint(folder)
    assert not marker.exists()


def test_damaged_checkpoints_raise_checkpoint_error(tmp_path):
    good = save_checkpoint(tmp_path / "good", make_model(), CONFIG)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "missing")

    def damaged(name: str, change) -> Path:
        folder = tmp_path / name
        save_checkpoint(folder, make_model(), CONFIG)
        change(folder)
        return folder

    cases = {
        "config.json: missing": damaged("no_config", lambda f: (f / "config.json").unlink()),
        "unreadable JSON": damaged("bad_json", lambda f: (f / "config.json").write_text("{not json")),
        "corrupt safetensors": damaged("bad_weights", lambda f: (f / "model.safetensors").write_bytes(b"\x10\x00junk")),
        "model.safetensors is missing": damaged("no_weights", lambda f: (f / "model.safetensors").unlink()),
        "format_version 99": damaged("future", lambda f: (f / "config.json").write_text(
            json.dumps({**CONFIG, "format_version": 99}))),
        "weights do not match": damaged("mismatch", lambda f: (f / "config.json").write_text(
            json.dumps({**CONFIG, "format_version": 1, "model": {"name": "tied_test", "dim": 8}}))),
    }
    for message, folder in cases.items():
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder)
    load_checkpoint(good)


KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from speechs2s import checkpoint, models
    from test_checkpoint import CONFIG, TIED_SPEC, make_model
    models.MODELS["tied_test"] = TIED_SPEC

    real_write = checkpoint._write
    def stalled_write(path, data):  # write half of the first file, then hang until killed
        real_write(path, data[: len(data) // 2])
        print("writing", flush=True)
        time.sleep(120)
    checkpoint._write = stalled_write
    checkpoint.save_checkpoint({out!r}, make_model(2.0), CONFIG)
""")


def test_writer_killed_mid_write_leaves_previous_checkpoint(tmp_path):
    target = tmp_path / "step-000010"
    save_checkpoint(target, make_model(1.0), CONFIG)
    path = os.pathsep.join(filter(None, [str(TESTS.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}
    writer = subprocess.Popen([sys.executable, "-c", KILLED_WRITER.format(tests=str(TESTS), out=str(target))],
                              stdout=subprocess.PIPE, text=True, env=env)
    assert writer.stdout.readline().strip() == "writing"
    writer.kill()
    writer.wait()
    leftovers = list(tmp_path.glob("step-000010.tmp-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "model.safetensors").exists()  # half-written, not visible
    model, _, _ = load_checkpoint(target)
    assert all(torch.all(p == 1.0) for p in model.parameters())
    with pytest.raises(CheckpointError):
        load_checkpoint(leftovers[0])  # the partial folder is not a valid checkpoint


def test_resolution_of_names_and_run_folders(tmp_path):
    with pytest.raises(CheckpointError, match="give the task"):
        resolve_checkpoint("default")
    with pytest.raises(CheckpointError, match="no-such-model: no such checkpoint"):
        resolve_checkpoint("no-such-model")
    run = tmp_path / "run"
    save_checkpoint(run / "checkpoints/step-000004", make_model(), CONFIG)
    (run / "last").write_text("checkpoints/step-000004\n")
    assert resolve_checkpoint(run) == run / "checkpoints/step-000004"
    save_checkpoint(run / "final", make_model(), CONFIG)
    assert resolve_checkpoint(run) == run / "final"


def test_average_numerics_and_cli(tmp_path):
    folders = [save_checkpoint(tmp_path / f"c{i}", make_model(value, updates=i), CONFIG)
               for i, value in enumerate([1.0, 2.0, 6.0])]
    averaged = average_checkpoints(folders)
    assert torch.all(averaged["embedding.weight"] == 3.0) and torch.all(averaged["output.bias"] == 3.0)
    assert averaged["updates"].item() == 2 and averaged["updates"].dtype == torch.long  # ints: the last one

    # fractional means are computed in float64 and rounded once
    torch.manual_seed(1)
    random_states = [{"w": torch.randn(100)} for _ in range(3)]
    for i, state in enumerate(random_states):
        save_checkpoint(tmp_path / f"r{i}", state, CONFIG)
    expected = (sum(s["w"].double() for s in random_states) / 3).float()
    assert torch.equal(average_checkpoints([tmp_path / f"r{i}" for i in range(3)])["w"], expected)

    result = CliRunner().invoke(main, ["average", str(tmp_path / "avg"), *map(str, folders)])
    assert result.exit_code == 0, result.output
    model, _, _ = load_checkpoint(result.output.strip())
    assert torch.all(model.embedding.weight == 3.0) and model.updates.item() == 2

    # --half stores float16 (half the bytes); loading casts back into the float32 model
    result = CliRunner().invoke(main, ["average", "--half", str(tmp_path / "half"), str(folders[-1])])
    assert result.exit_code == 0, result.output
    assert read_weights(tmp_path / "half")["embedding.weight"].dtype == torch.float16
    model, _, _ = load_checkpoint(tmp_path / "half")
    assert model.embedding.weight.dtype == torch.float32 and torch.all(model.embedding.weight == 6.0)

    save_checkpoint(tmp_path / "other", {"w": torch.zeros(3)}, CONFIG)
    result = CliRunner().invoke(main, ["average", str(tmp_path / "bad"), str(folders[0]), str(tmp_path / "other")])
    assert result.exit_code == 1 and "differ in names or shapes" in result.output


def test_every_loader_checks_the_kind_of_checkpoint(tmp_path):
    """load_asr / load_tts / load_vocoder / load_lm share one check: the model's registered task, and the
    tokenizer a text model needs (before any weights are read)."""
    from speechs2s import load_asr, load_lm, load_tts, load_vocoder

    with pytest.raises(CheckpointError, match="tts-default: holds a fastspeech2 model for task tts, not asr"):
        load_asr("tts-default", "cpu")
    with pytest.raises(CheckpointError, match="asr-default: holds a transformer_asr model for task asr, not tts"):
        load_tts("asr-default", "cpu")
    with pytest.raises(CheckpointError, match="tts-transformer: holds a transformer_tts model for task tts, not vocoder"):
        load_vocoder("tts-transformer", "cpu")
    with pytest.raises(CheckpointError, match="asr-default: holds a transformer_asr model for task asr, not lm"):
        load_lm("asr-default", "cpu")
    save_checkpoint(tmp_path / "untokenized", make_model(), CONFIG)  # tied_test is registered for asr
    with pytest.raises(CheckpointError, match="untokenized: tokenizer.json is missing"):
        load_asr(tmp_path / "untokenized", "cpu")
    unknown = json.loads((tmp_path / "untokenized/config.json").read_text())
    unknown["model"]["name"] = "tied_tset"
    (tmp_path / "untokenized/config.json").write_text(json.dumps(unknown))
    with pytest.raises(CheckpointError, match=r"config.json: model.name: unknown model 'tied_tset' \(did you mean tied_test\?\)"):
        load_checkpoint(tmp_path / "untokenized")
