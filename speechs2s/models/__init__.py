"""Model registry: a config's ``model.name`` -> (module, class, config dataclass)."""
import dataclasses
import importlib

from torch import nn

from speechs2s.errors import ConfigError

MODELS = {
    "transformer_asr": ("speechs2s.models.asr_transformer", "TransformerASR", "TransformerASRConfig"),
    "conformer_asr": ("speechs2s.models.asr_conformer", "ConformerASR", "ConformerASRConfig"),
    "lstm_asr": ("speechs2s.models.asr_lstm", "LSTMASR", "LSTMASRConfig"),
    "transformer_tts": ("speechs2s.models.tts_transformer", "TransformerTTS", "TransformerTTSConfig"),
    "tacotron2": ("speechs2s.models.tts_tacotron", "Tacotron2", "Tacotron2Config"),
    "fastspeech": ("speechs2s.models.tts_fastspeech", "FastSpeech", "FastSpeechConfig"),
    "hifigan": ("speechs2s.models.vocoder", "HiFiGAN", "HiFiGANConfig"),
}


def model_classes(name: str):
    """Return ``(ModelClass, ConfigClass)`` for a registered model name."""
    if name not in MODELS:
        raise ConfigError(f"model.name: unknown model {name!r} (choose from {', '.join(MODELS)})")
    module_name, model_cls, config_cls = MODELS[name]
    module = importlib.import_module(module_name)
    return getattr(module, model_cls), getattr(module, config_cls)


def make_config(name: str, options: dict):
    """Build the dataclass config of model ``name`` from a dict; unknown keys raise ConfigError."""
    _, config_cls = model_classes(name)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"model: unknown key(s) {', '.join(unknown)} for {name!r} (known: {', '.join(sorted(known))})")
    try:
        return config_cls(**options)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"model: {error}") from None


def build_model(name: str, options: dict) -> nn.Module:
    """Instantiate model ``name`` from a plain dict of config options; options the model cannot be
    built with (e.g. ``d_model`` not divisible by ``n_heads``) raise ConfigError."""
    model_cls, _ = model_classes(name)
    config = make_config(name, options)
    try:
        return model_cls(config)
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
