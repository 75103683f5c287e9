"""The trainer: exact resume (after a clean stop, SIGTERM and SIGKILL), NaN skipping, DDP
gradients, schedules, config errors, and an end-to-end run of a real model on FSDD.

Most tests train a tiny model defined here (it follows the model contract: ``forward(batch) ->
dict(loss=...)``) on an in-memory dataset, so they take seconds on one CPU thread.
"""
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from speechs2s import models
from speechs2s.checkpoint import load_checkpoint, read_weights
from speechs2s.errors import ConfigError, SpeechS2SError
from speechs2s.train import trainer as trainer_module
from speechs2s.train.config import SAVED_CONFIG, TrainConfig, from_dict, load_config, save_config, training_config
from speechs2s.train.schedule import build_scheduler, cosine, noam
from speechs2s.train.trainer import Trainer

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
N_MELS = 4


# -- a tiny model and dataset following the contracts ------------------------------------------


@dataclass
class TinyConfig:
    n_mels: int = N_MELS
    hidden: int = 16
    dropout: float = 0.1
    delay: float = 0.0  # seconds of sleep per training forward (lets a test signal a run mid-way)
    nan_calls: list[int] = field(default_factory=list)  # training forward calls whose loss is NaN


class TinyModel(nn.Module):
    """Predicts each utterance's target from its mean-pooled frames: ``(B, T, M) -> (B,)``."""

    def __init__(self, config: TinyConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(nn.Linear(config.n_mels, config.hidden), nn.Tanh(), nn.Dropout(config.dropout),
                                 nn.Linear(config.hidden, 1))
        self.calls = 0
        self.seen_ids: list[str] = []

    def forward(self, batch: dict) -> dict:
        features, lengths = batch["features"], batch["feature_lengths"]
        mask = (torch.arange(features.shape[1], device=features.device) < lengths[:, None]).unsqueeze(-1)
        pooled = (features * mask).sum(1) / lengths[:, None]
        error = (self.net(pooled).squeeze(-1) - batch["targets"]) ** 2
        loss = error.mean()
        if self.training:
            self.calls += 1
            self.seen_ids += batch["ids"]
            time.sleep(self.config.delay)
            if self.calls in self.config.nan_calls:
                loss = loss * math.nan
        return {"loss": loss, "max_error": error.max().detach()}

    def validation_extras(self, batch: dict):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure = plt.figure(figsize=(2, 2))
        plt.plot(batch["targets"].cpu())
        return {"batch_size": float(len(batch["ids"]))}, {"targets": figure}


class TinyDataset(torch.utils.data.Dataset):
    """``n`` utterances of random frames ``(T, M)``; the target is a fixed function of the frames.
    Each read adds a little noise (as augmentation would) from a generator seeded by
    ``(epoch, index)``, as the real datasets do."""

    def __init__(self, n: int, seed: int = 0, frames: tuple[int, int] = (5, 20)):
        generator = torch.Generator().manual_seed(seed)
        self.lengths = torch.randint(frames[0], frames[1] + 1, (n,), generator=generator).tolist()
        self.frames = [torch.randn(length, N_MELS, generator=generator) for length in self.lengths]
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, index: int) -> dict:
        frames = self.frames[index]
        target = torch.tanh(frames.mean(0) @ torch.tensor([1.0, -2.0, 0.5, 1.5]))
        generator = torch.Generator().manual_seed(self.epoch * 100_003 + index)
        noise = torch.randn(frames.shape, generator=generator)
        return {"id": f"utt{index}", "features": frames + 0.01 * noise, "target": target}


TINY_SPEC = models.ModelSpec("tiny_test", models.ASR, TinyModel, TinyConfig)


def collate_tiny(items: list[dict]) -> dict:
    return {"ids": [item["id"] for item in items],
            "features": pad_sequence([item["features"] for item in items], batch_first=True),
            "feature_lengths": torch.tensor([len(item["features"]) for item in items]),
            "targets": torch.stack([item["target"] for item in items])}


