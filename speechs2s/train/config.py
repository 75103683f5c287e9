"""Training configuration: typed dataclasses <-> YAML, with ``--set a.b=value`` overrides.

Every problem (YAML syntax, unknown key, wrong type, a model option its config rejects, a task
that is not the model's, missing manifest) raises :class:`ConfigError` naming the full dotted key,
before any manifest is read or anything is written::

    config = load_config("configs/asr_transformer_tiny.yaml", ["optim.lr=5e-4", "trainer.max_steps=2000"])
"""
import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from speechs2s.data.augment import ChannelAugment, SpecAugment
from speechs2s.errors import CheckpointError, ConfigError


@dataclass
class ModelSection:
    """``name`` is a key of ``speechs2s.models.MODELS``; ``options`` go to its config dataclass
    (``vocab_size``, ``sos_id``, ``n_mels`` and ``features`` are filled in from the tokenizer and
    features) and are checked against it like every other key."""

    name: str = "transformer_asr"
    options: dict = field(default_factory=dict)


@dataclass
class TokenizerSection:
    """Either ``path`` to an existing ``tokenizer.json``, or ``kind`` (char|phoneme|bpe) + ``options``
    to build one from the training transcripts."""

    kind: str = "char"
    options: dict = field(default_factory=dict)
    path: str | None = None


@dataclass
class DataSection:
    """Manifests (JSONL, see ``speechs2s.data.manifest``) and the input pipeline."""

    train: str = ""
    valid: str = ""
    tokenizer: TokenizerSection = field(default_factory=TokenizerSection)
    features: dict = field(default_factory=dict)  # FeatureConfig overrides of the task's defaults
    max_frames: int = 20000  # padded frames per batch (batch size x longest item)
    num_workers: int = 2
    speed_perturb: list[float] | None = None  # e.g. [0.9, 1.0, 1.1]; training set only
    spec_augment: SpecAugment | None = None  # SpecAugment options ({} = defaults); training set only
    channel_augment: ChannelAugment | None = None  # pitch, room, noise, telephone, codec ({} = defaults); ASR training set only
    feature_stats: bool = True  # compute mean/std over the training set -> model.set_feature_stats
    feature_cache: str | None = None  # folder keeping computed features of items without speed perturbation

    def __post_init__(self):
        _require_positive(self, "data", ["max_frames"])
        _require_positive(self, "data", ["num_workers"], allow_zero=True)


@dataclass
class OptimSection:
    """AdamW and the learning-rate schedule (``lr`` is the peak, reached after ``warmup_steps``)."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    warmup_steps: int = 1000
    schedule: Literal["noam", "cosine", "constant"] = "noam"
    grad_clip: float = 5.0  # max global grad norm; 0 disables clipping (the norm is still logged)
    accum_steps: int = 1  # micro-batches per optimizer step
    # per parameter group of a model that names them (a GAN vocoder: generator, discriminator), overrides of
    # lr, betas, weight_decay, warmup_steps, schedule, grad_clip; each group has its own optimizer, e.g.
    # {discriminator: {lr: 2.0e-4, grad_clip: 10.0}}
    groups: dict = field(default_factory=dict)

    def __post_init__(self):
        _require_positive(self, "optim", ["lr", "accum_steps"])
        _require_positive(self, "optim", ["warmup_steps", "weight_decay", "grad_clip"], allow_zero=True)
        for name, overrides in self.groups.items():  # each group's settings are checked as the section's own
            if not isinstance(overrides, dict) or set(overrides) & {"groups", "accum_steps"}:
                raise ConfigError(f"optim.groups.{name}: expected overrides of lr, betas, weight_decay, warmup_steps, "
                                  f"schedule or grad_clip, got {overrides!r}")
            try:
                group = _build(OptimSection, overrides, f"optim.groups.{name}.")
            except ConfigError as error:
                message = str(error)
                raise ConfigError(message if message.startswith("optim.groups.") else f"optim.groups.{name}: {message}") from None
            self.groups[name] = {key: getattr(group, key) for key in overrides}


@dataclass
class TrainerSection:
    """Loop control; steps are optimizer steps."""

    max_steps: int = 10000
    valid_every: int = 500
    ckpt_every: int = 500
    log_every: int = 50
    keep_best: int = 3  # step checkpoints kept by best valid loss (besides the last average_last)
    average_last: int = 5  # final model = average of the last N step checkpoints (1 = no averaging)
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # CUDA only: auto = bf16 if supported else fp16
    seed: int = 0
    out_dir: str = "exp/run"
    device: str | None = None  # default: cuda if available else cpu (under torchrun: cuda:LOCAL_RANK)
    max_minutes: float | None = None  # time budget: stop (validate, save, average) after this many minutes of training
    init_from: str | None = None  # checkpoint (folder, out_dir or bundled name) whose weights and tokenizer start a new run; of another model: the tensors of equal name
    init_from_partial: bool = False  # tensors of equal name but another shape, and ones the checkpoint lacks (a part the model gains, e.g. bias_phrases), start fresh

    def __post_init__(self):
        _require_positive(self, "trainer", ["max_steps", "valid_every", "ckpt_every", "log_every", "average_last"])
        _require_positive(self, "trainer", ["keep_best"], allow_zero=True)
        if self.max_minutes is not None:
            _require_positive(self, "trainer", ["max_minutes"])


@dataclass
class TrainConfig:
    task: Literal["asr", "tts", "vocoder", "lm"] | None = None  # the model's task; when given, it must agree
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path: str | Path, overrides: list[str] = (), check_files: bool = True) -> TrainConfig:
    """Read a training YAML, apply ``--set`` overrides (``"optim.lr=5e-4"``, values parsed as YAML)
    and validate it; relative manifest paths are kept as written (relative to the working dir)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config ({error.strerror})") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(error, 'problem', error)})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    for override in overrides:
        _apply_override(raw, override)
    config = from_dict(raw)
    if check_files:
        check_manifests(config)
    return config


