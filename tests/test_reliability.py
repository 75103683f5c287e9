"""End-to-end reliability matrix at the user-facing surface (see tests/README.md for the table).

Every bad input to ``speechs2s transcribe / evaluate / prepare / speak / train`` and to
``load_asr(...).transcribe`` either works or fails with ONE ``error: <file/key/line>: reason`` line on
stderr and a non-zero exit: never a traceback. The models are tiny and UNTRAINED (their text is
arbitrary); what is tested is the plumbing around them.
"""
import dataclasses
import io
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from speechs2s.asr import load_asr
from speechs2s.audio import ASR_FEATURES, TTS_FEATURES
from speechs2s.checkpoint import save_checkpoint
from speechs2s.cli import main
from speechs2s.data.manifest import write_manifest
from speechs2s.errors import AudioError
from speechs2s.models.asr_transformer import TransformerASR, TransformerASRConfig
from speechs2s.models.tts_transformer import TransformerTTS, TransformerTTSConfig
from speechs2s.text.tokenizers import CharTokenizer

REPO = Path(__file__).resolve().parents[1]
RATE = 8000  # FSDD
GREEDY = ["--beam", "1", "--ctc-weight", "0", "--threads", "1", "--device", "cpu"]


# --- helpers ---------------------------------------------------------------------------------------