def tiny_config(out_dir, **sections) -> TrainConfig:
    raw = {
        "task": "asr",
        "model": {"name": "tiny_test"},
        "data": {"max_frames": 60, "num_workers": 0, "feature_stats": False},
        "optim": {"lr": 0.02, "warmup_steps": 3, "grad_clip": 1.0, "accum_steps": 2},
        "trainer": {"max_steps": 12, "valid_every": 4, "ckpt_every": 4, "log_every": 2, "keep_best": 1,
                    "average_last": 2, "amp": "off", "seed": 0, "out_dir": str(out_dir), "device": "cpu"},
    }
    for section, values in sections.items():
        raw[section] = {**raw[section], **values}
    return from_dict(raw)


def run_tiny(out_dir, resume: bool = False, model: dict | None = None, train_size: int = 32, frames=(5, 20),
             **sections) -> tuple[Trainer, Path]:
    """Train TinyModel (initialised from seed 0) as configured by :func:`tiny_config`."""
    config = tiny_config(out_dir, **sections)
    torch.manual_seed(0)
    model_config = TinyConfig(**(model or {}))
    checkpoint_config = {"task": "asr", "model": {"name": "tiny_test", **vars(model_config)}, "features": {}}
    trainer = Trainer(config, TinyModel(model_config), TinyDataset(train_size, frames=frames), TinyDataset(8, seed=1),
                      collate_tiny, checkpoint_config)
    return trainer, trainer.fit(resume=resume)


@pytest.fixture(autouse=True)
def tiny_registered(monkeypatch):
    """Make ``tiny_test`` a registered model so checkpoints of it load with ``load_checkpoint``."""
    monkeypatch.setitem(models.MODELS, "tiny_test", TINY_SPEC)


def assert_same_weights(a: dict, b: dict):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def params(trainer: Trainer) -> dict:
    return {k: v.detach().clone() for k, v in trainer.module.state_dict().items()}


# -- resume --------------------------------------------------------------------------------------


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_after_stop_is_bit_identical(tmp_path, num_workers):
    data = {"max_frames": 60, "num_workers": num_workers}
    full, final = run_tiny(tmp_path / "full", data=data)
    first, _ = run_tiny(tmp_path / "split", data=data, trainer={"max_steps": 5})
    assert first.step == 5 and (tmp_path / "split/last").read_text().strip() == "checkpoints/step-000005"
    resumed, resumed_final = run_tiny(tmp_path / "split", resume=True, data=data)

    assert full.step == resumed.step == 12
    assert (resumed.epoch, resumed.position) == (full.epoch, full.position)
    assert_same_weights(params(full), params(resumed))
    # the averaged final checkpoints (steps 8 and 12) agree too, and load through the registry
    assert_same_weights(read_weights(final), read_weights(resumed_final))
    model, tokenizer, config = load_checkpoint(resumed_final)
    assert tokenizer is None and config["model"]["name"] == "tiny_test"
    # keep_best=1 + average_last=2: step 12 and 8 stay, plus the best-by-validation one
    kept = {p.name for p in resumed.step_checkpoints()}
    assert {"step-000008", "step-000012"} <= kept and len(kept) <= 3
    assert (tmp_path / "split/best/model.safetensors").exists()
    assert list((tmp_path / "full/tensorboard").iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("auto", torch.bfloat16)])
def test_cuda_mixed_precision_trains_and_resumes_exactly(tmp_path, amp, dtype):
    sections = {"data": {"max_frames": 60, "num_workers": 2},
                "trainer": {"amp": amp, "device": "cuda", "max_steps": 24, "valid_every": 24, "ckpt_every": 8}}
    full, _ = run_tiny(tmp_path / "full", **sections)
    assert full.amp_dtype == dtype and full.scaler.is_enabled() == (dtype == torch.float16)
    assert full.module.net[0].weight.is_cuda and full.skipped_steps == 0
    run_tiny(tmp_path / "split", data=sections["data"], trainer={**sections["trainer"], "max_steps": 11})
    resumed, _ = run_tiny(tmp_path / "split", resume=True, **sections)
    assert_same_weights(params(full), params(resumed))
    untrained, _ = run_tiny(tmp_path / "untrained", optim={"lr": 1e-9}, **sections)
    assert full.best_loss < 0.5 * untrained.best_loss


def test_training_reduces_loss(tmp_path):
    trainer, _ = run_tiny(tmp_path, trainer={"max_steps": 30, "valid_every": 30, "ckpt_every": 30})
    valid_loss = trainer.valid_losses["step-000030"]
    untrained, _ = run_tiny(tmp_path / "untrained", optim={"lr": 1e-9})
    assert valid_loss < 0.5 * untrained.best_loss