# The resolved config (YAML + every --set) a run keeps in its out_dir, so that --resume needs neither.
SAVED_CONFIG = "config.yaml"


def save_config(config: TrainConfig, out_dir: str | Path) -> Path:
    """Write ``config`` as ``out_dir/config.yaml`` (atomically), the file :func:`training_config` resumes from."""
    from speechs2s.checkpoint import write_text_atomic

    path = Path(out_dir) / SAVED_CONFIG
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# The resolved config of this run; continue it with: speechs2s train THIS_FOLDER --resume\n"
    write_text_atomic(path, header + yaml.safe_dump(config.to_dict(), sort_keys=False))
    return path


def training_config(path: str | Path, overrides: list[str] = (), resume: bool = False) -> TrainConfig:
    """The config ``speechs2s train PATH`` runs. ``PATH`` is a YAML file or, with ``resume``, the out_dir
    of a run. Resuming, the config that run saved (with every ``--set`` it started with) replaces the
    YAML and ``overrides`` apply on top of it (e.g. ``trainer.max_steps=20000`` to train on)."""
    path = Path(path)
    if path.is_dir():
        if not resume:
            raise ConfigError(f"{path}: a folder; add --resume to continue the run in it, or give a YAML config")
        if not (path / SAVED_CONFIG).is_file():
            raise ConfigError(f"{path}: no {SAVED_CONFIG} in it (not a training out_dir, or one from before "
                              "runs saved their config: give its YAML and --set options again)")
        config = load_config(path / SAVED_CONFIG, overrides)
        config.trainer.out_dir = str(path)  # the folder may have moved since
        return config
    config = load_config(path, overrides)
    if resume and (Path(config.trainer.out_dir) / SAVED_CONFIG).is_file():
        return training_config(config.trainer.out_dir, overrides, resume)
    return config


def from_dict(raw: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts, checking keys and types, the model's options
    against its config dataclass, and ``task`` against the model (filled in when left out)."""
    config = _build(TrainConfig, raw, "")
    check_model(config)
    return config


def task_features(config: TrainConfig):
    """The feature config of a run: the task's defaults with ``data.features`` overrides (None for
    a task without audio)."""
    from speechs2s.audio import FeatureConfig
    from speechs2s.models import model_spec

    defaults = model_spec(config.model.name).task.features
    if defaults is None:
        return None
    try:
        return FeatureConfig.from_dict({**defaults.to_dict(), **config.data.features})
    except ConfigError as error:
        raise ConfigError(f"data.{error}") from None
    except (TypeError, ValueError) as error:
        raise ConfigError(f"data.features: {error}") from None


# Tokenizer-derived config fields: the trainer fills them in; to check the options before a
# tokenizer exists, the model's config is built with these stand-ins (any real vocabulary is smaller).
TOKENIZER_STAND_INS = {"vocab_size": 1 << 16, "sos_id": 2}


def check_model(config: TrainConfig) -> None:
    """``model.name`` is registered, ``task`` is its task (set when left out), every option has a
    known key and the right type, and the model's config accepts them all together."""
    from speechs2s.models import model_spec

    spec = model_spec(config.model.name)
    if config.task is None:
        config.task = spec.task.name
    elif config.task != spec.task.name:
        raise ConfigError(f"task: {config.task}, but model {spec.name} is for task {spec.task.name} "
                          "(leave task out: it follows the model)")
    unused = {"features": not spec.task.audio and config.data.features,
              "speed_perturb": not spec.task.text and config.data.speed_perturb is not None,
              "spec_augment": not spec.task.text and config.data.spec_augment is not None,
              "channel_augment": spec.task.name != "asr" and config.data.channel_augment is not None,
              "feature_stats": config.data.feature_stats and not hasattr(spec.model, "set_feature_stats")}
    for key, given in unused.items():
        if given:
            raise ConfigError(f"data.{key}: model {spec.name} does not use it; "
                              f"set data.{key}={'false' if key == 'feature_stats' else 'null'}")
    fields = {f.name for f in dataclasses.fields(spec.config)}
    hints = typing.get_type_hints(spec.config)
    options = config.model.options
    for key, value in options.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean model.options.{close[0]}?)" if close else f" (known: {', '.join(sorted(fields))})"
            raise ConfigError(f"model.options.{key}: unknown option of {spec.name}{hint}")
        options[key] = _check(hints[key], value, f"model.options.{key}")
    stand_ins = {key: value for key, value in TOKENIZER_STAND_INS.items() if key in fields}
    spec.make_config(stand_ins | model_options(config, task_features(config)))