def cli(*args, input=None):
    """Run the CLI in-process; a traceback would surface here as a non-SystemExit exception."""
    result = CliRunner().invoke(main, [str(arg) for arg in args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.stderr
    return result


def assert_one_error_line(result, *names):
    """Exit 1 and exactly one ``error: ...`` line on stderr that names each of ``names``."""
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for name in names:
        assert str(name) in lines[0], (name, lines[0])
    return lines[0]


def run_subprocess(args, stdin=None, timeout=600):
    """``python -m speechs2s ARGS`` in a fresh process (real stderr, exit code) on one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "speechs2s", *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=env, timeout=timeout)


# --- fixtures: tiny untrained checkpoints and real audio -------------------------------------------


@pytest.fixture(scope="session")
def asr_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tokenizer = CharTokenizer()
    config = TransformerASRConfig.preset("tiny", vocab_size=tokenizer.vocab_size, sos_id=tokenizer.sos_id,
                                         d_model=32, d_ff=64, encoder_layers=2, decoder_layers=1)
    model = TransformerASR(config)
    with torch.no_grad():
        model.output.bias[tokenizer.eos_id] -= 2.0  # say something before stopping
    folder = tmp_path_factory.mktemp("ckpt") / "asr"
    checkpoint_config = {"task": "asr", "model": {"name": "transformer_asr", **dataclasses.asdict(config)},
                         "features": ASR_FEATURES.to_dict()}
    return save_checkpoint(folder, model, checkpoint_config, tokenizer)


@pytest.fixture(scope="session")
def tts_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tokenizer = CharTokenizer("tts")
    config = TransformerTTSConfig(vocab_size=tokenizer.vocab_size, reduction_factor=4, d_model=32, n_heads=2, d_ff=64,
                                  encoder_layers=1, decoder_layers=1, embedding_dim=32, prenet_dim=32,
                                  postnet_channels=32, postnet_layers=2, guided_layers=1, dropout=0.0)
    folder = tmp_path_factory.mktemp("ckpt") / "tts"
    checkpoint_config = {"task": "tts", "model": {"name": "transformer_tts", **dataclasses.asdict(config)},
                         "features": TTS_FEATURES.to_dict()}
    return save_checkpoint(folder, TransformerTTS(config), checkpoint_config, tokenizer)


@pytest.fixture(scope="session")
def clip(corpora) -> np.ndarray:
    """A real spoken digit, float32 at 8 kHz."""
    samples, rate = sf.read(corpora / "fsdd" / "recordings" / "3_theo_3.wav", dtype="float32")
    assert rate == RATE
    return samples


def tiled(clip: np.ndarray, seconds: float, gap_seconds: float = 1.0) -> np.ndarray:
    """``clip`` repeated with gaps of quiet noise up to ``seconds`` long: ``(seconds * 8000,)``."""
    period = np.concatenate([clip, np.random.default_rng(0).normal(0, 3e-4, int(gap_seconds * RATE))])
    return np.tile(period, int(seconds * RATE) // len(period) + 1)[: int(seconds * RATE)].astype(np.float32)


def _write(samples, rate=RATE, subtype="PCM_16", suffix=".wav"):
    def make(path):
        path = path.with_suffix(suffix)
        sf.write(path, samples() if callable(samples) else samples, rate, subtype=subtype)
        return path
    return make


def _bytes(data):
    def make(path):
        path.write_bytes(data() if callable(data) else data)
        return path
    return make


def _valid_wav_bytes(clip) -> bytes:
    import io

    buffer = io.BytesIO()
    sf.write(buffer, clip, RATE, subtype="PCM_16", format="WAV")
    return buffer.getvalue()


def _unknown_codec(clip) -> bytes:
    """A WAV whose fmt chunk names a codec libsndfile does not decode (0x00FF, AAC)."""
    data = bytearray(_valid_wav_bytes(clip))
    assert data[20:22] == b"\x01\x00"  # PCM
    data[20:22] = (0x00FF).to_bytes(2, "little")
    return bytes(data)


def _with(clip, index, value):
    samples = clip.copy()
    samples[index] = value
    return samples


def _directory(path):
    path.mkdir()
    return path


# name -> (make(path) -> path, expected): expected is the reason in the one error line, "" for an
# empty transcript, or None for "works" (some text, exit 0).
def audio_cases(clip):
    noise = np.random.default_rng(1).normal(0, 0.3, 3 * RATE).clip(-1, 1).astype(np.float32)
    up = np.interp(np.arange(len(clip) * 6) / 6, np.arange(len(clip)), clip).astype(np.float32)  # 48 kHz
    return {
        "missing": (lambda path: path, "no such file"),
        "directory": (_directory, "is a directory"),
        "empty file": (_bytes(b""), "empty file (0 bytes)"),
        "zero samples": (_write(np.zeros(0, np.float32)), "contains no audio samples"),
        "truncated header": (_bytes(lambda: _valid_wav_bytes(clip)[:20]), "not a readable audio file"),
        "text named .wav": (_bytes(b"hello, I am a text file\n" * 40), "not a readable audio file"),
        "unknown WAV codec": (_bytes(lambda: _unknown_codec(clip)), "not a readable audio file"),
        "random bytes .mp3": (lambda path: _bytes(np.random.default_rng(0).bytes(5000))(path.with_suffix(".mp3")),
                              "not a readable audio file"),
        "NaN samples": (_write(lambda: _with(clip, 100, np.nan), subtype="FLOAT"), "contains NaN/inf samples"),
        "inf samples": (_write(lambda: _with(clip, 7, np.inf), subtype="FLOAT"), "contains NaN/inf samples"),
        "NaN in a 30 s file": (_write(lambda: _with(tiled(clip, 30), 200_000, np.nan), subtype="FLOAT"),
                               "contains NaN/inf samples"),
        "truncated data": (_bytes(lambda: _valid_wav_bytes(clip)[:3000]), None),  # the samples that are there
        "8 kHz": (_write(clip), None),
        "48 kHz": (_write(up, rate=48000), None),
        "24-bit": (_write(clip, subtype="PCM_24"), None),
        "float": (_write(clip, subtype="FLOAT"), None),
        "stereo": (_write(np.stack([clip, clip], 1)), None),
        "6-channel": (_write(np.stack([clip] * 6, 1)), None),
        "FLAC": (_write(clip, suffix=".flac"), None),
        "clipping": (_write((clip * 30).clip(-1, 1)), None),
        "silence": (_write(np.zeros(3 * RATE, np.float32)), ""),
        "white noise": (_write(noise), ""),
    }


AUDIO_CASES = list(audio_cases(np.zeros(RATE, np.float32)))
ERRORS = [name for name, (_, expected) in audio_cases(np.zeros(RATE, np.float32)).items() if expected]


@pytest.fixture(scope="session")
def audio_files(clip, tmp_path_factory) -> dict[str, tuple[Path, str | None]]:
    folder = tmp_path_factory.mktemp("bad audio")
    return {name: (make(folder / (re.sub(r"\W+", "_", name) + ".wav")), expected)
            for name, (make, expected) in audio_cases(clip).items()}


# --- 1. bad audio ----------------------------------------------------------------------------------


@pytest.mark.parametrize("case", AUDIO_CASES)
def test_transcribe_cli_each_input(case, audio_files, asr_checkpoint):
    path, expected = audio_files[case]
    result = cli("transcribe", path, "--model", asr_checkpoint, *GREEDY)
    if expected:
        assert assert_one_error_line(result, expected).startswith(f"error: {path}: ")
        assert result.stdout == ""
    else:
        assert result.exit_code == 0 and result.stderr == "", result.output
        assert len(result.stdout.splitlines()) == 1
        if expected == "":
            assert result.stdout == "\n", f"hallucinated {result.stdout!r} on {case}"


def test_transcribe_python_api(audio_files, asr_checkpoint):
    asr = load_asr(asr_checkpoint, device="cpu")
    for case, (path, expected) in audio_files.items():
        if expected:
            with pytest.raises(AudioError) as error:
                asr.transcribe(path)
            assert str(error.value).startswith(f"{path}: ") and expected in str(error.value), case
            assert "\n" not in str(error.value)
        else:
            assert isinstance(asr.transcribe(path).text, str)
    assert asr.transcribe(audio_files["silence"][0]).text == ""
    assert asr.transcribe(audio_files["white noise"][0]).text == ""
    # lossless variants of the same 16-bit clip decode to the same text as the clip itself
    reference = asr.transcribe(audio_files["8 kHz"][0]).text
    for case in ("24-bit", "float", "stereo", "FLAC"):
        assert asr.transcribe(audio_files[case][0]).text == reference, case


def test_transcribe_batch_with_every_bad_file(audio_files, asr_checkpoint):
    """All cases in ONE run, in a real process: the good ones are transcribed, each bad one is one
    stderr line, exit 1, no traceback."""
    paths = [path for path, _ in audio_files.values()]
    result = run_subprocess(["transcribe", *paths, "--model", asr_checkpoint, *GREEDY])
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = result.stderr.strip().splitlines()
    bad = [(path, expected) for path, expected in audio_files.values() if expected]
    assert len(errors) == len(bad)
    for (path, expected), line in zip(bad, errors):
        assert line.startswith(f"error: {path}: ") and expected in line
    outputs = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert list(outputs) == [str(path) for path, expected in audio_files.values() if not expected]
    assert outputs[str(audio_files["silence"][0])] == outputs[str(audio_files["white noise"][0])] == ""


def test_transcribe_ten_minute_file(clip, asr_checkpoint, tmp_path):
    path = tmp_path / "ten minutes.wav"
    sf.write(path, tiled(clip, 600), RATE, subtype="PCM_16")
    result = cli("transcribe", path, "--model", asr_checkpoint, *GREEDY, "--json")
    assert result.exit_code == 0 and result.stderr == "", result.output
    (transcript,) = json.loads(result.stdout)
    assert transcript["duration"] == pytest.approx(600, abs=0.01) and transcript["error"] is None
    segments = transcript["segments"]
    clips = 600 / (len(clip) / RATE + 1.0)
    assert 0.9 * clips <= len(segments) <= clips + 1  # one segment per spoken digit
    assert all(0 <= s["start"] < s["end"] <= 600 and s["end"] - s["start"] <= 20 for s in segments)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))


# The CLI in a fresh process, then its peak RSS. VmHWM, not getrusage's ru_maxrss: Linux carries
# ru_maxrss over exec, so a child spawned by a big pytest process would report the parent's peak.
PEAK_RSS = textwrap.dedent("""
    import re, sys
    from pathlib import Path
    from speechs2s.cli import main
    try:
        main(sys.argv[1:], standalone_mode=True)
    except SystemExit as exit:
        peak = re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text())[1]
        print("peak_rss_kb", peak, file=sys.stderr)
        raise
""")


@pytest.mark.slow  # ~30 s on one CPU thread
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc (Linux)")
def test_transcribe_one_hour_file_in_bounded_memory(clip, asr_checkpoint, tmp_path):
    """Peak RSS does not grow with the file: 1 h of audio peaks within 50 MB of 20 min (the extra
    40 min as a 16 kHz float waveform alone would be 154 MB). Memory is set by ``batch_seconds``
    of audio decoded at once, not by the file's length. A fixed malloc mmap threshold makes freed
    batch memory go back to the OS at once, so RSS measures live memory (with glibc's adaptive
    threshold, fragmentation adds 0-200 MB at random)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "MALLOC_MMAP_THRESHOLD_": "131072"}

    def peak_rss_mb(seconds):
        path = tmp_path / f"{seconds}.wav"
        sf.write(path, tiled(clip, seconds), RATE, subtype="PCM_16")
        result = subprocess.run([sys.executable, "-c", PEAK_RSS, "transcribe", str(path), "--model", str(asr_checkpoint),
                                 *GREEDY, "--json"], capture_output=True, text=True, env=env, timeout=1800)
        assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
        (transcript,) = json.loads(result.stdout)
        assert transcript["duration"] == pytest.approx(seconds, abs=0.01)
        assert len(transcript["segments"]) >= 0.9 * seconds / (len(clip) / RATE + 1.0)
        return int(result.stderr.split("peak_rss_kb")[-1]) / 1024

    twenty_minutes, hour = peak_rss_mb(1200), peak_rss_mb(3600)
    assert hour < twenty_minutes + 50, (twenty_minutes, hour)


