"""Checkpoints: a directory of ``model.safetensors`` + ``config.json`` + ``tokenizer.json``.

Loading never unpickles: tensors come from safetensors, everything else from JSON. Trainer state
for ``--resume`` (optimizer, scheduler, scaler, RNGs, sampler position, step) is stored beside the
model as ``train_state.safetensors`` (every tensor) + ``train_state.json`` (the rest, with
``{"__tensor__": name}`` placeholders), so it is pickle-free too.

Writes are atomic: files go to ``<dir>.tmp-XXXX``, are fsynced, and the folder is renamed into
place; a writer killed at any moment leaves either the previous checkpoint or the new one.
"""
import contextlib
import importlib.resources
import json
import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn

from speechs2s.errors import CheckpointError

FORMAT_VERSION = 1
BUNDLED_DIR = Path(str(importlib.resources.files("speechs2s.pretrained")))
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


# ---------------------------------------------------------------------------------------------
# Saving


def save_checkpoint(path: str | Path, model: nn.Module | dict[str, torch.Tensor], config: dict,
                    tokenizer=None, extra_json: dict[str, Any] | None = None,
                    train_state: dict | None = None) -> Path:
    """Atomically write checkpoint directory ``path`` (replacing an existing one).

    ``model``: a module or its state dict. ``config``: ``{"task", "model": {"name", ...}, "features", ...}``
    (``format_version`` is added). ``extra_json``: ``{"file.json": json-able}`` written alongside.
    ``train_state``: nested dicts/lists of tensors and JSON values (see :func:`load_train_state`).
    """
    state = model.state_dict() if isinstance(model, nn.Module) else model
    with atomic_directory(path) as tmp:
        _write(tmp / "model.safetensors", save(_cpu_tensors(state)))
        _write(tmp / "config.json", _json_bytes({"format_version": FORMAT_VERSION, **config}))
        if tokenizer is not None:
            _write(tmp / "tokenizer.json", _json_bytes(tokenizer.to_dict()))
        for name, value in (extra_json or {}).items():
            _write(tmp / name, _json_bytes(value))
        if train_state is not None:
            skeleton, tensors = flatten_state(train_state)
            _write(tmp / "train_state.safetensors", save(_cpu_tensors(tensors)))
            _write(tmp / "train_state.json", _json_bytes(skeleton))
    return Path(path)


@contextlib.contextmanager
def atomic_directory(path: str | Path):
    """Yield a temporary sibling folder; on success it replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        _fsync(tmp)
        if path.exists():  # a directory can only be renamed over an empty one: move the old aside
            old = Path(tempfile.mkdtemp(prefix=f"{path.name}.old-", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace a small text file (e.g. the ``last`` pointer) atomically."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    _write(tmp, text.encode())
    os.replace(tmp, path)
    _fsync(path.parent)


def _write(path: Path, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())


def _fsync(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json_bytes(value) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True).encode()


def _cpu_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached contiguous CPU copies; tied weights become separate entries (safetensors forbids aliasing)."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous() for name, tensor in tensors.items()}


# ---------------------------------------------------------------------------------------------
# Pickle-free nested state: tensors -> safetensors, the rest -> JSON


def flatten_state(state: Any) -> tuple[Any, dict[str, torch.Tensor]]:
    """Split nested dicts/lists/tuples into a JSON skeleton and a flat ``{name: tensor}`` dict.

    Tensors become ``{"__tensor__": name}``; tuples ``{"__tuple__": [...]}``; dicts with non-string
    keys (e.g. optimizer state, keyed by parameter index) ``{"__items__": [[key, value], ...]}``.
    """
    tensors: dict[str, torch.Tensor] = {}

    def encode(value):
        if isinstance(value, torch.Tensor):
            name = str(len(tensors))
            tensors[name] = value
            return {"__tensor__": name}
        if isinstance(value, dict):
            if all(isinstance(key, str) for key in value):
                return {key: encode(item) for key, item in value.items()}
            return {"__items__": [[key, encode(item)] for key, item in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [encode(item) for item in value]}
        if isinstance(value, list):
            return [encode(item) for item in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot store {type(value).__name__} in a checkpoint")

    return encode(state), tensors


def unflatten_state(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten_state`."""
    if isinstance(skeleton, list):
        return [unflatten_state(item, tensors) for item in skeleton]
    if not isinstance(skeleton, dict):
        return skeleton
    if "__tensor__" in skeleton:
        return tensors[skeleton["__tensor__"]]
    if "__tuple__" in skeleton:
        return tuple(unflatten_state(item, tensors) for item in skeleton["__tuple__"])
    if "__items__" in skeleton:
        return {key: unflatten_state(item, tensors) for key, item in skeleton["__items__"]}
    return {key: unflatten_state(item, tensors) for key, item in skeleton.items()}


