"""Sentences for a language model: LJSpeech metadata (normalized column) and plain sentence files, less
the sentences reserved for evaluation, deduplicated; every 100th line goes to the validation file.

    python recipes/tools/lm_text.py TRAIN_TXT VALID_TXT [--ljspeech metadata.csv]... [--sentences file.txt]...

LJSpeech lines of chapters LJ001-LJ003 are always left out (reserved for evaluation), and so is every
sentence of ``--exclude`` files (default: ``benchmarks/tts_heldout_sentences.txt``, the TTS held-out set).
"""
import argparse
import csv
import sys
from pathlib import Path

RESERVED_CHAPTERS = ("LJ001-", "LJ002-", "LJ003-")
REPO = Path(__file__).resolve().parents[2]
HELD_OUT_SENTENCES = REPO / "benchmarks" / "tts_heldout_sentences.txt"  # the TTS held-out set: never training text


def ljspeech_sentences(path: Path) -> list[str]:
    """The normalized text of an LJSpeech ``metadata.csv`` (id|text|normalized), reserved chapters left out."""
    with open(path, encoding="utf-8", newline="") as file:
        rows = list(csv.reader(file, delimiter="|", quoting=csv.QUOTE_NONE))
    return [row[-1] for row in rows if row and not row[0].startswith(RESERVED_CHAPTERS)]


def plain_sentences(path: Path) -> list[str]:
    """Non-empty lines that are not ``#`` comments."""
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train", type=Path)
    parser.add_argument("valid", type=Path)
    parser.add_argument("--ljspeech", type=Path, action="append", default=[], help="LJSpeech-style metadata.csv")
    parser.add_argument("--sentences", type=Path, action="append", default=[], help="one sentence per line")
    parser.add_argument("--exclude", type=Path, action="append",
                        default=[HELD_OUT_SENTENCES])
    args = parser.parse_args()
    try:
        excluded = {line for path in args.exclude for line in plain_sentences(path)}
        sentences = [s for path in args.ljspeech for s in ljspeech_sentences(path)]
        sentences += [s for path in args.sentences for s in plain_sentences(path)]
    except OSError as error:
        sys.exit(f"error: {error.filename}: {error.strerror}")
    kept = [s for s in dict.fromkeys(sentences) if s not in excluded]
    if not kept:
        sys.exit("error: no sentences (give --ljspeech and/or --sentences files)")
    for path, lines in ((args.train, [s for i, s in enumerate(kept, 1) if i % 100]),
                        (args.valid, kept[99::100])):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{len(kept)} sentences ({len(sentences) - len(kept)} duplicates or excluded left out): "
          f"{args.train}, every 100th in {args.valid}")


if __name__ == "__main__":
    main()
