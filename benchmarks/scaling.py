"""Scaling with input length: ASR from 5 s to 10 min of audio, TTS from 1 to 50 sentences.

    benchmarks/.venv-peers/bin/python benchmarks/scaling.py [--quick] [--threads 1] [--part asr|tts|both]

ASR: the 5 LibriVox utterances (real read speech), repeated in order and joined with 0.6 s of
silence into one recording of at least each target length, transcribed in one call per system (speechs2s cuts long inputs at
silences, Whisper slides its 30 s window, PocketSphinx decodes one long utterance); WER against
the joined transcripts shows whether accuracy holds on long inputs. TTS: the first n sentences of
the TTS benchmark as one text, synthesized in one call. Each system runs in a fresh process over
lengths in increasing order, one input in memory at a time: the peak memory column is the
process peak up to that length.
"""
import shutil
import tempfile
from pathlib import Path

import numpy as np

import common
from asr_accuracy_speed import load_recogniser
from tts_intelligibility_speed import SENTENCES, Voice

ASR_SECONDS = [5, 30, 60, 300, 600]
TTS_SENTENCES = [1, 5, 10, 25, 50]
GAP_SECONDS = 0.6


def long_recordings(targets: list[float], folder: Path) -> list[tuple[str, float, str]]:
    """For each target, LibriVox utterances repeated in order until at least that many seconds, as
    16 kHz WAV files in ``folder``: ``(path, seconds, reference text)``."""
    import soundfile

    test_set = common.librivox()
    wavs, gap = common.load_16k(test_set.entries), np.zeros(int(GAP_SECONDS * common.SAMPLE_RATE), np.float32)
    recordings = []
    for target in targets:
        pieces, texts, index = [], [], 0
        while sum(len(p) for p in pieces) < target * common.SAMPLE_RATE:
            pieces += [wavs[index % len(wavs)], gap]
            texts.append(test_set.entries[index % len(wavs)]["text"])
            index += 1
        path = folder / f"{target}s.wav"
        soundfile.write(path, np.concatenate(pieces[:-1]), common.SAMPLE_RATE)
        recordings.append((str(path), soundfile.info(path).duration, " ".join(texts)))
    return recordings


def asr_curve(threads: int, system: str, paths: list[str], asr_model: str) -> list[dict]:
    """In a fresh process: transcript, seconds and process peak memory after each recording (shortest
    first; one recording in memory at a time, read before the clock starts)."""
    import soundfile

    recognise = load_recogniser(system, threads, asr_model)
    recognise([soundfile.read(paths[0], dtype="float32")[0]])  # warm-up
    points = []
    for path in paths:
        wav = soundfile.read(path, dtype="float32")[0]
        (text,), seconds = common.timed(recognise, [wav])
        del wav
        points.append({"hyp": text, "seconds": seconds, "peak_rss_mb": common.peak_rss_mb()})
    return points


def tts_curve(threads: int, system: str, texts: list[str], tts_model: str) -> list[dict]:
    """In a fresh process: seconds, audio length, first-audio latency and peak memory after each text (shortest first)."""
    voice = Voice(system, threads, tts_model)
    voice.speak(texts[0])  # warm-up
    points = []
    for text in texts:
        speech, seconds = common.timed(voice.speak, text)
        points.append({"seconds": seconds, "audio_s": speech.duration, "first_audio_s": speech.first_audio_s,
                       "guard_hits": speech.guard_hits, "peak_rss_mb": common.peak_rss_mb()})
    return points


def asr_scaling(args) -> tuple[list[dict], tuple]:
    """Rows and table of the ASR curve."""
    folder = Path(tempfile.mkdtemp(prefix="asr-scaling-"))
    recordings = long_recordings(ASR_SECONDS[:3] if args.quick else ASR_SECONDS, folder)
    systems = args.asr_systems.split(",")
    rows = []
    for threads in common.thread_counts(args):
        for system in systems:
            points = common.run_isolated(asr_curve, threads, system, [path for path, _, _ in recordings], args.asr_model)
            for (_, audio_s, ref), point in zip(recordings, points):
                rows.append({"system": system, "threads": threads, "audio_s": audio_s, "seconds": point["seconds"],
                             "rtf": point["seconds"] / audio_s, **common.score([ref], [point["hyp"]]),
                             "peak_rss_mb": point["peak_rss_mb"], "hyp": point["hyp"]})
                print(f"asr {system:14s} {threads} thr {audio_s:7.1f} s: RTF {rows[-1]['rtf']:.3f}  WER {rows[-1]['wer']:.1f}%  "
                      f"peak {point['peak_rss_mb']:.0f} MB")
    shutil.rmtree(folder)
    return rows, ("ASR: one recording of growing length (LibriVox utterances repeated)", rows, [
        ("system", "system", ""), ("threads", "thr", "d"), ("audio_s", "audio s", ".1f"), ("seconds", "time s", ".2f"),
        ("rtf", "RTF", ".3f"), ("wer", "WER %", ".1f"), ("peak_rss_mb", "peak RSS MB", ".0f")])


def tts_scaling(args) -> tuple[list[dict], tuple]:
    """Rows and table of the TTS curve."""
    counts = TTS_SENTENCES[:3] if args.quick else TTS_SENTENCES
    texts = [" ".join(SENTENCES[i % len(SENTENCES)] for i in range(n)) for n in counts]
    systems = args.tts_systems.split(",")
    rows = []
    for threads in common.thread_counts(args):
        for system in systems:
            points = common.run_isolated(tts_curve, threads, system, texts, args.tts_model)
            for n, point in zip(counts, points):
                rows.append({"system": system, "threads": threads, "sentences": n, **point, "rtf": point["seconds"] / point["audio_s"]})
                print(f"tts {system:10s} {threads} thr {n:3d} sentences: RTF {rows[-1]['rtf']:.3f}  "
                      f"first audio {point['first_audio_s']:.2f} s  peak {point['peak_rss_mb']:.0f} MB")
    return rows, ("TTS: one text of growing length", rows, [
        ("system", "system", ""), ("threads", "thr", "d"), ("sentences", "sentences", "d"), ("audio_s", "audio s", ".1f"),
        ("seconds", "time s", ".2f"), ("rtf", "RTF", ".3f"), ("first_audio_s", "first audio s", ".2f"),
        ("guard_hits", "guard hits", "d"), ("peak_rss_mb", "peak RSS MB", ".0f")])


def main():
    cli = common.parser(__doc__)
    cli.add_argument("--part", choices=["asr", "tts", "both"], default="both")
    cli.add_argument("--asr-systems", default="speechs2s,whisper-fp32,pocketsphinx")
    cli.add_argument("--tts-systems", default="speechs2s,piper,espeak-ng")
    cli.add_argument("--asr-model", default="default")
    cli.add_argument("--tts-model", default="default")
    args = cli.parse_args()

    parts = [part for part in ("asr", "tts") if args.part in (part, "both")]
    for part in parts:  # every model checked before any part runs
        common.require_speechs2s_model(getattr(args, f"{part}_systems").split(","), getattr(args, f"{part}_model"), part)
    results, tables = {}, []
    for part in parts:
        results[part], table = {"asr": asr_scaling, "tts": tts_scaling}[part](args)
        tables.append(table)
    common.record("scaling", args, results, tables)


if __name__ == "__main__":
    main()
