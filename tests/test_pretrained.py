"""The bundled default models load from the installed package and do what the README promises."""
import csv
from pathlib import Path

import numpy as np
import pytest

import speechs2s

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample_transcripts() -> list[tuple[str, str]]:
    with open(SAMPLES / "transcripts.tsv", newline="") as file:
        return [(row["file"], row["text"]) for row in csv.DictReader(file, delimiter="\t")]


@pytest.fixture(scope="module")
def asr():
    return speechs2s.load_asr("default", device="cpu")


def test_default_asr_transcribes_the_bundled_samples(asr):
    samples = sample_transcripts()
    assert samples, "samples/transcripts.tsv lists no samples"
    transcripts = asr.transcribe([str(SAMPLES / name) for name, _ in samples])
    assert [transcript.text for transcript in transcripts] == [text for _, text in samples]
    # every word is timed inside its file, in order, by the CTC head
    for transcript in transcripts:
        assert " ".join(word.text for word in transcript.words) == transcript.text
        times = [time for word in transcript.words for time in (word.start, word.end)]
        assert times == sorted(times) and 0 <= times[0] and times[-1] <= transcript.duration
        assert all(0 < word.confidence <= 1 for word in transcript.words)


def test_default_asr_hears_nothing_in_silence(asr):
    import torch

    assert asr.transcribe(torch.zeros(16000 * 3), sample_rate=16000).text == ""


@pytest.mark.parametrize("name", ["default", "tts-transformer"])
def test_bundled_tts_speaks_with_bounded_length(name):
    tts = speechs2s.load_tts(name, device="cpu")
    wav, sample_rate = tts.synthesize("The prisoners were taken to the court.")
    assert sample_rate == 22050 and wav.dtype == np.float32
    seconds = len(wav) / sample_rate
    assert 0.8 < seconds < 8.0  # about 2.5 s of speech; the guard keeps any output bounded
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0.01


def test_default_tts_speaks_through_its_own_vocoder():
    """tts-default carries its Vocos (``vocoder/``), used unless another vocoder is asked for."""
    from speechs2s.models.vocoder import GriffinLim, Vocos

    assert isinstance(speechs2s.load_tts("default", device="cpu").vocoder, Vocos)
    assert isinstance(speechs2s.load_tts("default", device="cpu", vocoder="griffin-lim").vocoder, GriffinLim)
    assert isinstance(speechs2s.load_tts("tts-transformer", device="cpu").vocoder, GriffinLim)


@pytest.mark.parametrize("name", ["default", "tts-transformer"])
def test_speak_speed_and_sample_rate(name, tmp_path):
    """--speed changes the duration by its factor (FastSpeech: durations; attention model: mels resampled);
    --sample-rate writes the file at that rate; --sentence-silence sets the pause between sentences."""
    import soundfile
    from click.testing import CliRunner

    from speechs2s.cli import main

    text = "The prisoners were taken to the court."
    durations = {}
    for speed, rate in ((1.0, None), (1.5, 16000)):
        out = tmp_path / f"{speed}.wav"
        extra = ["--sample-rate", str(rate)] if rate else []
        result = CliRunner().invoke(main, ["speak", text, "-o", str(out), "--model", name, "--speed", str(speed),
                                           "--device", "cpu", "--threads", "1", *extra])
        assert result.exit_code == 0, result.output
        info = soundfile.info(out)
        assert info.samplerate == (rate or 22050)
        durations[speed] = info.duration
    assert durations[1.5] == pytest.approx(durations[1.0] / 1.5, rel=0.12)
    if name == "default":  # --sentence-silence: the pause between two sentences
        lengths = {}
        for silence in ("0", "1.5"):
            out = tmp_path / f"pause{silence}.wav"
            result = CliRunner().invoke(main, ["speak", f"{text} {text}", "-o", str(out), "--sentence-silence", silence,
                                               "--device", "cpu", "--threads", "1"])
            assert result.exit_code == 0, result.output
            lengths[silence] = soundfile.info(out).duration
        assert lengths["1.5"] - lengths["0"] == pytest.approx(1.5, abs=0.01)
    result = CliRunner().invoke(main, ["speak", text, "-o", str(tmp_path / "x.wav"), "--speed", "0"])
    assert result.exit_code == 2 and result.stderr.startswith("error: Invalid value for '--speed'")
