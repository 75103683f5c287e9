"""One training loop for every model.

A model only has to map a batch to ``dict(loss=scalar, **parts)``; the loop never looks inside.
It does AdamW with a warmup schedule, gradient accumulation and clipping, mixed precision (bf16,
or fp16 with loss scaling, on CUDA), DDP when launched by ``torchrun``, TensorBoard + tqdm,
periodic validation, atomic checkpoints with keep-best-N and averaging, skipping of non-finite
steps, and exact resumption: ``--resume`` continues as if the run had never stopped (model,
optimizer, scheduler, loss scaler, every RNG and the position in the epoch are restored).

Layout of ``out_dir``::

    checkpoints/step-000500/   model.safetensors config.json tokenizer.json train_state.* metrics.json
    last                       pointer file: "checkpoints/step-000500"
    best/                      the checkpoint with the lowest validation loss so far
    final/                     the average of the last ``average_last`` step checkpoints
    tensorboard/               scalars and figures
    tokenizer.json             the tokenizer built for this run
    config.yaml                the resolved config (YAML + --set): ``speechs2s train OUT_DIR --resume``
"""
import contextlib
import dataclasses
import logging
import math
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from speechs2s.checkpoint import average_checkpoints, load_train_state, read_weights, save_checkpoint, write_text_atomic
from speechs2s.errors import CheckpointError, ConfigError, SpeechS2SError
from speechs2s.train.config import TrainConfig, model_options, save_config, task_features
from speechs2s.train.schedule import build_scheduler

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_SKIPS = 100  # non-finite steps in a row before training is declared diverged
STATS_MAX_FILES = 2000  # feature mean/std are estimated on at most this many training files
STEP_DIR = re.compile(r"step-(\d+)")


def train(config: TrainConfig, resume: bool = False) -> Path:
    """Train the model described by ``config`` (checked by ``load_config``); returns the final
    checkpoint directory (or, when stopped by SIGINT/SIGTERM, the step checkpoint to ``--resume`` from)."""
    from speechs2s.models import model_spec

    spec = model_spec(config.model.name)
    placement = setup_distributed(config.trainer.device)
    try:
        out_dir = Path(config.trainer.out_dir)
        if not resume and (out_dir / "last").exists():
            raise ConfigError(f"trainer.out_dir: {out_dir} already holds a run; pass --resume to continue it "
                              "or choose another out_dir")
        features = task_features(config)
        train_entries = spec.task.read_entries(config.data.train)
        if not train_entries:
            raise ConfigError(f"data.train: {config.data.train} has no entries")
        valid_entries = spec.task.read_entries(config.data.valid)  # its errors too come before anything is written
        check_entry_keys(spec, {config.data.train: train_entries, config.data.valid: valid_entries})
        if placement.rank == 0:
            save_config(config, out_dir)  # --resume reads it back: no --set needs repeating
        tokenizer = prepare_tokenizer(config, train_entries, placement.rank, resume) if spec.task.text else None
        train_set, valid_set = build_datasets(config, train_entries, tokenizer, features)
        options = model_options(config, features, tokenizer)
        model_config = dataclasses.asdict(spec.make_config(options))
        seed_everything(config.trainer.seed)
        model = spec.build(options)
        if config.trainer.init_from and not resume:  # fine-tuning: weights and feature stats come along
            load_initial_weights(model, config.trainer.init_from, spec.name, placement.rank,
                                 config.trainer.init_from_partial)
        elif config.data.feature_stats and not resume and placement.rank == 0:  # DDP copies rank 0's buffers
            set_feature_stats(model, config, train_entries, features)
        checkpoint_config = {"task": spec.task.name, "model": {"name": spec.name, **model_config},
                             "features": features.to_dict() if features else {}, "train": config.to_dict()}
        trainer = Trainer(config, model, train_set, valid_set, spec.task.collate, checkpoint_config, tokenizer,
                          placement)
        return trainer.fit(resume=resume)
    finally:
        if placement.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------
# Building the pieces from a config (what differs between models comes from their ModelSpec)