SUBPROCESS = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from speechs2s import models
    from test_train import TINY_SPEC, run_tiny
    models.MODELS["tiny_test"] = TINY_SPEC
    trainer, path = run_tiny({out!r}, model={{"delay": 0.03}}, trainer={{"max_steps": 40}})
    print("result", path, trainer.step, flush=True)
""")


def subprocess_env() -> dict:
    """This interpreter's environment with one thread and the repository importable."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path}


def start_run(out_dir: Path) -> subprocess.Popen:
    env = subprocess_env()
    script = SUBPROCESS.format(tests=str(TESTS), out=str(out_dir))
    return subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference_40(tmp_path_factory):
    """Weights after an uninterrupted 40-step run (the subprocess tests' target)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(models.MODELS, "tiny_test", TINY_SPEC)
        trainer, _ = run_tiny(tmp_path_factory.mktemp("reference"), trainer={"max_steps": 40})
    return params(trainer)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path, reference_40):
    process = start_run(tmp_path)
    wait_for(tmp_path / "last", process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (tmp_path / "final").exists(), "the run finished before it could be killed"
    resumed, _ = run_tiny(tmp_path, resume=True, trainer={"max_steps": 40})
    assert_same_weights(reference_40, params(resumed))


@pytest.mark.slow
def test_sigterm_saves_exits_cleanly_and_resumes_exactly(tmp_path, reference_40):
    process = start_run(tmp_path)
    wait_for(tmp_path / "last", process)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "stopped by SIGTERM" in stderr and "--resume" in stderr
    stopped_at = int(stdout.split()[-1])
    assert 4 <= stopped_at < 40
    assert (tmp_path / "last").read_text().strip() == f"checkpoints/step-{stopped_at:06d}"
    assert not (tmp_path / "final").exists()
    resumed, _ = run_tiny(tmp_path, resume=True, trainer={"max_steps": 40})
    assert_same_weights(reference_40, params(resumed))


def test_resume_without_checkpoint_is_an_error(tmp_path):
    with pytest.raises(SpeechS2SError, match="nothing to resume"):
        run_tiny(tmp_path, resume=True)


def test_half_written_checkpoint_is_ignored(tmp_path):
    trainer, _ = run_tiny(tmp_path, trainer={"max_steps": 4})
    partial = tmp_path / "checkpoints" / "step-000008.tmp-abcd"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"garbage")
    assert [p.name for p in trainer.step_checkpoints()] == ["step-000004"]
    resumed, _ = run_tiny(tmp_path, resume=True, trainer={"max_steps": 6})
    assert resumed.step == 6 and not partial.exists()  # stale temporaries are cleaned on start


# -- non-finite steps ----------------------------------------------------------------------------


def test_nan_loss_is_skipped_and_counted(tmp_path, capfd):
    trainer, final = run_tiny(tmp_path, model={"nan_calls": [6]})
    assert trainer.skipped_steps == 1 and trainer.step == 12
    # 12 real steps of 2 micro-batches, plus the 2 of the skipped step
    assert trainer.module.calls == 2 * 13
    assert all(torch.isfinite(w).all() for w in read_weights(final).values())
    assert "skipped" in capfd.readouterr().err
    assert "skipped_steps" in (tmp_path / "final/metrics.json").read_text()


def test_training_that_keeps_diverging_stops(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer_module, "MAX_CONSECUTIVE_SKIPS", 3)
    with pytest.raises(SpeechS2SError, match="diverged"):
        run_tiny(tmp_path, model={"nan_calls": list(range(1, 100))})


# -- DDP -----------------------------------------------------------------------------------------

DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, {tests!r})
    from safetensors.torch import save_file
    from speechs2s import models
    from test_train import TINY_SPEC, run_tiny
    models.MODELS["tiny_test"] = TINY_SPEC
    trainer, _ = run_tiny({out!r}, model={{"dropout": 0.0}}, frames=(10, 10), train_size=16,
                          data={{"max_frames": 40}}, optim={{"accum_steps": 1, "grad_clip": 0.0}},
                          trainer={{"max_steps": 1}})
    grads = {{name: p.grad for name, p in trainer.module.named_parameters()}}
    rank = os.environ["RANK"]
    save_file(grads, os.path.join({out!r}, f"grads-{{rank}}.safetensors"),
              metadata={{"ids": ",".join(trainer.module.seen_ids)}})
    torch.distributed.destroy_process_group()
""")


