"""Model registry: what a model *is*, in one place.

A :class:`ModelSpec` per model name carries its class, its typed config (composed from the shared
sub-configs: ``ASRHeadConfig``, ``AcousticConfig``, ``TransformerTextEncoderConfig``,
``AttentionLossConfig``), its presets, the manifest keys it trains on and its :class:`Task`: the
data reader, dataset, collate function and feature defaults of training, and the kind of checkpoint
that ``load_asr`` / ``load_tts`` / ``load_vocoder`` / ``load_lm`` accept. Adding a model = one
``ModelSpec`` line in :data:`MODELS`; the config loader, trainer and checkpoint loader read
everything from it.
"""
import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from torch import nn

from speechs2s.audio import ASR_FEATURES, TTS_FEATURES, FeatureConfig
from speechs2s.data.collate import collate_asr, collate_text, collate_tts, collate_vocoder
from speechs2s.data.datasets import (ASRDataset, TextDataset, TTSDataset, VarianceTTSDataset, VocoderDataset,
                                     read_text_entries)
from speechs2s.data.manifest import read_manifest
from speechs2s.errors import ConfigError
from speechs2s.models.asr_conformer import ConformerASR, ConformerASRConfig
from speechs2s.models.asr_lstm import LSTMASR, LSTMASRConfig
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.models.lm import LSTMLM, LSTMLMConfig
from speechs2s.models.tts_fastspeech import FastSpeech, FastSpeechConfig
from speechs2s.models.tts_fastspeech2 import FastSpeech2, FastSpeech2Config
from speechs2s.models.tts_tacotron import Tacotron2, Tacotron2Config
from speechs2s.models.tts_transformer import TransformerTTS, TransformerTTSConfig
from speechs2s.models.vocoder import HIFIGAN_PRESETS, VOCOS_PRESETS, HiFiGAN, HiFiGANConfig, Vocos, VocosConfig


@dataclass(frozen=True)
class Task:
    """What the models of one task share: how training reads ``data.train``/``data.valid``
    (``read_entries(path) -> entries``), the ``dataset`` class and ``collate`` function, and the
    default ``features`` (``data.features`` overrides them; None: the task has no audio).
    ``text``: the models read or write text (a tokenizer is built, saved and required on loading)."""

    name: str
    read_entries: Callable[[str], list[dict]]
    dataset: type
    collate: Callable[[list], dict | None]
    features: FeatureConfig | None
    text: bool = True

    @property
    def audio(self) -> bool:
        return self.features is not None


read_audio_entries = partial(read_manifest, check_files=True)  # a bad line or a missing audio file stops training
ASR = Task("asr", read_audio_entries, ASRDataset, collate_asr, ASR_FEATURES)
TTS = Task("tts", read_audio_entries, TTSDataset, collate_tts, TTS_FEATURES)
TTS_VARIANCE = Task("tts", read_audio_entries, VarianceTTSDataset, collate_tts, TTS_FEATURES)  # + pitch, energy
VOCODER = Task("vocoder", read_audio_entries, VocoderDataset, collate_vocoder, TTS_FEATURES, text=False)
LM = Task("lm", read_text_entries, TextDataset, collate_text, None)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: ``name`` (``model.name`` in configs and checkpoints), its ``task``,
    ``model`` class built from an instance of the ``config`` dataclass, named ``presets`` (option
    overrides) and ``entry_keys``, the manifest keys it trains on beyond audio and text."""

    name: str
    task: Task
    model: type[nn.Module]
    config: type
    presets: dict[str, dict] = field(default_factory=dict)
    entry_keys: tuple[str, ...] = ()

    def make_config(self, options: dict):
        """The config dataclass from a dict; unknown keys or invalid values raise ConfigError."""
        known = {f.name for f in dataclasses.fields(self.config)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"model.options: unknown key(s) {', '.join(unknown)} for {self.name!r} "
                              f"(known: {', '.join(sorted(known))})")
        try:
            return self.config(**options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"model.options: {error}") from None

    def build(self, options: dict) -> nn.Module:
        """The model from a dict of config options; options it cannot be built with (e.g.
        ``d_model`` not divisible by ``n_heads``) raise ConfigError."""
        config = self.make_config(options)
        try:
            return self.model(config)
        except ValueError as error:
            raise ConfigError(f"model.options: {error}") from None


MODELS = {spec.name: spec for spec in [
    ModelSpec("transformer_asr", ASR, TransformerASR, TransformerASRConfig, TransformerASRConfig.PRESETS),
    ModelSpec("conformer_asr", ASR, ConformerASR, ConformerASRConfig, ConformerASRConfig.PRESETS),
    ModelSpec("lstm_asr", ASR, LSTMASR, LSTMASRConfig, LSTMASRConfig.PRESETS),
    ModelSpec("transformer_tts", TTS, TransformerTTS, TransformerTTSConfig),
    ModelSpec("tacotron2", TTS, Tacotron2, Tacotron2Config),
    ModelSpec("fastspeech", TTS, FastSpeech, FastSpeechConfig, entry_keys=("durations",)),
    ModelSpec("fastspeech2", TTS_VARIANCE, FastSpeech2, FastSpeech2Config, entry_keys=("durations",)),
    ModelSpec("hifigan", VOCODER, HiFiGAN, HiFiGANConfig, HIFIGAN_PRESETS),
    ModelSpec("vocos", VOCODER, Vocos, VocosConfig, VOCOS_PRESETS),
    ModelSpec("lstm_lm", LM, LSTMLM, LSTMLMConfig),
]}


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name``; an unknown name raises ConfigError with a did-you-mean."""
    if name not in MODELS:
        close = difflib.get_close_matches(str(name), MODELS, n=1)
        hint = f"did you mean {close[0]}?" if close else f"choose from {', '.join(MODELS)}"
        raise ConfigError(f"model.name: unknown model {name!r} ({hint})")
    return MODELS[name]


def build_model(name: str, options: dict) -> nn.Module:
    """Instantiate model ``name`` from a plain dict of config options (see :meth:`ModelSpec.build`)."""
    return model_spec(name).build(options)