def check_entry_keys(spec, manifests: dict[str, list[dict]]) -> None:
    """Every entry must have the keys the model trains on beyond audio and text (its spec's
    ``entry_keys``, e.g. FastSpeech's ``durations``)."""
    for key in spec.entry_keys:
        for path, entries in manifests.items():
            missing = [entry["id"] for entry in entries if key not in entry]
            if missing:
                raise ConfigError(f"{path}: {len(missing)} entries have no {key!r} (first: {missing[0]!r}), which "
                                  f"{spec.name} trains on; write them with 'speechs2s {key}'")


def load_initial_weights(model, directory: str, name: str, rank: int = 0, partial: bool = False) -> None:
    """``trainer.init_from``: all weights of a checkpoint of the same model (``name``); from another
    model (e.g. a Transformer-TTS starting a FastSpeech), or with ``partial`` (``trainer.init_from_partial``),
    the tensors with the same name, counted in the log (so a model that gains a part, e.g. the copy
    mechanism of ``bias_phrases``, starts it fresh). A tensor of the same name but another shape (another
    ``reduction_factor`` or width) is an error unless ``partial``, which starts it fresh instead."""
    from speechs2s.checkpoint import read_config

    weights = read_weights(directory)
    if read_config(Path(directory))["model"]["name"] != name or partial:
        state = model.state_dict()
        mismatched = [key for key, value in weights.items() if key in state and state[key].shape != value.shape]
        if mismatched and not partial:
            key = mismatched[0]
            raise ConfigError(f"trainer.init_from: {len(mismatched)} tensor(s) of {directory} have another shape in this "
                              f"{name} model (first: {key}, {tuple(weights[key].shape)} there, {tuple(state[key].shape)} "
                              "here); match the sizes (e.g. model.options.reduction_factor), or set "
                              "trainer.init_from_partial=true to start those tensors fresh")
        weights = {key: value for key, value in weights.items() if key in state and key not in mismatched}
        if not weights:
            raise ConfigError(f"trainer.init_from: {directory} shares no weights with this {name} model")
        model.load_state_dict(weights, strict=False)
        if rank == 0:
            parts = ", ".join(sorted({key.split(".")[0] for key in weights}))
            fresh = f"; {len(mismatched)} of another shape start fresh" if mismatched else ""
            new = sorted({key.split(".")[0] for key in state if key not in weights and key not in mismatched})
            fresh += f"; new: {', '.join(new)}" if new else ""
            print(f"init_from {directory}: {len(weights)} of this model's {len(state)} tensors ({parts}){fresh}",
                  file=sys.stderr)
        return
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:  # another size, or tensors it lacks
        raise ConfigError(f"trainer.init_from: {directory} does not fit this model "
                          f"({' '.join(str(error).split())[:200]}); set trainer.init_from_partial=true "
                          "to start the tensors that do not fit fresh") from None


def prepare_tokenizer(config: TrainConfig, train_entries: list[dict], rank: int, resume: bool):
    """The tokenizer at ``data.tokenizer.path``, or one built from the training transcripts and
    saved as ``out_dir/tokenizer.json`` (by rank 0; reused on ``--resume``)."""
    from speechs2s.text.tokenizers import Tokenizer, build_tokenizer

    section = config.data.tokenizer
    if section.path:
        return Tokenizer.load(section.path)
    if config.trainer.init_from:  # the initial weights only fit their own tokenizer
        return Tokenizer.load(Path(config.trainer.init_from) / "tokenizer.json")
    path = Path(config.trainer.out_dir) / "tokenizer.json"
    if rank == 0 and not (resume and path.exists()):
        texts = [entry["text"] for entry in train_entries if isinstance(entry.get("text"), str)]
        tokenizer = build_tokenizer(section.kind, texts, **section.options)
        path.parent.mkdir(parents=True, exist_ok=True)
        tokenizer.save(path)
    barrier()
    return Tokenizer.load(path)


def build_datasets(config: TrainConfig, train_entries: list[dict], tokenizer, features):
    """``(train_set, valid_set)`` of the model's task; augmentation applies to the training set only."""
    from speechs2s.models import model_spec

    data, seed, task = config.data, config.trainer.seed, model_spec(config.model.name).task
    if not task.audio:  # text only (language models)
        return task.dataset([entry["text"] for entry in train_entries], tokenizer), task.dataset(data.valid, tokenizer)
    if not task.text:  # audio only (vocoders)
        return task.dataset(train_entries, features, seed=seed), task.dataset(data.valid, features, seed=seed)
    train_set = task.dataset(train_entries, tokenizer, features, transform=data.spec_augment,
                             speed_perturb=data.speed_perturb, seed=seed, cache_dir=data.feature_cache,
                             channel_augment=data.channel_augment)
    return train_set, task.dataset(data.valid, tokenizer, features, seed=seed, cache_dir=data.feature_cache)