def model_options(config: TrainConfig, features, tokenizer=None) -> dict:
    """``model.options`` with ``n_mels`` and ``features`` (and, given the tokenizer, ``vocab_size``
    and ``sos_id``) filled in, for the fields the model's config declares; an option that
    disagrees with them raises ConfigError."""
    from speechs2s.models import model_spec

    declared = {f.name for f in dataclasses.fields(model_spec(config.model.name).config)}
    filled = {"n_mels": features.n_mels, "features": features.to_dict()} if features else {}
    if tokenizer is not None:
        filled |= {"vocab_size": tokenizer.vocab_size, "sos_id": tokenizer.sos_id}
    options = dict(config.model.options)
    for key, value in filled.items():
        if key in declared:
            if key in options and options[key] != value:
                raise ConfigError(f"model.options.{key}: {options[key]!r} disagrees with the data ({value!r}); "
                                  "leave it out, the trainer fills it in")
            options[key] = value
    return options


def check_manifests(config: TrainConfig) -> None:
    """Fail early on files the config names that do not exist; ``trainer.init_from`` becomes the
    checkpoint folder it names."""
    for key in ("train", "valid"):
        value = getattr(config.data, key)
        if not value:
            raise ConfigError(f"data.{key}: a manifest path is required")
        if not Path(value).is_file():
            raise ConfigError(f"data.{key}: manifest {value} does not exist")
    tokenizer = config.data.tokenizer.path
    if tokenizer and not Path(tokenizer).is_file():
        raise ConfigError(f"data.tokenizer.path: {tokenizer} does not exist")
    init_from = config.trainer.init_from
    if init_from:  # a checkpoint folder, training out_dir or bundled name, like every --model
        from speechs2s.checkpoint import resolve_checkpoint

        try:
            resolved = resolve_checkpoint(init_from)
        except CheckpointError:
            resolved = Path(init_from)
        if not (resolved / "model.safetensors").is_file():
            raise ConfigError(f"trainer.init_from: {init_from} is not a checkpoint folder (no model.safetensors)")
        config.trainer.init_from = str(resolved)


def _require_positive(section, name: str, keys: list[str], allow_zero: bool = False) -> None:
    for key in keys:
        value = getattr(section, key)
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{name}.{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _apply_override(raw: dict, override: str) -> None:
    key, sep, text = override.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {override!r}: expected KEY=VALUE, e.g. optim.lr=5e-4")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        value = text  # not YAML: keep the literal string and let the type check judge it
    node = raw
    *parents, leaf = key.split(".")
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parents[:depth + 1])} is not a section")
        node = child
    node[leaf] = value


def _build(cls, raw: Any, prefix: str):
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {_type_name(raw)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(fields)})"
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    values = {name: _check(hints[name], raw[name], f"{prefix}{name}") for name in fields if name in raw}
    try:
        return cls(**values)
    except ValueError as error:  # a value the section's own checks refuse (e.g. a probability above 1)
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: {error}") from None


def _check(annotation, value, key: str):
    """Return ``value`` as ``annotation`` (ints widen to floats), or raise ConfigError naming ``key``."""
    if dataclasses.is_dataclass(annotation):
        return _build(annotation, value, key + ".")
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # only ``X | None`` is used in these configs
        (inner,) = [a for a in args if a is not type(None)]
        return None if value is None else _check(inner, value, key)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{key}: expected one of {', '.join(map(str, args))}, got {value!r}")
    elif origin is list:
        if isinstance(value, list):
            return [_check(args[0], item, f"{key}[{i}]") for i, item in enumerate(value)] if args else value
    elif annotation is dict:
        if isinstance(value, dict):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif annotation is int or annotation is bool or annotation is str:
        if type(value) is annotation:
            return value
    else:
        raise TypeError(f"unsupported config annotation {annotation!r} for {key}")
    raise ConfigError(f"{key}: expected {_annotation_name(annotation)}, got {value!r} ({_type_name(value)})")


def _annotation_name(annotation) -> str:
    args = typing.get_args(annotation)
    return f"list of {args[0].__name__}" if args else getattr(annotation, "__name__", str(annotation))


def _type_name(value) -> str:
    return "null" if value is None else type(value).__name__