# ---------------------------------------------------------------------------------------------
# Loading


def resolve_checkpoint(name_or_dir: str | Path, task: str | None = None) -> Path:
    """A checkpoint directory, a training ``out_dir`` (-> its ``final/``, else the ``last`` step)
    or a bundled model name (``"default"`` -> ``speechs2s/pretrained/<task>-default``)."""
    path = Path(name_or_dir)
    if path.is_dir():
        if not (path / "config.json").exists():
            if (path / "final" / "config.json").exists():
                return path / "final"
            if (path / "last").is_file():
                return path / (path / "last").read_text().strip()
        return path
    name = str(name_or_dir)
    if name == "default":
        if task is None:
            raise CheckpointError("'default' names a bundled model per task: give the task (asr, tts, vocoder)")
        name = f"{task}-default"
    bundled = BUNDLED_DIR / name
    if "/" not in name and bundled.is_dir():
        return bundled
    available = [model.name for model in list_models() if task in (None, model.task)]
    if task == "vocoder":  # the one vocoder that needs no checkpoint (speechs2s.vocoder.load_vocoder)
        available.insert(0, "griffin-lim")
    raise CheckpointError(f"{name_or_dir}: no such checkpoint directory or bundled model "
                          f"(available: {', '.join(available) or 'none'}; see speechs2s models)")


@dataclass
class ModelInfo:
    """One model ``speechs2s models`` lists."""

    name: str  # what to pass as --model: a bundled name or a folder
    task: str  # asr | tts | vocoder ("?" when the config is unreadable)
    architecture: str  # the config's model name, e.g. transformer_asr
    parameters: int  # tensor elements in model.safetensors
    size_bytes: int  # model.safetensors on disk
    summary: str  # first line of the model card (README.md), or why the checkpoint is unreadable


def list_models(folders: list[str | Path] = ("exp",)) -> list[ModelInfo]:
    """The bundled models, then every checkpoint under ``folders`` (missing ones are skipped); a training
    ``out_dir`` counts once, as the checkpoint ``--model out_dir`` loads."""
    found = [(path.name, path) for path in sorted(BUNDLED_DIR.iterdir()) if (path / "config.json").is_file()]
    for folder in folders:
        for root, subfolders, files in os.walk(folder):
            if "last" in files or "final" in subfolders or {"config.json", "model.safetensors"} <= set(files):
                found.append((root, Path(root)))
                subfolders.clear()
            subfolders.sort()
    return [_model_info(name, path) for name, path in found]


def _model_info(name: str, path: Path) -> ModelInfo:
    try:
        directory = resolve_checkpoint(path)
        config = read_config(directory)
        weights = directory / "model.safetensors"
        with safe_open(weights, "pt") as tensors:
            parameters = sum(math.prod(tensors.get_slice(key).get_shape()) for key in tensors.keys())
    except (CheckpointError, SafetensorError, OSError) as error:
        return ModelInfo(name, "?", "?", 0, 0, f"unreadable: {error}")
    card = directory / "README.md"
    title = card.read_text(encoding="utf-8").splitlines()[0].lstrip("# ") if card.is_file() else ""
    summary = title.removeprefix(f"{directory.name}: ")
    return ModelInfo(name, config.get("task", "?"), config["model"].get("name", "?"), parameters,
                     weights.stat().st_size, summary)


def read_config(directory: Path) -> dict:
    """``config.json`` of a checkpoint directory, checked for a supported ``format_version``."""
    config = _read_json(directory / "config.json")
    version = config.get("format_version") if isinstance(config, dict) else None
    if not isinstance(version, int) or version > FORMAT_VERSION or "model" not in config:
        raise CheckpointError(f"{directory / 'config.json'}: not a speechs2s checkpoint config "
                              f"(format_version {version!r}, this version reads <= {FORMAT_VERSION})")
    return config


def load_checkpoint(name_or_dir: str | Path, device: str | torch.device | None = None,
                    task: str | None = None):
    """Load ``(model in eval mode, tokenizer or None, config dict)``; never unpickles.

    With ``task`` (``"asr"``, ``"tts"``, ``"vocoder"``), the one kind check of every loader: the
    checkpoint's model must be registered for that task (:data:`speechs2s.models.MODELS`), and a
    model of a task with text must come with its ``tokenizer.json``."""
    from speechs2s.errors import ConfigError
    from speechs2s.models import model_spec

    directory = resolve_checkpoint(name_or_dir, task)
    config = read_config(directory)
    options = dict(config["model"])
    try:
        spec = model_spec(options.pop("name", None))
    except ConfigError as error:
        raise CheckpointError(f"{directory / 'config.json'}: {error}") from None
    if task is not None and spec.task.name != task:
        raise CheckpointError(f"{name_or_dir}: holds a {spec.name} model for task {spec.task.name}, not {task}")
    weights = read_weights(directory)
    has_tokenizer = (directory / "tokenizer.json").exists()
    if task is not None and spec.task.text and not has_tokenizer:
        raise CheckpointError(f"{name_or_dir}: tokenizer.json is missing")
    model = spec.build(options)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise CheckpointError(f"{directory}: weights do not match the config: {str(error).splitlines()[0]}") from None
    model.to(device or "cpu").eval()
    tokenizer = None
    if has_tokenizer:
        from speechs2s.text.tokenizers import Tokenizer

        tokenizer = Tokenizer.from_dict(_read_json(directory / "tokenizer.json"))
    return model, tokenizer, config