def test_evaluate_manifest_with_every_case(audio_files, asr_checkpoint, tmp_path):
    entries = [{"id": case, "audio": str(path), "duration": 1.0, "text": "three"} for case, (path, _) in audio_files.items()]
    manifest = tmp_path / "test.jsonl"
    write_manifest(manifest, entries)
    report = tmp_path / "report.tsv"
    result = cli("evaluate", "--manifest", manifest, "--model", asr_checkpoint, *GREEDY, "--report", report)
    # evaluation finishes (a failed utterance counts as all-deleted), lists each failure once, exits 1
    assert result.exit_code == 1, result.output
    errors = result.stderr.strip().splitlines()
    bad = [(path, expected) for path, expected in audio_files.values() if expected]
    assert len(errors) == len(bad)
    for (path, expected), line in zip(bad, errors):
        assert line.startswith(f"error: {path}: ") and expected in line
    assert f"{len(entries)} utterances" in result.stdout and f"{len(bad)} failed" in result.stdout
    rows = [line.split("\t") for line in report.read_text().splitlines()[1:]]
    assert [row[0] for row in rows] == list(audio_files)
    assert all(row[6] for row, (_, expected) in zip(rows, audio_files.values()) if expected)


def test_evaluate_bad_manifest_is_one_line(asr_checkpoint, tmp_path):
    manifest = tmp_path / "test.jsonl"
    manifest.write_text('{"id": "a", "audio": "a.wav", "duration": 1.0, "text": "x"}\n{"id": "b", oops}\n')
    assert_one_error_line(cli("evaluate", "--manifest", manifest, "--model", asr_checkpoint, *GREEDY), f"{manifest}:2")
    assert_one_error_line(cli("evaluate", "--manifest", tmp_path / "none.jsonl", "--model", asr_checkpoint), "none.jsonl")