@pytest.mark.slow
def test_ddp_gradients_match_single_process(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(TESTS), out=str(tmp_path)))
    env = subprocess_env()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    from safetensors import safe_open

    grads, ids = [], []
    for rank in range(2):
        path = tmp_path / f"grads-{rank}.safetensors"
        grads.append(load_file(path))
        with safe_open(path, "pt") as file:
            ids.append(file.metadata()["ids"].split(","))
    assert len(ids[0]) == len(ids[1]) == 4 and not set(ids[0]) & set(ids[1])  # each rank: its own 4 items
    assert_same_weights(grads[0], grads[1])  # all-reduced

    # one process, same initial weights, loss over the union of both ranks' batches
    torch.manual_seed(0)
    model = TinyModel(TinyConfig(dropout=0.0))
    items = TinyDataset(16, frames=(10, 10))
    batch = collate_tiny([items[int(i.removeprefix("utt"))] for i in ids[0] + ids[1]])
    model(batch)["loss"].backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(grads[0][name], p.grad, rtol=1e-5, atol=1e-7)
    assert (tmp_path / "final/model.safetensors").exists() and not list(tmp_path.glob("grads-*.tmp*"))


# -- schedules -----------------------------------------------------------------------------------


def learning_rates(optimizer, scheduler, steps: int) -> list[float]:
    """The learning rate used at each of ``steps`` optimizer steps."""
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_noam_schedule_values_and_resume():
    expected = [0.25, 0.5, 0.75, 1.0, math.sqrt(4 / 5), math.sqrt(4 / 6)]
    assert [noam(s, warmup=4) for s in range(6)] == pytest.approx(expected)
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=0.1)
    scheduler = build_scheduler(optimizer, "noam", warmup=4, total=100)
    lrs = learning_rates(optimizer, scheduler, 10)
    assert max(lrs) == pytest.approx(0.1) and lrs.index(max(lrs)) == 3
    assert lrs[9] == pytest.approx(0.1 * math.sqrt(4 / 10))

    state = scheduler.state_dict()
    optimizer2 = torch.optim.SGD([parameter], lr=0.1)
    scheduler2 = build_scheduler(optimizer2, "noam", warmup=4, total=100)
    scheduler2.load_state_dict(state)
    optimizer2.param_groups[0]["lr"] = scheduler2.get_last_lr()[0]
    optimizer.step(), scheduler.step(), optimizer2.step(), scheduler2.step()
    assert optimizer.param_groups[0]["lr"] == optimizer2.param_groups[0]["lr"]


def test_cosine_and_constant_schedules():
    assert cosine(0, warmup=10, total=110) == pytest.approx(0.1)
    assert cosine(9, warmup=10, total=110) == pytest.approx(1.0)
    assert cosine(59, warmup=10, total=110) == pytest.approx(0.5)
    assert cosine(109, warmup=10, total=110) == pytest.approx(0.0, abs=1e-12)
    parameter = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    scheduler = build_scheduler(optimizer, "constant", warmup=2, total=10)
    assert learning_rates(optimizer, scheduler, 4) == [0.5, 1.0, 1.0, 1.0]


# -- config errors -------------------------------------------------------------------------------


def write_config(tmp_path, text: str) -> Path:
    for manifest in ("train.jsonl", "valid.jsonl"):
        (tmp_path / manifest).touch()
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).format(dir=tmp_path))
    return path


GOOD = """
    task: asr
    model: {{name: transformer_asr, options: {{d_model: 64}}}}
    data: {{train: {dir}/train.jsonl, valid: {dir}/valid.jsonl}}
    optim: {{lr: 1e-3, schedule: cosine}}
    trainer: {{max_steps: 100, out_dir: {dir}/exp}}
"""


def test_config_loads_with_overrides(tmp_path):
    config = load_config(write_config(tmp_path, GOOD), ["optim.lr=5e-4", "trainer.amp=bf16", "model.options.d_model=96",
                                                        "data.speed_perturb=[0.9, 1.0, 1.1]", "trainer.device=null"])
    assert config.optim.lr == 5e-4 and config.optim.schedule == "cosine" and config.trainer.amp == "bf16"
    assert config.model.options == {"d_model": 96} and config.data.speed_perturb == [0.9, 1.0, 1.1]
    assert config.trainer.device is None and config.trainer.max_steps == 100


