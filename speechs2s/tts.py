"""Text-to-speech: text -> sentences -> tokens -> mels (acoustic model) -> waveform (vocoder).

>>> from speechs2s import load_tts
>>> tts = load_tts("default")                       # or a checkpoint directory
>>> wav, sample_rate = tts.synthesize("Hello there. How are you?")

Long text is split into sentences (:func:`speechs2s.decode.tts.split_sentences`), synthesized in
batches and joined with short pauses; :meth:`TTS.synthesize_to_file` streams it to disk, so memory
stays bounded whatever the length of the text.
"""
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio

from speechs2s.audio import FeatureConfig, audio_writer
from speechs2s.decode.tts import SynthesisConfig, split_sentences, synthesize_sequences
from speechs2s.errors import TextError
from speechs2s.pitch import shift_pitch

OWN_VOCODER_DIR = "vocoder"  # a checkpoint folder's own vocoder (load_tts(vocoder="auto"))


@dataclass
class Utterance:
    """One synthesized sentence: ``wav (T,)`` float32, ``mel (frames, M)`` log-mel,
    ``alignment (steps, L)`` decoder steps x tokens."""

    text: str
    wav: np.ndarray
    mel: torch.Tensor
    alignment: torch.Tensor


class TTS:
    """An acoustic model (FastSpeech, FastSpeech 2, TransformerTTS or Tacotron2), its tokenizer and features, and a vocoder."""

    def __init__(self, model, tokenizer, features: FeatureConfig, vocoder, config: SynthesisConfig | None = None,
                 batch_size: int = 8, pause_seconds: float = 0.25, max_sentence_chars: int = 200):
        self.model, self.tokenizer, self.features, self.vocoder = model.eval(), tokenizer, features, vocoder
        self.config, self.batch_size = config or SynthesisConfig(), batch_size
        self.pause_seconds, self.max_sentence_chars = pause_seconds, max_sentence_chars

    @property
    def sample_rate(self) -> int:
        return self.vocoder.sample_rate

    def sentences(self, text: str) -> list[str]:
        """The speakable sentences of ``text``; raises TextError when there are none."""
        if not isinstance(text, str):
            raise TextError(f"text must be a string, got {type(text).__name__}")
        sentences = self._speakable(text)
        if not sentences:
            shown = text.strip()[:40] + ("..." if len(text.strip()) > 40 else "")
            reason = ("its letters are not in the Latin alphabet this model reads" if any(c.isalpha() for c in text)
                      else "the text has no words or numbers")
            raise TextError(f"nothing to speak in {shown!r}: {reason}")
        return sentences

    def synthesize_sentences(self, text: str, pitch: float = 0.0) -> Iterator[Utterance]:
        """Synthesize ``text`` sentence by sentence (batched), in order; ``pitch``: semitones up."""
        return self._synthesize(self.sentences(text), pitch)

    def _synthesize(self, sentences: list[str], pitch: float) -> Iterator[Utterance]:
        """Mels of ``sentences`` with ``self.config``, vocoded, then ``pitch`` semitones shifted (:func:`shift_pitch`)."""
        token_lists = [self.tokenizer.encode(sentence) for sentence in sentences]
        outputs = synthesize_sequences(self.model, token_lists, self.batch_size, self.config)
        for sentence, (mel, alignment) in zip(sentences, outputs):
            wav = self.vocoder.generate(mel).float().cpu()
            if pitch:
                wav = shift_pitch(wav, self.sample_rate, pitch)
            yield Utterance(sentence, wav.numpy(), mel, alignment)

    def _joined(self, wavs: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """``wavs`` with a ``pause_seconds`` silence between consecutive ones."""
        pause = np.zeros(round(self.pause_seconds * self.sample_rate), dtype=np.float32)
        for i, wav in enumerate(wavs):
            if i:
                yield pause
            yield wav

    def synthesize(self, text: str, pitch: float = 0.0) -> tuple[np.ndarray, int]:
        """``text`` -> ``(wav (T,) float32 in [-1, 1], sample_rate)``; ``pitch``: semitones up."""
        return np.concatenate(list(self._joined(u.wav for u in self.synthesize_sentences(text, pitch)))), self.sample_rate

    def synthesize_with_alignment(self, text: str, pitch: float = 0.0) -> tuple[np.ndarray, int, torch.Tensor]:
        """Like :meth:`synthesize`, plus the alignment ``(steps, tokens)`` of all sentences
        (block-diagonal: each sentence's decoder steps over its own tokens)."""
        utterances = list(self.synthesize_sentences(text, pitch))
        wav = np.concatenate(list(self._joined(u.wav for u in utterances)))
        return wav, self.sample_rate, torch.block_diag(*[u.alignment.float().cpu() for u in utterances])

    def synthesize_to_file(self, text: str | Iterable[str], path: str | Path, plot_alignment: str | Path | None = None,
                           plot_sentences: int = 8, progress: bool = False, sample_rate: int | None = None,
                           pitch: float = 0.0) -> float:
        """Stream the speech of ``text`` into an audio file (format from the suffix: WAV, FLAC, OGG Vorbis,
        MP3) through :func:`~speechs2s.audio.audio_writer`, so that the file appears only when complete
        (``"-"``: WAV on stdout, each sentence sent as soon as it is made); returns its duration in seconds.
        ``text`` may also be pieces of text as they arrive (lines read from a pipe): each is spoken once it is
        there, and one without anything to speak is passed over (:class:`TextError` if none has any).
        ``plot_alignment``: PNG of the first ``plot_sentences`` sentences' alignment. ``progress``: a tqdm bar
        over sentences on stderr. ``sample_rate``: the file's rate (default the vocoder's); each sentence is
        resampled to it. ``pitch``: semitones up."""
        from tqdm import tqdm

        if isinstance(text, str):
            sentences = self.sentences(text)  # raises before the file is created
            batches, total, large = [sentences], len(sentences), len(text) > 500_000
        else:
            batches, total, large = (self._speakable(piece) for piece in text), None, False
        alignments, count = [], 0

        def wavs():
            nonlocal count
            with tqdm(total=total, unit="sentence", disable=not progress) as bar:
                for sentences in batches:
                    for utterance in self._synthesize(sentences, pitch):
                        if len(alignments) < plot_sentences:
                            alignments.append(utterance.alignment.float().cpu())
                        count += 1
                        bar.update()
                        yield utterance.wav

        rate = sample_rate or self.sample_rate
        # A WAV file ends at 4 GB (27 h at 22 kHz); text this long (roughly 9 h of speech) gets RF64.
        with audio_writer(path, rate, large=large) as out:
            for piece in self._joined(wavs()):
                if rate != self.sample_rate:
                    piece = torchaudio.functional.resample(torch.from_numpy(piece), self.sample_rate, rate).numpy()
                out.write(piece)
            if not count:
                raise TextError("nothing to speak in the text read: it has no words or numbers this model reads")
            frames = out.frames
        if plot_alignment is not None:
            from speechs2s.plots import plot_alignment as plot

            shown = f"first {len(alignments)} of {count} sentences" if count > len(alignments) else None
            plot(torch.block_diag(*alignments), plot_alignment, title=shown)
        return frames / rate

    def _speakable(self, text: str) -> list[str]:
        """The sentences of ``text`` that have something to speak (possibly none)."""
        return [s for s in split_sentences(text, self.max_sentence_chars) if re.search("[a-z]", self.tokenizer.normalize(s))]


def load_tts(name_or_path: str | Path = "default", device: str | torch.device | None = None,
             vocoder: str | Path = "auto") -> TTS:
    """Load a TTS checkpoint (directory, training ``out_dir`` or bundled name) and a vocoder on ``device``
    (default: CUDA if available). ``vocoder``: ``"auto"``, the model's own (the ``vocoder/`` folder of its
    checkpoint) if it has one, else Griffin-Lim; ``"griffin-lim"``; or a HiFi-GAN or Vocos checkpoint."""
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device
    from speechs2s.vocoder import load_vocoder

    device = select_device(device)
    model, tokenizer, config = load_checkpoint(name_or_path, device, task="tts")
    features = FeatureConfig.from_dict(config["features"])
    return TTS(model, tokenizer, features, load_vocoder(resolve_vocoder(name_or_path, vocoder), device, features))


def resolve_vocoder(name_or_path: str | Path, vocoder: str | Path = "auto") -> str | Path:
    """The vocoder that ``vocoder`` names for the TTS checkpoint ``name_or_path``: ``"auto"`` becomes the
    checkpoint's own ``vocoder/`` folder if it has one, else ``"griffin-lim"``; anything else is itself."""
    from speechs2s.checkpoint import resolve_checkpoint

    if str(vocoder) != "auto":
        return vocoder
    own = resolve_checkpoint(name_or_path, task="tts") / OWN_VOCODER_DIR
    return own if own.is_dir() else "griffin-lim"