def test_prepare_skips_unreadable_files_and_reports_them(audio_files, tmp_path):
    """``prepare`` reads headers only: unreadable files are skipped and listed on stderr, readable
    ones (NaN samples included: they fail later, per item, when decoded) go into the manifest."""
    source = tmp_path / "fsdd"
    source.mkdir()
    for i, (case, (path, _)) in enumerate(audio_files.items()):
        if path.exists() and path.suffix == ".wav":
            (source / f"3_case{i}_0.wav").symlink_to(path)
    out = tmp_path / "m.jsonl"
    result = cli("prepare", "fsdd", source, out)
    assert result.exit_code == 0, result.output
    skipped = [case for case, (path, expected) in audio_files.items()
               if path.exists() and path.suffix == ".wav" and expected and "NaN/inf" not in expected]
    written = sum(1 for case, (path, _) in audio_files.items() if path.exists() and path.suffix == ".wav") - len(skipped)
    assert result.stdout.startswith(f"wrote {written} entries")
    assert f"skipped {len(skipped)} utterance(s)" in result.stderr and "Traceback" not in result.stderr
    assert len(out.read_text().splitlines()) == written


def test_prepare_bad_source_is_one_line(tmp_path):
    assert_one_error_line(cli("prepare", "fsdd", tmp_path / "nowhere", tmp_path / "m.jsonl"), "nowhere")
    (tmp_path / "empty").mkdir()
    assert_one_error_line(cli("prepare", "ljspeech", tmp_path / "empty", tmp_path / "m.jsonl"), "metadata.csv")


# --- 2. bad text -----------------------------------------------------------------------------------

NOTHING_TO_SPEAK = {  # case -> (text, reason in the error line)
    "empty": ("", "no words or numbers"),
    "whitespace": ("  \n\t ", "no words or numbers"),
    "punctuation": ("?!... ;--", "no words or numbers"),
    "emoji": ("🙂🎉👍", "no words or numbers"),
    "japanese": ("日本語のテキスト", "not in the Latin alphabet"),
    "russian": ("Привет, мир", "not in the Latin alphabet"),
    "arabic": ("مرحبا بالعالم", "not in the Latin alphabet"),
}


@pytest.mark.parametrize("case", NOTHING_TO_SPEAK)
def test_speak_nothing_to_speak(case, tts_checkpoint, tmp_path):
    text, reason = NOTHING_TO_SPEAK[case]
    out = tmp_path / "out.wav"
    line = assert_one_error_line(cli("speak", text, "-o", out, "--model", tts_checkpoint, "--device", "cpu"))
    assert line.startswith("error: nothing to speak in ") and reason in line
    assert not out.exists()


def test_speak_errors_in_a_real_process(tts_checkpoint, tmp_path):
    result = run_subprocess(["speak", "-", "-o", tmp_path / "out.wav", "--model", tts_checkpoint, "--device", "cpu"],
                            stdin="Привет, мир 🙂\n")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == "error: nothing to speak in 'Привет, мир 🙂': its letters are not in the Latin alphabet this model reads\n"