@pytest.mark.parametrize("text, overrides, message", [
    (GOOD.replace("max_steps", "max_step"), [], r"trainer\.max_step: unknown key \(did you mean trainer\.max_steps"),
    (GOOD, ["optim.warmup=10"], r"optim\.warmup: unknown key \(did you mean optim\.warmup_steps\?\)"),
    (GOOD, ["trainer.max_steps=many"], r"trainer\.max_steps: expected int, got 'many'"),
    (GOOD, ["optim.lr=fast"], r"optim\.lr: expected float"),
    (GOOD, ["optim.schedule=linear"], r"optim\.schedule: expected one of noam, cosine, constant"),
    (GOOD, ["trainer.amp=yes"], r"trainer\.amp: expected one of"),
    (GOOD, ["optim.accum_steps=0"], r"optim\.accum_steps: must be > 0"),
    (GOOD, ["optim.lr"], r"--set 'optim.lr': expected KEY=VALUE"),
    (GOOD, ["optim.lr.peak=1"], r"--set optim.lr.peak: optim.lr is not a section"),
    (GOOD.replace("valid.jsonl}}", "missing.jsonl}}"), [], r"data\.valid: manifest .*missing\.jsonl does not exist"),
    ("task: asr\noptim: [1, 2\n", [], r"config\.yaml line \d+: invalid YAML"),
    (GOOD, ["model.name=transformer_asrr"], r"model\.name: unknown model 'transformer_asrr' \(did you mean transformer_asr\?\)"),
    (GOOD, ["model.options.d_modle=96"], r"model\.options\.d_modle: unknown option of transformer_asr \(did you mean model\.options\.d_model\?\)"),
    (GOOD, ["model.options.d_model=wide"], r"model\.options\.d_model: expected int, got 'wide'"),
    (GOOD, ["model.options.ctc_weight=1.5"], r"model\.options: ctc_weight must be in \[0, 1\]"),
    (GOOD, ["model.options.n_heads=5"], r"model\.options: d_model=64 is not divisible by n_heads=5"),
    (GOOD, ["model.options.n_mels=40"], r"model\.options\.n_mels: 40 disagrees with the data \(80\)"),
    (GOOD, ["task=tts"], r"task: tts, but model transformer_asr is for task asr"),
    (GOOD, ["data.spec_augment={freq_mask: 2}"], r"data\.spec_augment\.freq_mask: unknown key \(did you mean data\.spec_augment\.freq_masks\?\)"),
    (GOOD, ["data.features={hop: 100}"], r"data\.features\.hop: unknown feature option"),
    (GOOD, ["data.channel_augment={noise_prob: 1.5}"], r"data\.channel_augment: noise_prob must be in \[0, 1\], got 1\.5"),
    (GOOD, ["task=null", "model.name=fastspeech", "model.options={}", "data.channel_augment={}"],
     r"data\.channel_augment: model fastspeech does not use it"),
    (GOOD, ["optim.groups={generator: {lr: -1.0}}"], r"optim\.groups\.generator: optim\.lr: must be > 0, got -1\.0"),
    (GOOD, ["task=null", "model.name=lstm_lm", "model.options={}"],
     r"data\.feature_stats: model lstm_lm does not use it; set data\.feature_stats=false"),
    (GOOD, ["task=vocoder", "model.name=hifigan", "model.options={}", "data.feature_stats=false", "data.speed_perturb=[1.0]"],
     r"data\.speed_perturb: model hifigan does not use it"),
])
def test_config_errors_name_the_key(tmp_path, text, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write_config(tmp_path, text), overrides)


def test_task_follows_the_model(tmp_path):
    config = load_config(write_config(tmp_path, GOOD.replace("task: asr", "")))
    assert config.task == "asr"
    config = load_config(write_config(tmp_path, GOOD.replace("task: asr", "")),
                         ["model.name=transformer_tts", "model.options={guided_weight: 1, d_model: 64}"])
    assert config.task == "tts" and config.model.options["guided_weight"] == 1.0  # ints widen to floats