def read_weights(directory: str | Path, device: str | torch.device | None = None) -> dict[str, torch.Tensor]:
    """The ``model.safetensors`` state dict of a checkpoint; refuses pickled weight files."""
    directory = Path(directory)
    path = directory / "model.safetensors"
    if not path.exists():
        pickles = sorted(p.name for p in directory.glob("*") if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise CheckpointError(f"{directory}: refusing to load pickle file {pickles[0]} (it can run arbitrary "
                                  "code); speechs2s checkpoints store weights in model.safetensors")
        raise CheckpointError(f"{directory}: not a checkpoint (model.safetensors is missing)")
    return _load_tensors(path, device)


def load_train_state(directory: str | Path, device: str | torch.device | None = None) -> dict:
    """The nested train state saved by :func:`save_checkpoint` (tensors on ``device``)."""
    directory = Path(directory)
    skeleton = _read_json(directory / "train_state.json")
    return unflatten_state(skeleton, _load_tensors(directory / "train_state.safetensors", device))


def _load_tensors(path: Path, device) -> dict[str, torch.Tensor]:
    if not path.exists():
        raise CheckpointError(f"{path}: missing")
    try:
        return load_file(path, device=str(device or "cpu"))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: corrupt safetensors file ({error})") from None


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: unreadable JSON ({error})") from None


# ---------------------------------------------------------------------------------------------
# Averaging


def average_checkpoints(directories: list[str | Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the weights of checkpoints of one model (float tensors averaged in
    float64; integer buffers such as step counters are taken from the last checkpoint)."""
    if not directories:
        raise CheckpointError("average: no checkpoints given")
    states = [read_weights(d) for d in directories]
    for directory, state in zip(directories[1:], states[1:], strict=True):
        if state.keys() != states[0].keys() or any(state[k].shape != states[0][k].shape for k in state):
            raise CheckpointError(f"{directory}: weights differ in names or shapes from {directories[0]}")
    averaged = {}
    for name, last in states[-1].items():
        if last.is_floating_point():
            total = sum(state[name].double() for state in states)
            averaged[name] = (total / len(states)).to(last.dtype)
        else:
            averaged[name] = last.clone()
    return averaged


def save_average(out: str | Path, directories: list[str | Path], half: bool = False, inference: bool = False) -> Path:
    """Average checkpoints into ``out`` with the config and tokenizer of the last one; ``half``
    stores the float weights as float16 (half the size; loading casts them back to float32);
    ``inference`` leaves out what only training uses (:func:`inference_checkpoint`)."""
    last = resolve_checkpoint(directories[-1])
    config = read_config(last)
    config.pop("format_version")
    tokenizer = _read_json(last / "tokenizer.json") if (last / "tokenizer.json").exists() else None
    averaged = average_checkpoints([resolve_checkpoint(d) for d in directories])
    if inference:
        config["model"], averaged = inference_checkpoint(config["model"], averaged)
    if half:
        averaged = {name: value.half() if value.is_floating_point() else value for name, value in averaged.items()}
    extra = {"averaged_from.json": [str(d) for d in directories]}
    if tokenizer is not None:
        extra["tokenizer.json"] = tokenizer
    return save_checkpoint(out, averaged, config, extra_json=extra)


def inference_checkpoint(model: dict, weights: dict[str, torch.Tensor]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A checkpoint's ``model`` config and ``weights`` for synthesis or recognition only: the model class's
    ``inference_options(options)`` set (a FastSpeech's ``adversarial_weight`` 0: no mel discriminator) and the
    weights the model so built lacks dropped. The result loads as any checkpoint, but cannot resume training."""
    from speechs2s.models import model_spec

    spec = model_spec(model["name"])
    inference_options = getattr(spec.model, "inference_options", None)
    model = {**model, **(inference_options(model) if inference_options else {})}
    with torch.device("meta"):  # the tensor names alone: nothing is allocated
        kept = spec.build({key: value for key, value in model.items() if key != "name"}).state_dict().keys()
    return model, {name: value for name, value in weights.items() if name in kept}