def test_speak_unreadable_text_file(tts_checkpoint, tmp_path):
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    assert_one_error_line(cli("speak", "--file", binary, "-o", tmp_path / "x.wav", "--model", tts_checkpoint), binary)
    assert_one_error_line(cli("speak", "--file", tmp_path / "none.txt", "-o", tmp_path / "x.wav", "--model", tts_checkpoint),
                          "none.txt")


def test_speak_mixed_scripts_speaks_the_latin_part(tts_checkpoint, tmp_path):
    out = tmp_path / "out.wav"
    result = cli("speak", "Hello Привет 🙂 world 日本", "-o", out, "--model", tts_checkpoint, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.output
    assert sf.info(str(out)).frames > 0


def test_speak_numbers_and_symbols(tts_checkpoint, tmp_path):
    from speechs2s.tts import load_tts

    text = "$3.50 at 10:30, 50% off #1"
    spoken = load_tts(tts_checkpoint, device="cpu").tokenizer.normalize(text)
    assert spoken == "three dollars and fifty cents at ten thirty, fifty percent off number one"
    out = tmp_path / "out.wav"
    result = cli("speak", text, "-o", out, "--model", tts_checkpoint, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.output
    assert sf.info(str(out)).frames > 0


def _speech_bound(tts, text: str) -> int:
    """Most samples the length guards allow for ``text``: per sentence ``max_frames`` hops, plus pauses."""
    config, sentences = tts.config, tts.sentences(text)
    frames = sum(int(config.max_frames_per_token * len(tts.tokenizer.encode(s)) + config.extra_frames) for s in sentences)
    return frames * tts.features.hop_length + (len(sentences) - 1) * round(tts.pause_seconds * tts.sample_rate)


def test_speak_two_megabytes_of_stdin_that_is_mostly_unspeakable(tts_checkpoint, tmp_path):
    """2 MB on stdin (emoji, punctuation, other scripts and one English sentence) streams through
    sentence splitting in linear time and speaks only the one sentence."""
    from speechs2s.tts import load_tts

    filler = "🙂 ... 日本語! ?? ;; Привет! "
    text = filler * (2_000_000 // len(filler.encode())) + "Read this one sentence."
    assert len(text.encode()) > 2_000_000
    out = tmp_path / "out.wav"
    result = cli("speak", "-", "-o", out, "--model", tts_checkpoint, "--device", "cpu", "--threads", "1", input=text)
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result.output
    spoken = "Read this one sentence."
    assert 0 < sf.info(str(out)).frames <= _speech_bound(load_tts(tts_checkpoint, device="cpu"), spoken)


@pytest.mark.slow  # ~30 s on one CPU thread: 140 sentences, Griffin-Lim over all of them
def test_speak_ten_thousand_characters(tts_checkpoint, tmp_path):
    from speechs2s.tts import load_tts

    sentence = "The quick brown fox jumps over the lazy dog near the river bank, twice. "
    text = (sentence * (10_000 // len(sentence) + 1))[:10_000]
    out = tmp_path / "out.flac"
    result = run_subprocess(["speak", "-", "-o", out, "--model", tts_checkpoint, "--device", "cpu", "--threads", "1"],
                            stdin=text, timeout=1800)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert 0 < sf.info(str(out)).frames <= _speech_bound(load_tts(tts_checkpoint, device="cpu"), text)


# --- 2b. audio and transcripts in and out anywhere ---------------------------------------------------


def test_transcribe_bad_stdin_empty_folder_and_unwritable_output(audio_files, asr_checkpoint, tmp_path):
    model = ["--model", asr_checkpoint, *GREEDY]
    result = cli("transcribe", "-", *model, input=b"hello, this is text and not audio")
    assert assert_one_error_line(result) == "error: <stdin>: not a readable audio file (Format not recognised.)"
    assert result.stdout == ""
    assert assert_one_error_line(cli("transcribe", "-", *model, input=b"")) == "error: <stdin>: empty (0 bytes)"
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "notes.txt").write_text("no audio here")
    line = assert_one_error_line(cli("transcribe", tmp_path / "empty", *model))
    assert line.startswith(f"error: {tmp_path / 'empty'}: is a directory without audio files (.aif, .aiff, ")
    (tmp_path / "a file").write_text("")
    good = audio_files["8 kHz"][0]
    line = assert_one_error_line(cli("transcribe", good, *model, "-o", tmp_path / "a file" / "out"))
    assert line == f"error: {tmp_path / 'a file' / 'out'}: cannot create the output folder ({tmp_path / 'a file'} is not a folder)"
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / good.name
    twin.write_bytes(good.read_bytes())
    line = assert_one_error_line(cli("transcribe", good, twin, *model, "-f", "txt", "-o", tmp_path / "out"))
    assert line == f"error: {good} and {twin} would both be written as {good.stem}.*: transcribe them into different --output-dir folders"
    assert not (tmp_path / "out").exists()
    with pytest.raises(AudioError, match="^waveform: give its sample rate"):
        load_asr(asr_checkpoint, device="cpu").transcribe(np.zeros(RATE, np.float32))


def test_subtitles_of_a_silent_file_have_no_cues(audio_files, asr_checkpoint, tmp_path):
    result = cli("transcribe", audio_files["silence"][0], "--model", asr_checkpoint, *GREEDY, "-f", "all", "-o", tmp_path)
    assert result.exit_code == 0 and result.stdout == "\n", result.output
    stem = audio_files["silence"][0].stem
    assert (tmp_path / f"{stem}.srt").read_text() == "" and (tmp_path / f"{stem}.vtt").read_text() == "WEBVTT\n\n"
    assert json.loads((tmp_path / f"{stem}.json").read_text())["segments"] == []


@pytest.mark.parametrize("suffix,file_format", [("ogg", "OGG"), ("mp3", "MP3"), ("flac", "FLAC")])
def test_speak_writes_the_format_of_the_suffix_into_new_folders(tts_checkpoint, tmp_path, suffix, file_format):
    out = tmp_path / "new" / "folder" / f"hello.{suffix}"
    result = cli("speak", "Hello there.", "-o", out, "--model", tts_checkpoint, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0 and result.stdout == f"wrote {sf.info(str(out)).duration:.2f} s of speech to {out}\n"
    assert sf.info(str(out)).format == file_format and [p.name for p in out.parent.iterdir()] == [out.name]


def test_speak_to_stdout_and_unwritable_paths(tts_checkpoint, tmp_path):
    result = cli("speak", "Hello there.", "-o", "-", "--model", tts_checkpoint, "--device", "cpu", "--threads", "1")
    assert result.exit_code == 0 and result.stderr.startswith("wrote ") and result.stderr.endswith(" s of speech to stdout\n")
    wav, rate = sf.read(io.BytesIO(result.stdout_bytes))
    assert rate == 22050 and len(wav) > 0
    (tmp_path / "a file").write_text("")
    (tmp_path / "a folder.wav").mkdir()
    cases = {tmp_path / "a file" / "x.wav": f"cannot write audio ({tmp_path / 'a file'} is not a folder)",
             tmp_path / "a folder.wav": "cannot write audio (is a directory)",
             tmp_path / "x.aac": "cannot write audio as '.aac' (use .wav, .flac, .ogg, .mp3)"}
    for out, reason in cases.items():
        line = assert_one_error_line(cli("speak", "Hello.", "-o", out, "--model", tts_checkpoint, "--device", "cpu"))
        assert line == f"error: {out}: {reason}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a file", "a folder.wav"]


def test_speak_to_stdout_sends_each_sentence_as_it_is_made(tts_checkpoint, monkeypatch):
    """``speak -o - | aplay`` plays the first sentence while the next ones are synthesized."""
    from speechs2s.tts import load_tts

    tts, made, sent = load_tts(tts_checkpoint, "cpu", "griffin-lim"), [], []
    tts.batch_size = 1
    synthesize = tts._synthesize

    def counted(sentences, pitch):
        for utterance in synthesize(sentences, pitch):
            made.append(utterance)
            yield utterance

    class Stdout(io.BytesIO):
        def write(self, data):
            sent.append((len(made), len(data)))
            return super().write(data)

    stdout = Stdout()
    monkeypatch.setattr(tts, "_synthesize", counted)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(stdout))
    seconds = tts.synthesize_to_file("One sentence. Another one. And a third.", "-")
    assert sent[0] == (0, 44) and sent[1][0] == 1  # the header at once; sentence one before sentence two is made
    assert len(made) == 3 and abs(sf.info(io.BytesIO(stdout.getvalue())).duration - seconds) < 1e-3


def test_speak_reads_a_live_pipe_line_by_line(tts_checkpoint):
    """``producer | speak - -o - | aplay``: a line is spoken while the next one has not been written yet."""
    import select

    process = subprocess.Popen([sys.executable, "-m", "speechs2s", "speak", "-", "-o", "-", "--model", str(tts_checkpoint),
                                "--device", "cpu", "--threads", "1", "--vocoder", "griffin-lim"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdin.write(b"Hello there.\n")
    process.stdin.flush()
    received = b""
    while len(received) <= 44 and select.select([process.stdout], [], [], 60)[0]:  # header, then the first line's audio
        received += os.read(process.stdout.fileno(), 1 << 16)
    assert len(received) > 44
    process.stdin.write(b"And here is a second line.\n")
    process.stdin.close()
    received += process.stdout.read()
    assert process.wait(60) == 0 and b"wrote " in process.stderr.read()
    wav, rate = sf.read(io.BytesIO(received))
    assert len(wav) / rate > 0.4


def test_synthesize_pieces_passes_over_those_without_words(tts_checkpoint, tmp_path):
    from speechs2s.errors import TextError
    from speechs2s.tts import load_tts

    tts = load_tts(tts_checkpoint, "cpu", "griffin-lim")
    seconds = tts.synthesize_to_file(iter(["...\n", "Hello there.\n", "\n"]), tmp_path / "a.wav")
    assert seconds > 0 and abs(sf.info(str(tmp_path / "a.wav")).duration - seconds) < 1e-3
    with pytest.raises(TextError, match="^nothing to speak in the text read"):
        tts.synthesize_to_file(iter(["...\n", " \n"]), tmp_path / "b.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]


def test_speak_interrupted_leaves_no_file(tts_checkpoint, tmp_path, monkeypatch):
    """Ctrl-C after the first sentence: exit 130, no truncated file, an older file of that name intact."""
    from speechs2s.tts import TTS

    synthesize = TTS._synthesize

    def interrupted(self, *args):
        yield next(synthesize(self, *args))
        raise KeyboardInterrupt

    monkeypatch.setattr(TTS, "_synthesize", interrupted)
    out = tmp_path / "speech.wav"
    result = cli("speak", "One sentence. And another one.", "-o", out, "--model", tts_checkpoint, "--device", "cpu")
    assert result.exit_code == 130 and not out.exists() and list(tmp_path.iterdir()) == []
    out.write_bytes(b"older")
    assert cli("speak", "One. Two.", "-o", out, "--model", tts_checkpoint, "--device", "cpu").exit_code == 130
    assert out.read_bytes() == b"older" and list(tmp_path.iterdir()) == [out]


# --- 3. bad configs and manifests for `train` ---------------------------------------------------------

TRAIN_CONFIG = """
task: asr
model:
  name: transformer_asr
  options: {{d_model: 32, n_heads: 2, encoder_layers: 1, decoder_layers: 1, d_ff: 64, subsampling_channels: 4}}
data: {{train: {train}, valid: {valid}, max_frames: 800, num_workers: 0,
       features: {{sample_rate: 8000, n_fft: 200, win_length: 200, hop_length: 80, n_mels: 20}}}}
optim: {{lr: 1e-3, warmup_steps: 2}}
trainer: {{max_steps: 2, valid_every: 1, ckpt_every: 1, out_dir: {out}, device: cpu}}
"""


@pytest.fixture
def train_setup(corpora, tmp_path):
    """A valid training setup on 4 FSDD clips: ``(config path, train manifest, valid manifest, out_dir)``."""
    recordings = corpora / "fsdd" / "recordings"
    entries = [{"id": name, "audio": str(recordings / f"{name}.wav"), "duration": 0.4, "text": text}
               for name, text in [("0_theo_0", "zero"), ("1_theo_0", "one"), ("2_theo_0", "two"), ("3_theo_0", "three")]]
    train, valid, out = tmp_path / "train.jsonl", tmp_path / "valid.jsonl", tmp_path / "exp"
    write_manifest(train, entries[:3])
    write_manifest(valid, entries[3:])
    config = tmp_path / "config.yaml"
    config.write_text(TRAIN_CONFIG.format(train=train, valid=valid, out=out))
    return config, train, valid, out


def _line(entry: dict) -> str:
    return json.dumps(entry) + "\n"


def _break_manifest(change):
    def apply(setup):
        config, train, valid, _ = setup
        lines = train.read_text().splitlines(keepends=True)
        train.write_text("".join(change(lines, json.loads(lines[0]))))
        return []
    return apply


# name -> (change(setup) -> extra CLI args, text the one error line must contain)
TRAIN_CASES = {
    "unknown key": (lambda s: ["--set", "trainer.epochs=3"], "trainer.epochs: unknown key"),
    "unknown key in YAML": (lambda s: s[0].write_text(s[0].read_text().replace("max_steps", "max_stepz")) and [],
                            "trainer.max_stepz: unknown key (did you mean trainer.max_steps?)"),
    "unknown model option": (lambda s: ["--set", "model.options.d_modle=64"], "d_modle"),
    "wrong type": (lambda s: ["--set", "trainer.max_steps=ten"], "trainer.max_steps: expected int, got 'ten'"),
    "wrong type (list)": (lambda s: ["--set", "data.speed_perturb=fast"], "data.speed_perturb: expected list"),
    "bad --set (no =)": (lambda s: ["--set", "optim.lr"], "--set 'optim.lr': expected KEY=VALUE"),
    "bad --set (not a section)": (lambda s: ["--set", "optim.lr.peak=1"], "optim.lr is not a section"),
    "missing config file": (lambda s: s[0].unlink() or [], "config.yaml: cannot read config"),
    "invalid YAML": (lambda s: s[0].write_text("task: asr\nmodel: [1, 2\n") and [], "config.yaml line"),
    "missing train manifest": (lambda s: s[1].unlink() or [], "data.train: manifest"),
    "missing valid manifest": (lambda s: s[2].unlink() or [], "data.valid: manifest"),
    "missing audio file": (_break_manifest(lambda lines, first: lines + [_line({**first, "id": "x", "audio": "/nowhere/x.wav"})]),
                           "train.jsonl: 1 audio file(s) not found: /nowhere/x.wav"),
    "duplicate id": (_break_manifest(lambda lines, first: lines + [lines[0]]), "train.jsonl:4: duplicate id '0_theo_0'"),
    "malformed JSON line": (_break_manifest(lambda lines, first: lines[:1] + ['{"id": "x", "audio": \n'] + lines[1:]),
                            "train.jsonl:2: invalid JSON"),
    "missing key": (_break_manifest(lambda lines, first: lines + [_line({"id": "y", "audio": first["audio"]})]),
                    "train.jsonl:4: missing key 'duration'"),
    "no text (ASR)": (_break_manifest(lambda lines, first: lines + [_line({"id": "y", "audio": first["audio"], "duration": 0.4})]),
                      "1 entries have no 'text', first: 'y'"),
    "bad valid manifest line": (lambda s: s[2].write_text(s[2].read_text() + "[1, 2]\n") and [],
                                "valid.jsonl:2: expected a JSON object, got list"),
    "missing audio in valid manifest": (lambda s: s[2].write_text(s[2].read_text().replace("3_theo_0.wav", "gone.wav")) and [],
                                        "valid.jsonl: 1 audio file(s) not found: "),
}


@pytest.mark.parametrize("case", TRAIN_CASES)
def test_train_rejects_bad_config_before_training(case, train_setup):
    config, _, _, out = train_setup
    change, message = TRAIN_CASES[case]
    extra = change(train_setup)
    line = assert_one_error_line(cli("train", config, *extra))
    assert message in line, line
    assert not (out / "checkpoints").exists() and not (out / "last").exists() and not (out / "tensorboard").exists()


# --- 4-6. checkpoints from the command line (the library side is in test_checkpoint.py) -----------------


def test_cli_refuses_pickle_and_damaged_checkpoints(asr_checkpoint, audio_files, tmp_path):
    wav = audio_files["8 kHz"][0]
    marker = tmp_path / "pwned"
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((asr_checkpoint / "config.json").read_text())

    class Malicious:
        def __reduce__(self):
            return (Path.touch, (marker,))

    torch.save({"weight": Malicious()}, pickled / "model.pt")
    assert "refusing to load pickle file model.pt" in assert_one_error_line(cli("transcribe", wav, "--model", pickled), "pickled")
    assert_one_error_line(cli("speak", "hello", "-o", tmp_path / "x.wav", "--model", pickled), "pickled")
    assert not marker.exists()

    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (damaged / name).write_text((asr_checkpoint / name).read_text())
    (damaged / "model.safetensors").write_bytes(b"\x10\x00junk")
    assert_one_error_line(cli("transcribe", wav, "--model", damaged), "damaged")
    assert_one_error_line(cli("transcribe", wav, "--model", tmp_path / "no such model"), "no such model")
    assert_one_error_line(cli("speak", "hello", "-o", tmp_path / "x.wav", "--model", asr_checkpoint), "asr")


def test_cli_bad_device_is_one_line(asr_checkpoint, audio_files, tmp_path):
    wav = audio_files["8 kHz"][0]
    assert_one_error_line(cli("transcribe", wav, "--model", asr_checkpoint, "--device", "gpu0"), "gpu0", "cuda:N")
    assert_one_error_line(cli("transcribe", wav, "--model", asr_checkpoint, "--device", "cuda:99"), "cuda:99")
    assert_one_error_line(cli("speak", "hi", "-o", tmp_path / "x.wav", "--device", "cuda:99"), "cuda:99")


def test_cli_download_refuses_archive_escapes(tmp_path):
    import io
    import tarfile

    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name, data in [("corpus/ok.txt", b"fine"), ("../escape.txt", b"evil")]:
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    target = tmp_path / "out" / "inner"
    result = cli("download", archive.as_uri(), tmp_path / "downloads/", "--extract", target)
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ") and "'../escape.txt'" in result.stderr
    assert not (tmp_path / "out" / "escape.txt").exists() and not list(target.rglob("*.txt"))
    assert_one_error_line(cli("download", (tmp_path / "none.tar").as_uri(), tmp_path / "d/"), "none.tar")