def test_cli_train_checks_the_whole_config_before_reading_or_writing(tmp_path):
    """The bundled tiny ASR config with ``--set task=tts``: one ``error:`` line, no output folder,
    and the manifests (unreadable here, as they would fail if read) are not opened."""
    from click.testing import CliRunner

    from speechs2s.cli import main

    for manifest in ("train.jsonl", "valid.jsonl"):
        (tmp_path / manifest).write_text("this line is not JSON\n")
    out_dir = tmp_path / "exp"
    result = CliRunner().invoke(main, ["train", str(REPO / "configs/asr_transformer_tiny.yaml"), "--set", "task=tts",
                                       "--set", f"data.train={tmp_path}/train.jsonl",
                                       "--set", f"data.valid={tmp_path}/valid.jsonl", "--set", f"trainer.out_dir={out_dir}"])
    assert result.exit_code == 1
    assert result.output.splitlines() == ["error: task: tts, but model transformer_asr is for task asr "
                                          "(leave task out: it follows the model)"]
    assert not out_dir.exists()


def test_train_stops_when_no_training_audio_is_readable(tmp_path):
    from click.testing import CliRunner

    from speechs2s.cli import main
    from speechs2s.data.manifest import write_manifest

    (tmp_path / "broken.wav").write_bytes(b"not audio" * 100)
    entries = [{"id": f"u{i}", "audio": str(tmp_path / "broken.wav"), "duration": 1.0, "text": "yes"} for i in range(3)]
    config = write_config(tmp_path, """
        task: asr
        model: {{name: transformer_asr, options: {{d_model: 32, n_heads: 2, encoder_layers: 1, decoder_layers: 1,
                                                  d_ff: 64, subsampling_channels: 4}}}}
        data: {{train: {dir}/train.jsonl, valid: {dir}/valid.jsonl, feature_stats: false, num_workers: 0}}
        trainer: {{max_steps: 2, out_dir: {dir}/exp, device: cpu}}
    """)
    write_manifest(tmp_path / "train.jsonl", entries)
    write_manifest(tmp_path / "valid.jsonl", entries[:1])
    result = CliRunner().invoke(main, ["train", str(config)])
    assert result.exit_code == 1 and "none of the audio in" in result.output, result.output


def test_resume_reads_the_config_the_run_saved(tmp_path):
    yaml_path = write_config(tmp_path, GOOD)
    started = load_config(yaml_path, ["optim.lr=5e-4", "trainer.max_steps=7"])
    assert save_config(started, started.trainer.out_dir) == tmp_path / "exp" / SAVED_CONFIG
    assert load_config(tmp_path / "exp" / SAVED_CONFIG) == started  # round trip
    for path in (tmp_path / "exp", yaml_path):  # the run folder, or the YAML that started it
        resumed = training_config(path, ["trainer.max_steps=9"], resume=True)
        assert resumed.optim.lr == 5e-4 and resumed.trainer.max_steps == 9
    assert training_config(yaml_path).optim.lr == 1e-3  # a new run reads the YAML
    moved = tmp_path / "moved"
    (tmp_path / "exp").rename(moved)
    assert training_config(moved, resume=True).trainer.out_dir == str(moved)
    with pytest.raises(ConfigError, match="moved: a folder; add --resume"):
        training_config(moved)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=f"empty: no {SAVED_CONFIG} in it"):
        training_config(tmp_path / "empty", resume=True)


def test_cli_train_reports_config_errors(tmp_path):
    from click.testing import CliRunner

    from speechs2s.cli import main

    result = CliRunner().invoke(main, ["train", str(write_config(tmp_path, GOOD)), "--set", "optim.lrr=1"])
    assert result.exit_code == 1 and "optim.lrr: unknown key (did you mean optim.lr?)" in result.output


# -- end to end on real speech -------------------------------------------------------------------


