"""ASR accuracy and speed: speechs2s vs Whisper tiny.en (float32, int8) vs PocketSphinx on the same files.

    benchmarks/.venv-peers/bin/python benchmarks/asr_accuracy_speed.py [--quick] [--threads 1,2]

For each test set (see common.py) and thread count, every system runs in a fresh process on the
same 16 kHz arrays: WER/CER (normalize_for_asr on both sides), real-time factor (median over
``--repeats`` passes after one warm-up utterance), load time (library import included), peak
resident memory of the process and the part of it added by importing, loading and running. Systems:

- ``speechs2s``: ``load_asr(--asr-model)``, one file at a time (as ``speechs2s transcribe file.wav``);
- ``speechs2s-batched``: the same model given the whole set in one ``transcribe([...])`` call;
- ``whisper-fp32`` / ``whisper-int8``: Whisper tiny.en in CTranslate2 (faster-whisper), beam 5;
- ``pocketsphinx``: PocketSphinx 5 with its bundled US English model, LM and dictionary.
"""
import common


def load_recogniser(system: str, threads: int, asr_model: str):
    """A function ``list of 16 kHz float32 arrays -> list of texts`` for ``system``."""
    if system.startswith("speechs2s"):
        import speechs2s

        asr = speechs2s.load_asr(asr_model, device="cpu")
        if system == "speechs2s-batched":
            return lambda wavs: [t.text for t in asr.transcribe(wavs, sample_rate=common.SAMPLE_RATE)]
        return lambda wavs: [asr.transcribe(wav, sample_rate=common.SAMPLE_RATE).text for wav in wavs]
    if system.startswith("whisper"):
        whisper = common.whisper_tiny_en({"whisper-fp32": "float32", "whisper-int8": "int8"}[system], threads)
        return lambda wavs: [whisper(wav) for wav in wavs]
    if system == "pocketsphinx":
        import numpy as np
        from pocketsphinx import Decoder

        decoder = Decoder(samprate=common.SAMPLE_RATE, loglevel="FATAL")

        def sphinx(wav):
            decoder.start_utt()
            decoder.process_raw((np.clip(wav, -1, 1) * 32767).astype(np.int16).tobytes(), full_utt=True)
            decoder.end_utt()
            return decoder.hyp().hypstr if decoder.hyp() else ""

        return lambda wavs: [sphinx(wav) for wav in wavs]
    raise ValueError(f"unknown system {system!r}")


def run_system(threads: int, system: str, wavs: list, repeats: int, asr_model: str) -> dict:
    """In a fresh process: load, warm up on the first utterance, time ``repeats`` passes over ``wavs``."""
    rss_before = common.rss_mb()
    recognise, load_s = common.timed(load_recogniser, system, threads, asr_model)
    recognise(wavs[:1])
    hyps, seconds = common.median_seconds(lambda: recognise(wavs), repeats)
    peak = common.peak_rss_mb()
    return {"hyps": hyps, "seconds": seconds, "load_s": load_s, "peak_rss_mb": peak, "model_rss_mb": peak - rss_before}


def main():
    cli = common.parser(__doc__)
    cli.add_argument("--systems", default="speechs2s,speechs2s-batched,whisper-fp32,whisper-int8,pocketsphinx")
    cli.add_argument("--asr-model", default="default", help="speechs2s checkpoint (dir or bundled name)")
    cli.add_argument("--sets", default=None, help="comma-separated test sets to run (default: all available)")
    cli.add_argument("--synth-test", default=str(common.SYNTH_TEST), help="multi-voice held-out manifest")
    args = cli.parse_args()

    notes = []
    systems = args.systems.split(",")
    common.require_speechs2s_model(systems, args.asr_model, "asr")
    test_sets = common.asr_test_sets(args.quick, args.synth_test)
    if args.sets:
        test_sets = [t for t in test_sets if t.name in args.sets.split(",")]

    rows = []
    for test_set in test_sets:
        wavs = common.load_16k(test_set.entries)
        refs = [entry["text"] for entry in test_set.entries]
        audio_s = sum(len(wav) for wav in wavs) / common.SAMPLE_RATE
        print(f"{test_set.name}: {len(wavs)} utterances, {audio_s:.1f} s -- {test_set.description}")
        for threads in common.thread_counts(args):
            for system in systems:
                result = common.run_isolated(run_system, threads, system, wavs, common.repeats(args), args.asr_model)
                row = {"set": test_set.name, "utterances": len(wavs), "audio_s": audio_s, "system": system, "threads": threads,
                       **common.score(refs, result["hyps"]), "rtf": result["seconds"] / audio_s,
                       **{key: result[key] for key in ("load_s", "peak_rss_mb", "model_rss_mb")},
                       "hyps": dict(zip((e["id"] for e in test_set.entries), result["hyps"]))}
                rows.append(row)
                print(f"  {system:18s} {threads} thr: WER {row['wer']:6.2f}%  CER {row['cer']:6.2f}%  RTF {row['rtf']:.3f}  "
                      f"load {row['load_s']:.2f} s  peak {row['peak_rss_mb']:.0f} MB")
    common.add_speed_ratios(rows, same=("set", "threads"))
    columns = [("set", "set", ""), ("system", "system", ""), ("threads", "thr", "d"), ("wer", "WER %", ".1f"),
               ("cer", "CER %", ".1f"), ("rtf", "RTF", ".3f"), ("speed_vs_speechs2s", "speechs2s faster ×", ".2f"),
               ("load_s", "load s", ".2f"), ("peak_rss_mb", "peak RSS MB", ".0f"), ("model_rss_mb", "model RSS MB", ".0f")]
    sets = ", ".join(f"{t.name} ({len(t.entries)} utts, {60 * t.hours:.1f} min)" for t in test_sets)
    notes.append(f"Test sets: {sets}. RTF = processing s / audio s (lower is faster), median of "
                 f"{common.repeats(args)} pass(es) after a warm-up utterance; 'speechs2s faster ×' = system RTF / speechs2s RTF.")
    common.record("asr_accuracy_speed", args, {"rows": rows}, [("ASR accuracy and speed", rows, columns)], notes)


if __name__ == "__main__":
    main()