def set_feature_stats(model: nn.Module, config: TrainConfig, entries: list[dict], features) -> None:
    """Mean and std of the training features into the model (``load_config`` checked that it has them)."""
    from speechs2s.audio import compute_stats

    mean, std = compute_stats(entries, features, max_files=STATS_MAX_FILES)
    model.set_feature_stats(mean, std)


# ---------------------------------------------------------------------------------------------
# The loop


class Trainer:
    """Trains ``model`` on ``train_set`` (a map-style dataset with ``lengths`` in frames for
    bucketing; items are batched by ``collate``, which may return None for an unusable batch).

    ``checkpoint_config`` is written as each checkpoint's ``config.json`` (``task``, ``model`` with
    its ``name``, ``features``); ``tokenizer`` (or None) as its ``tokenizer.json``. ``placement``:
    from :func:`setup_distributed` (called here when not given).
    Random choices of the datasets (augmentation) must come from their own per-item generators
    (see :mod:`speechs2s.data.datasets`): the loop leaves the global RNGs to the model.
    """

    def __init__(self, config: TrainConfig, model: nn.Module, train_set: Dataset, valid_set: Dataset,
                 collate: Callable, checkpoint_config: dict, tokenizer=None, placement: "Placement | None" = None):
        from speechs2s.data.sampler import BucketBatchSampler

        self.config, self.checkpoint_config, self.tokenizer = config, checkpoint_config, tokenizer
        placement = placement or setup_distributed(config.trainer.device)
        self.rank, self.world_size, self.device = placement.rank, placement.world_size, placement.device
        self.out_dir = Path(config.trainer.out_dir)
        self.module = model.to(self.device)
        if hasattr(model, "set_tokenizer"):  # ASR models count word errors with it (MWER training)
            model.set_tokenizer(tokenizer)
        self.model = self.module
        if self.world_size > 1:
            device_ids = [self.device] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.module, device_ids=device_ids)
        self.optimizers, self.schedulers, self.grad_clips = {}, {}, {}
        for name, params in parameter_groups(self.module, config.optim).items():
            optim = dataclasses.replace(config.optim, **config.optim.groups.get(name, {}))
            self.optimizers[name] = torch.optim.AdamW(params, lr=optim.lr, betas=tuple(optim.betas),
                                                      weight_decay=optim.weight_decay)
            self.schedulers[name] = build_scheduler(self.optimizers[name], optim.schedule, optim.warmup_steps,
                                                    config.trainer.max_steps)
            self.grad_clips[name] = optim.grad_clip if optim.grad_clip > 0 else math.inf
        self.amp_dtype = amp_dtype(config.trainer.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

        seed = config.trainer.seed
        self.train_set = train_set
        self.collate = collate
        self.sampler = BucketBatchSampler(train_set.lengths, config.data.max_frames, shuffle=True, seed=seed,
                                          num_replicas=self.world_size, rank=self.rank)
        if len(self.sampler) == 0:
            raise ConfigError("data.train: the training set is empty")
        self.valid_set = valid_set
        self.valid_sampler = BucketBatchSampler(valid_set.lengths, config.data.max_frames, shuffle=False,
                                                num_replicas=1, rank=0)

        self.step = self.epoch = self.position = 0  # optimizer steps; batches consumed this epoch
        self.skipped_steps = self.skipped_batches = self.consecutive_skips = 0
        self.valid_losses: dict[str, float] = {}  # step checkpoint name -> its validation loss
        self.best_loss = math.inf
        self.last_valid: tuple[int, float] | None = None  # (step, loss)
        self.writer = None
        self.window = defaultdict(float)  # sums of the values logged since the last TensorBoard write
        self.window_steps, self.window_start = 0, time.perf_counter()

    # -- main loop -------------------------------------------------------------------------------

    def fit(self, resume: bool = False) -> Path:
        """Train to ``trainer.max_steps``; returns ``out_dir/final`` (or the step checkpoint saved
        when SIGINT/SIGTERM stopped the run)."""
        cfg = self.config.trainer
        if resume:
            self.restore()
        from torch.utils.tensorboard import SummaryWriter
        from tqdm import tqdm

        progress = None
        if self.rank == 0:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _remove_stale_temporaries(self.out_dir)
            self.writer = SummaryWriter(str(self.out_dir / "tensorboard"))
            self._say(f"training {sum(p.numel() for p in self.module.parameters()) / 1e6:.2f} M parameters on "
                      f"{self.device}{f' x {self.world_size}' if self.world_size > 1 else ''}, "
                      f"amp {self.amp_dtype or 'off'}, from step {self.step} to {cfg.max_steps}")
            if sys.stderr.isatty():  # in a log file, _record writes a line every log_every steps instead
                progress = tqdm(total=cfg.max_steps, initial=self.step, desc="train", dynamic_ncols=True)
        self.module.train()
        batches = self._batches()
        deadline = time.monotonic() + 60 * cfg.max_minutes if cfg.max_minutes else None
        try:
            with StopOnSignal() as stop:
                while self.step < cfg.max_steps:
                    values, stop_requested = self._train_step(batches, stop)
                    stepped = values is not None
                    last = stepped and (self.step == cfg.max_steps or self._past(deadline))
                    if stepped:
                        self._record(values, progress)
                        if self.step % cfg.valid_every == 0 or last:
                            self.validate()
                    if stop_requested or (stepped and (self.step % cfg.ckpt_every == 0 or last)):
                        path = self.save()
                    if last:
                        if self.step < cfg.max_steps:
                            self._say(f"trainer.max_minutes: {cfg.max_minutes:g} min reached at step {self.step}")
                        break
                    if stop_requested:
                        self._say(f"stopped by {stop.requested} at step {self.step}: saved {path}; "
                                  "continue with --resume")
                        return path
        finally:
            batches.close()
            if progress is not None:
                progress.close()
            if self.writer is not None:
                self.writer.close()
        return self.finish()

    def _past(self, deadline: float | None) -> bool:
        """Whether the time budget is spent (decided by rank 0, so that every rank stops at the same step)."""
        if deadline is None:
            return False
        late = torch.tensor(float(time.monotonic() > deadline), device=self.device)
        if self.world_size > 1:
            dist.broadcast(late, 0)
        return bool(late)

    def _batches(self):
        """Endless training batches; ``epoch`` and ``position`` count the ones handed out."""
        cfg = self.config
        while True:
            self.sampler.load_state_dict({"seed": cfg.trainer.seed, "epoch": self.epoch, "position": self.position})
            if hasattr(self.train_set, "set_epoch"):
                self.train_set.set_epoch(self.epoch)
            whole_epoch, usable = self.position == 0, False
            for batch in self._loader(self.train_set, self.sampler):
                self.position += 1
                usable = usable or batch is not None
                yield batch
            if whole_epoch and not usable:  # would loop forever over unreadable items
                raise SpeechS2SError(f"data.train: none of the audio in {cfg.data.train} could be read "
                                     "(each file's reason is logged above)")
            self.epoch, self.position = self.epoch + 1, 0

    def _loader(self, dataset: Dataset, sampler) -> DataLoader:
        workers = self.config.data.num_workers
        return DataLoader(dataset, batch_sampler=sampler, collate_fn=self.collate, num_workers=workers,
                          pin_memory=self.device.type == "cuda", worker_init_fn=_ignore_signals,
                          generator=torch.Generator())  # leaves the global RNG alone: resumes are exact

    def _train_step(self, batches, stop: "StopOnSignal") -> tuple[dict | None, bool]:
        """One optimizer step over ``accum_steps`` batches. Returns the step's logged values (None
        if skipped for a non-finite loss or gradient) and whether any rank was asked to stop."""
        accum = self.config.optim.accum_steps
        for optimizer in self.optimizers.values():
            optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for micro in range(accum):
            batch = next(batches)
            while batch is None:  # every item of it was unreadable (the dataset logged which)
                self.skipped_batches += 1
                batch = next(batches)
            sync = micro == accum - 1 or self.world_size == 1
            with contextlib.nullcontext() if sync else self.model.no_sync():
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    outputs = self.model(to_device(batch, self.device))
                self.scaler.scale(outputs["loss"].float() / accum).backward()
            for key, value in outputs.items():
                totals[key] = totals.get(key, 0) + value.detach().float() / accum
        keys = sorted(totals)
        stop_vote = torch.tensor(float(bool(stop.requested)), device=self.device)
        shared = torch.stack([totals[key] for key in keys] + [stop_vote])
        if self.world_size > 1:
            dist.all_reduce(shared)
            shared[:-1] /= self.world_size
        *means, stop_votes = shared.tolist()
        values = dict(zip(keys, means, strict=True))

        grad_norms = {}
        for name, optimizer in self.optimizers.items():  # each group clipped on its own norm
            self.scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            grad_norms[name] = float(nn.utils.clip_grad_norm_(params, self.grad_clips[name]))
        grad_norm = math.sqrt(sum(norm ** 2 for norm in grad_norms.values()))
        if math.isfinite(values["loss"]) and math.isfinite(grad_norm):
            for name, optimizer in self.optimizers.items():
                self.scaler.step(optimizer)
                self.schedulers[name].step()
            self.step += 1
            self.consecutive_skips = 0
            values["grad_norm"] = grad_norm
            if len(grad_norms) > 1:
                values |= {f"grad_norm_{name}": norm for name, norm in grad_norms.items()}
        else:
            self.skipped_steps += 1
            self.consecutive_skips += 1
            reason = (f"fp16 gradient overflow, loss scale lowered to {self.scaler.get_scale() / 2:g}"
                      if self.scaler.is_enabled() and math.isfinite(values["loss"])
                      else f"loss {values['loss']}, grad norm {grad_norm}")
            self._say(f"step {self.step + 1}: skipped ({reason}); {self.skipped_steps} skipped so far", warning=True)
            if self.consecutive_skips > MAX_CONSECUTIVE_SKIPS:
                raise SpeechS2SError(f"training diverged: {self.consecutive_skips} consecutive steps with a non-finite "
                                     f"loss or gradient at step {self.step}; lower optim.lr or set trainer.amp=off")
            values = None
        self.scaler.update()
        return values, stop_votes > 0

    # -- validation ------------------------------------------------------------------------------

    @torch.no_grad()
    def validate(self) -> float | None:
        """Mean validation loss (and parts, and ``model.validation_extras`` on the first batch),
        computed by rank 0 without touching the training RNG streams."""
        if self.rank != 0:
            return None
        self.module.eval()
        totals, count, extras, figures = defaultdict(float), 0, {}, {}
        with preserved_rng():
            for batch in self._loader(self.valid_set, self.valid_sampler):
                if batch is None:
                    continue
                batch = to_device(batch, self.device)
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    outputs = self.module(batch)
                size = len(batch["ids"])
                for key, value in outputs.items():
                    totals[key] += float(value) * size
                if count == 0 and hasattr(self.module, "validation_extras"):
                    extras, figures = self.module.validation_extras(batch)
                count += size
        self.module.train()
        if count == 0:
            self._say("validation skipped: no readable validation items", warning=True)
            return None
        metrics = {key: value / count for key, value in totals.items()} | extras
        loss = metrics["loss"]
        self.last_valid = (self.step, loss)
        for key, value in metrics.items():
            self.writer.add_scalar(f"valid/{key}", value, self.step)
        for key, figure in figures.items():
            self.writer.add_figure(f"valid/{key}", figure, self.step)  # closes the figure
        improved = loss < self.best_loss
        self._say(f"step {self.step}: valid " + " ".join(f"{k} {v:.4g}" for k, v in metrics.items())
                  + (" (best)" if improved else ""))
        if improved:
            self.best_loss = loss
            save_checkpoint(self.out_dir / "best", self.module, self.checkpoint_config, self.tokenizer,
                            extra_json={"metrics.json": {"step": self.step, **metrics}})
        return loss

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self) -> Path:
        """Write ``checkpoints/step-XXXXXX`` with the train state, point ``last`` at it and prune."""
        rng = rng_state()
        rngs = [rng]
        if self.world_size > 1:  # every rank's RNG, so each resumes its own streams
            rngs = [None] * self.world_size
            dist.all_gather_object(rngs, rng)
        name = f"step-{self.step:06d}"
        path = self.out_dir / "checkpoints" / name
        if self.rank != 0:
            return path
        if self.last_valid is not None and self.last_valid[0] == self.step:
            self.valid_losses[name] = self.last_valid[1]
        train_state = {
            "step": self.step, "epoch": self.epoch, "position": self.position,
            "skipped_steps": self.skipped_steps, "skipped_batches": self.skipped_batches,
            "best_loss": self.best_loss, "valid_losses": self.valid_losses,
            "optimizer": {name: optimizer.state_dict() for name, optimizer in self.optimizers.items()},
            "scheduler": {name: scheduler.state_dict() for name, scheduler in self.schedulers.items()},
            "scaler": self.scaler.state_dict(), "rng": rngs,
        }
        metrics = {"step": self.step, "valid_loss": self.valid_losses.get(name)}
        save_checkpoint(path, self.module, self.checkpoint_config, self.tokenizer,
                        extra_json={"metrics.json": metrics}, train_state=train_state)
        write_text_atomic(self.out_dir / "last", f"checkpoints/{name}\n")
        self._prune()
        return path

    def restore(self) -> None:
        """Continue from the checkpoint ``out_dir/last`` points at."""
        pointer = self.out_dir / "last"
        if not pointer.is_file():
            raise CheckpointError(f"{self.out_dir}: nothing to resume (no 'last' checkpoint pointer)")
        path = self.out_dir / pointer.read_text().strip()
        weights = read_weights(path, self.device)
        try:
            self.module.load_state_dict(weights)
        except RuntimeError as error:
            raise CheckpointError(f"{path}: weights do not match this model: {str(error).splitlines()[0]}") from None
        state = load_train_state(path)
        if "param_groups" in state["optimizer"]:  # saved before parameter groups: one optimizer
            state["optimizer"], state["scheduler"] = {"all": state["optimizer"]}, {"all": state["scheduler"]}
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizer"][name])
            self.schedulers[name].load_state_dict(state["scheduler"][name])
        self.scaler.load_state_dict(state["scaler"])
        for key in ("step", "epoch", "position", "skipped_steps", "skipped_batches", "best_loss", "valid_losses"):
            setattr(self, key, state[key])
        if len(state["rng"]) == self.world_size:
            set_rng_state(state["rng"][self.rank])
        else:
            self._say(f"resuming with {self.world_size} processes instead of {len(state['rng'])}: "
                      "random streams restart (the run will not match an uninterrupted one exactly)", warning=True)
            seed_everything(self.config.trainer.seed + self.step + self.rank)
        self._say(f"resumed from {path} (step {self.step}, epoch {self.epoch}, batch {self.position})")

    def step_checkpoints(self) -> list[Path]:
        """Complete step checkpoints, oldest first (temporary folders never match)."""
        folder = self.out_dir / "checkpoints"
        found = [p for p in folder.iterdir() if STEP_DIR.fullmatch(p.name)] if folder.is_dir() else []
        return sorted(found, key=lambda p: int(STEP_DIR.fullmatch(p.name).group(1)))

    def _prune(self) -> None:
        """Keep the last ``average_last`` step checkpoints and the ``keep_best`` by validation loss."""
        cfg = self.config.trainer
        steps = self.step_checkpoints()
        keep = set(steps[-max(1, cfg.average_last):])
        scored = sorted((self.valid_losses[p.name], p.name) for p in steps if p.name in self.valid_losses)
        keep |= {p for p in steps if p.name in {name for _, name in scored[:cfg.keep_best]}}
        for path in steps:
            if path not in keep:
                shutil.rmtree(path)
                self.valid_losses.pop(path.name, None)

    def finish(self) -> Path:
        """Write ``out_dir/final``: the average of the last ``average_last`` step checkpoints."""
        final = self.out_dir / "final"
        if self.rank == 0:
            recent = self.step_checkpoints()[-max(1, self.config.trainer.average_last):]
            weights = average_checkpoints(recent) if len(recent) > 1 else self.module.state_dict()
            metrics = {"step": self.step, "averaged": [p.name for p in recent], "best_valid_loss": self.best_loss,
                       "skipped_steps": self.skipped_steps, "skipped_batches": self.skipped_batches}
            save_checkpoint(final, weights, self.checkpoint_config, self.tokenizer,
                            extra_json={"metrics.json": metrics})
            self._say(f"done: {final} (average of {len(recent)} checkpoint(s)); "
                      f"best validation loss {self.best_loss:.4g}")
        barrier()
        return final

    # -- logging ---------------------------------------------------------------------------------

    def _record(self, values: dict[str, float], progress) -> None:
        """Show a step's values on the progress bar; every ``log_every`` steps write their means
        (and the learning rate, speed, skipped steps, loss scale) to TensorBoard."""
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{values['loss']:.3f}")
        for key, value in values.items():
            self.window[key] += value
        self.window_steps += 1
        if self.step % self.config.trainer.log_every or self.writer is None:
            return
        now = time.perf_counter()
        scalars = {key: total / self.window_steps for key, total in self.window.items()}
        scalars |= {"lr" if name == "all" else f"lr_{name}": scheduler.get_last_lr()[0]
                    for name, scheduler in self.schedulers.items()}
        scalars |= {"skipped_steps": self.skipped_steps,
                    "steps_per_second": self.window_steps / (now - self.window_start)}
        if self.scaler.is_enabled():
            scalars["loss_scale"] = self.scaler.get_scale()
        for key, value in scalars.items():
            self.writer.add_scalar(f"train/{key}", value, self.step)
        if progress is None:
            self._say(f"step {self.step}: " + " ".join(f"{key} {value:.4g}" for key, value in scalars.items()))
        self.window.clear()
        self.window_steps, self.window_start = 0, now

    def _say(self, message: str, warning: bool = False) -> None:
        if self.rank == 0:
            from tqdm import tqdm

            tqdm.write(("warning: " if warning else "") + message, file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# Helpers: devices, DDP, AMP, RNG, signals


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where this process trains: its ``rank`` of ``world_size`` processes, on ``device``."""

    rank: int
    world_size: int
    device: torch.device


def parameter_groups(model: nn.Module, optim) -> dict[str, list[nn.Parameter]]:
    """The model's named parameter groups (``model.parameter_groups()``, e.g. a GAN's generator and
    discriminator), each trained by its own optimizer with ``optim.groups[name]`` overrides; else one
    group, ``"all"``."""
    groups = model.parameter_groups() if hasattr(model, "parameter_groups") else {"all": list(model.parameters())}
    unknown = sorted(set(optim.groups) - set(groups))
    if unknown:
        raise ConfigError(f"optim.groups: {', '.join(unknown)} is not a parameter group of this model "
                          f"(it has {', '.join(groups)})")
    return groups


def setup_distributed(device_name: str | None) -> Placement:
    """This process's :class:`Placement`; joins the process group when launched by torchrun
    (``WORLD_SIZE`` > 1): NCCL on CUDA (one GPU per ``LOCAL_RANK``), gloo on CPU. Called once per run."""
    from speechs2s.utils import select_device

    world_size = int(os.environ.get("WORLD_SIZE", 1))
    if world_size == 1:
        return Placement(0, 1, select_device(device_name))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device_name in (None, "cuda") and torch.cuda.is_available():
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    else:
        device = select_device(device_name)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Placement(dist.get_rank(), world_size, device)


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``trainer.amp`` on ``device``; None = full precision (always on CPU)."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def to_device(batch: dict, device: torch.device) -> dict:
    return {key: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
            for key, value in batch.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, NumPy, torch CPU (and initialised CUDA) RNG states; tensors and JSON values only."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


@contextlib.contextmanager
def preserved_rng():
    """Run a block without advancing any global RNG stream."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


class StopOnSignal:
    """While active, SIGINT/SIGTERM set ``requested`` (the signal's name) instead of killing the
    process, so the loop can finish its step and save; a second signal interrupts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self):
        self.requested, self.previous = None, {}
        if threading.current_thread() is threading.main_thread():
            self.previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        if threading.current_thread() is threading.main_thread():
            from tqdm import tqdm

            tqdm.write(f"{self.requested}: finishing the current step, then saving (send again to abort)",
                       file=sys.stderr)

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _ignore_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGINT/SIGTERM to the main process, which shuts them down."""
    for sig in StopOnSignal.SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _remove_stale_temporaries(out_dir: Path) -> None:
    """Delete half-written checkpoint folders left by a killed writer (never considered valid)."""
    for folder in (out_dir, out_dir / "checkpoints"):
        if folder.is_dir():
            for path in folder.iterdir():
                if re.search(r"\.(tmp|old)-", path.name):
                    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