def test_train_transformer_asr_on_fsdd(tmp_path, corpora):
    """``speechs2s train`` on 24 FSDD digits with augmentation: loss falls, the checkpoint loads, and
    a resumed run reaches the same weights as an uninterrupted one."""
    pytest.importorskip("speechs2s.models.asr_transformer")
    from click.testing import CliRunner

    from speechs2s.cli import main
    from speechs2s.data.corpora import import_fsdd
    from speechs2s.data.manifest import write_manifest

    entries = sorted(import_fsdd(corpora / "fsdd"), key=lambda e: e["id"])
    write_manifest(tmp_path / "train.jsonl", entries[:24])
    write_manifest(tmp_path / "valid.jsonl", entries[24:30])
    config = write_config(tmp_path, """
        task: asr
        model:
          name: transformer_asr
          options: {{d_model: 32, n_heads: 2, encoder_layers: 1, decoder_layers: 1, d_ff: 64,
                     subsampling_channels: 4, dropout: 0.0}}
        data: {{train: {dir}/train.jsonl, valid: {dir}/valid.jsonl, max_frames: 800, num_workers: 1,
               spec_augment: {{}}, speed_perturb: [0.9, 1.0, 1.1], features: {{sample_rate: 8000, n_fft: 200, win_length: 200, hop_length: 80,
               n_mels: 20}}}}
        optim: {{lr: 3e-3, warmup_steps: 4}}
        trainer: {{max_steps: 12, valid_every: 6, ckpt_every: 6, log_every: 3, out_dir: {dir}/exp, device: cpu}}
    """)
    result = CliRunner().invoke(main, ["train", str(config), "--set", "optim.lr=2e-3"])
    assert result.exit_code == 0, result.stderr + repr(result.exception)
    assert load_config(tmp_path / "exp/config.yaml").optim.lr == 2e-3  # the resolved config, --set included
    final = Path(result.stdout.strip().splitlines()[-1])
    assert final == tmp_path / "exp/final"
    model, tokenizer, saved = load_checkpoint(final)
    assert saved["task"] == "asr" and saved["model"]["vocab_size"] == tokenizer.vocab_size
    assert saved["features"]["sample_rate"] == 8000
    assert not torch.equal(model.mean, torch.zeros_like(model.mean))  # feature stats were computed
    losses = read_scalars(tmp_path / "exp/tensorboard", "train/loss")
    assert losses[-1] < losses[0]
    # continuing the finished run to more steps from its folder (no --set repeated) == training that far in one go
    result = CliRunner().invoke(main, ["train", str(tmp_path / "exp"), "--resume", "--set", "trainer.max_steps=14"])
    assert result.exit_code == 0, result.stderr
    assert "resumed from" in result.stderr
    result = CliRunner().invoke(main, ["train", str(config), "--set", "optim.lr=2e-3", "--set", "trainer.max_steps=14",
                                       "--set", f"trainer.out_dir={tmp_path}/exp_full"])
    assert result.exit_code == 0, result.stderr
    assert_same_weights(read_weights(tmp_path / "exp/checkpoints/step-000014"),
                        read_weights(tmp_path / "exp_full/checkpoints/step-000014"))
    # fine-tuning: a new run starts from the final weights, its tokenizer and feature stats
    result = CliRunner().invoke(main, ["train", str(config), "--set", f"trainer.init_from={final}",
                                       "--set", "trainer.max_steps=1", "--set", f"trainer.out_dir={tmp_path}/exp_ft"])
    assert result.exit_code == 0, result.stderr
    tuned = read_weights(tmp_path / "exp_ft/checkpoints/step-000001")
    assert torch.equal(tuned["mean"], model.mean) and not torch.equal(tuned["output.weight"], model.output.weight)
    assert (tmp_path / "exp_ft/checkpoints/step-000001/tokenizer.json").read_text() == (final / "tokenizer.json").read_text()
    result = CliRunner().invoke(main, ["train", str(config), "--set", f"trainer.init_from={tmp_path}/nowhere"])
    assert result.exit_code == 1 and "trainer.init_from" in result.output
    result = CliRunner().invoke(main, ["train", str(config), "--set", f"trainer.init_from={final}",
                                       "--set", "model.options.d_ff=48", "--set", f"trainer.out_dir={tmp_path}/exp_bad"])
    assert result.exit_code == 1 and "does not fit this model" in result.output, result.output


def read_scalars(log_dir: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return [event.value for event in accumulator.Scalars(tag)]


def test_time_budget_ends_the_run_like_max_steps(tmp_path):
    """trainer.max_minutes: the run stops at the first step past the budget, validated, saved and averaged."""
    trainer, final = run_tiny(tmp_path, model={"delay": 0.05}, trainer={"max_steps": 1000, "max_minutes": 0.01})
    assert 0 < trainer.step < 1000 and final == tmp_path / "final"
    assert f"step-{trainer.step:06d}" in trainer.valid_losses
    assert (tmp_path / "checkpoints" / f"step-{trainer.step:06d}").is_dir()
