"""Errors a user can cause. The CLI prints ``str(error)`` on one line and exits non-zero."""


class SpeechS2SError(Exception):
    """Base class for user-fixable problems (bad file, bad text, bad config)."""


class AudioError(SpeechS2SError):
    """An audio file is missing, empty, unreadable or unsupported. The message names the file."""


class TextError(SpeechS2SError):
    """Input text cannot be processed (e.g. nothing speakable in it)."""


class ConfigError(SpeechS2SError):
    """A config file or ``--set`` override is invalid. The message names the key."""


class ManifestError(SpeechS2SError):
    """A manifest is malformed. The message names the file and line."""


class CheckpointError(SpeechS2SError):
    """A checkpoint directory is missing, incomplete or unsafe to load."""
