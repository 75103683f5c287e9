"""Recipes: every run.sh parses, options are checked, the LibriSpeech download + prepare stages run
offline against tiny LibriSpeech-layout tarballs served on loopback, FSDD holds its test speaker
out, and the multi-voice corpus generator makes a valid, resumable corpus."""
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechs2s.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
RUN_SCRIPTS = sorted((REPO / "recipes").glob("*/*/run.sh"))
LIBRI_PARTS = {"train-clean-100": ("103", "1240"), "dev-clean": ("84", "121123"), "test-clean": ("1089", "134686")}


def run_recipe(script: Path, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("SPEECHS2S_DATA", None)
    if data is not None:
        env["SPEECHS2S_DATA"] = str(data)
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", RUN_SCRIPTS, ids=lambda p: str(p.parent.relative_to(REPO / "recipes")))
def test_run_script_syntax_and_mode(script):
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert os.access(script, os.X_OK)
    assert (script.parent / "README.md").is_file()


def test_options_are_checked():
    script = REPO / "recipes" / "fsdd" / "asr" / "run.sh"
    assert "--stop-stage" in run_recipe(script, "--help").stdout
    unknown = run_recipe(script, "--no-such-option", "1")
    assert unknown.returncode == 1 and "unknown option --no-such-option" in unknown.stderr
    no_data = run_recipe(script, "--stop-stage", "1")
    assert no_data.returncode == 1 and "pass --data DIR or set SPEECHS2S_DATA" in no_data.stderr


@pytest.fixture
def libri_server(tmp_path):
    """Loopback server with ``<part>.tar.gz`` in LibriSpeech layout (2 utterances each) and a
    ``sha256sums.txt`` for them; yields ``(base_url, checksums_path)``."""
    served = tmp_path / "served"
    for part, (speaker, chapter) in LIBRI_PARTS.items():
        folder = tmp_path / "build" / "LibriSpeech" / part / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for index, words in enumerate(["HELLO WORLD", "IT'S A TINY FIXTURE"]):
            utterance = f"{speaker}-{chapter}-{index:04d}"
            tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(8000 + 1600 * index) / 16000)
            sf.write(folder / f"{utterance}.flac", tone, 16000)
            lines.append(f"{utterance} {words}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
        served.mkdir(exist_ok=True)
        with tarfile.open(served / f"{part}.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "build" / "LibriSpeech" / part, arcname=f"LibriSpeech/{part}")
    checksums = tmp_path / "sha256sums.txt"
    checksums.write_text("".join(
        f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n" for path in sorted(served.iterdir())
    ))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", checksums
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_librispeech_download_and_prepare_offline(libri_server, tmp_path):
    base_url, checksums = libri_server
    script = REPO / "recipes" / "librispeech" / "asr" / "run.sh"
    corpora, manifests = tmp_path / "corpora", tmp_path / "manifests"
    args = ["--data", str(corpora), "--base-url", base_url, "--checksums", str(checksums), "--dev-sets", "dev-clean",
            "--test-sets", "test-clean", "--manifests", str(manifests), "--stop-stage", "1"]

    result = run_recipe(script, *args)
    assert result.returncode == 0, result.stderr
    assert "=== stage 0" in result.stdout and "=== stage 1" in result.stdout and "=== stage 2" not in result.stdout
    for part, (speaker, chapter) in LIBRI_PARTS.items():
        entries = read_manifest(manifests / f"{part}.jsonl", check_files=True)
        assert [e["id"] for e in entries] == [f"{speaker}-{chapter}-0000", f"{speaker}-{chapter}-0001"]
        assert [e["text"] for e in entries] == ["HELLO WORLD", "IT'S A TINY FIXTURE"]
        assert {e["speaker"] for e in entries} == {speaker}
        assert [e["duration"] for e in entries] == pytest.approx([0.5, 0.6])
        assert (corpora / "downloads" / f"{part}.tar.gz").is_file()
    assert [e["id"] for e in read_manifest(manifests / "train_100h.jsonl")] == ["103-1240-0000", "103-1240-0001"]

    # Re-running is idempotent and needs no network: downloads and extraction are skipped.
    shutil.rmtree(corpora / "LibriSpeech" / "dev-clean" / "84")  # would come back if re-extracted
    (corpora / "LibriSpeech" / "dev-clean" / "84").mkdir()
    again = run_recipe(script, *args[:2], "--base-url", "http://127.0.0.1:9/unreachable", *args[4:], "--stop-stage", "0")
    assert again.returncode == 0, again.stderr
    assert not any((corpora / "LibriSpeech" / "dev-clean" / "84").iterdir())


def test_librispeech_checksum_mismatch_stops_the_recipe(libri_server, tmp_path):
    base_url, checksums = libri_server
    bad = tmp_path / "bad_sums.txt"
    bad.write_text(checksums.read_text().replace(checksums.read_text()[:64], "0" * 64, 1))  # first file: dev-clean
    result = run_recipe(REPO / "recipes" / "librispeech" / "asr" / "run.sh", "--data", str(tmp_path / "corpora"),
                        "--base-url", base_url, "--checksums", str(bad), "--dev-sets", "dev-clean", "--stop-stage", "0")
    assert result.returncode == 1
    assert "dev-clean.tar.gz: sha256 mismatch" in result.stderr
    assert not list((tmp_path / "corpora" / "downloads").glob("dev-clean*"))


@pytest.mark.slow  # ~12 s: three `speechs2s prepare` runs over 2500 files
def test_fsdd_prepare_holds_the_test_speaker_out(corpora, tmp_path):
    result = run_recipe(REPO / "recipes" / "fsdd" / "asr" / "run.sh", "--stop-stage", "1", "--test-speaker", "yweweler",
                        "--manifests", str(tmp_path), data=corpora)
    assert result.returncode == 0, result.stderr
    speakers = {split: {e["speaker"] for e in read_manifest(tmp_path / f"{split}.jsonl")} for split in ("train", "valid", "test")}
    assert speakers["test"] == {"yweweler"}
    assert speakers["train"] == speakers["valid"] == {"george", "jackson", "nicolas", "theo"}
    assert len(read_manifest(tmp_path / "test.jsonl")) == 500


@pytest.mark.slow  # ~15 s: four TTS engines, the Piper voice loaded in two processes
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                    reason="TTS engines not installed (recipes/synth/asr/run.sh stage 0)")
def test_make_corpus_small_and_resumable(corpora, tmp_path):
    sys.path.insert(0, str(REPO / "recipes" / "synth" / "local"))
    import make_corpus

    out = tmp_path / "synth"
    args = ["--joe-lj", str(corpora / "joe-lj"), "--out", str(out), "--num-train", "4", "--num-valid", "2",
            "--num-test", "3", "--jobs", "2", "--test-voices", "flite:awb,flite:rms,espeak:en-gb-scotland+f2"]
    make_corpus.main(args)
    splits = {split: read_manifest(out / f"{split}.jsonl", check_files=True) for split in ("train", "valid", "test")}
    assert [len(entries) for entries in splits.values()] == [4, 2, 3]
    test_voices = {"flite:awb", "flite:rms", "espeak:en-gb-scotland+f2"}
    assert {e["speaker"] for e in splits["test"]} <= test_voices
    assert not {e["speaker"] for e in splits["train"] + splits["valid"]} & test_voices
    for entry in splits["train"]:
        wav, rate = sf.read(entry["audio"])
        assert rate == 16000 and wav.ndim == 1 and entry["duration"] == pytest.approx(len(wav) / 16000)
        assert 0.5 < entry["duration"] < 30 and 0.05 < np.abs(wav).max() <= 1.0
    texts = {split: set(sentences + commands) for split, (sentences, commands) in make_corpus.texts(corpora / "joe-lj").items()}
    assert not texts["test"] & (texts["train"] | texts["valid"])  # unseen sentences and commands
    assert not texts["valid"] & texts["train"] - set(make_corpus.COMMANDS)

    first = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")}
    make_corpus.main(args)  # resumable: existing files are kept, manifests identical
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")} == first
    assert read_manifest(out / "test.jsonl") == splits["test"]


def test_joe_tts_fastspeech_stages(corpora, tmp_path):
    """Stages 5-6 of the joe TTS recipe with the bundled Transformer-TTS as stage 2's model:
    durations for both manifests, a FastSpeech run that starts from it, and a spoken sentence."""
    from speechs2s.checkpoint import resolve_checkpoint
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.data.manifest import write_manifest
    from test_tts_models import SHORT_IDS

    entries = [e for e in import_ljspeech(corpora / "joe-lj" / "dev") if e["id"] in SHORT_IDS]
    write_manifest(tmp_path / "data/train.jsonl", entries[:3])
    write_manifest(tmp_path / "data/valid.jsonl", entries[3:])
    (tmp_path / "sentences.txt").write_text("Hello there.\n")
    result = run_recipe(REPO / "recipes" / "joe" / "tts" / "run.sh", "--stage", "5", "--manifests", str(tmp_path / "data"),
                        "--exp", str(resolve_checkpoint("tts-transformer")), "--fastspeech-exp", str(tmp_path / "fs"),
                        "--vocoder-exp", str(tmp_path / "no_vocoder"), "--sentences", str(tmp_path / "sentences.txt"),
                        "--overrides", "trainer.max_steps=1 trainer.device=cpu data.num_workers=0 model.options.decoder_layers=1")
    assert result.returncode == 0, result.stderr
    assert [len(read_manifest(tmp_path / f"data/{name}_durations.jsonl")) for name in ("train", "valid")] == [3, 1]
    assert "init_from" in result.stderr and (tmp_path / "fs/final/model.safetensors").is_file()
    wav, rate = sf.read(tmp_path / "fs/samples/001.wav")
    assert rate == 22050 and len(wav) > 0 and (tmp_path / "fs/samples/001.png").is_file()  # 1 step: not speech yet
