"""LM training text from the LibriSpeech LM corpus (openslr.org SLR11 ``librispeech-lm-norm.txt.gz``: one
normalised upper-case sentence per line).

    python recipes/tools/librispeech_lm_text.py librispeech-lm-norm.txt.gz lm_train.txt --every 10 \\
        --exclude data/test-clean.jsonl --exclude data/test-other.jsonl

Streams the corpus and keeps every ``--every``-th sentence (the trainer holds its whole text in memory),
never one that is also the transcript of an utterance in an ``--exclude`` manifest. Case and punctuation
stay as they are: the ASR tokenizer normalises whatever it encodes.
"""
import argparse
import gzip
import sys
from pathlib import Path

from speechs2s.data.manifest import read_manifest
from speechs2s.errors import SpeechS2SError
from speechs2s.utils import replacing


def select_sentences(lines, every: int, excluded: set[str]):
    """Every ``every``-th non-empty line (the 1st, the ``every + 1``-th, ...), stripped, less ``excluded``."""
    sentences = (line.strip() for line in lines)
    for number, sentence in enumerate(filter(None, sentences)):
        if number % every == 0 and sentence not in excluded:
            yield sentence


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path, help="librispeech-lm-norm.txt.gz (or the unpacked .txt)")
    parser.add_argument("out", type=Path, help="the LM training text, one sentence per line")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th sentence (default: all)")
    parser.add_argument("--exclude", type=Path, action="append", default=[],
                        help="manifest whose transcripts must not be LM training text (repeatable)")
    args = parser.parse_args(argv)
    if args.every < 1:
        sys.exit(f"error: --every must be at least 1, got {args.every}")
    try:
        excluded = {entry["text"].strip() for path in args.exclude for entry in read_manifest(path)}
        opener = gzip.open if args.corpus.suffix == ".gz" else open
        args.out.parent.mkdir(parents=True, exist_ok=True)
        kept = 0
        with opener(args.corpus, "rt", encoding="utf-8") as corpus, replacing(args.out) as temporary:
            with open(temporary, "w", encoding="utf-8") as out:
                for sentence in select_sentences(corpus, args.every, excluded):
                    out.write(sentence + "\n")
                    kept += 1
            if not kept:
                sys.exit(f"error: {args.corpus}: no sentences")
    except SpeechS2SError as error:
        sys.exit(f"error: {error}")
    except OSError as error:
        sys.exit(f"error: {error.filename or args.corpus}: {error.strerror or error}")
    except (EOFError, UnicodeDecodeError) as error:
        sys.exit(f"error: {args.corpus}: cannot read ({error})")
    print(f"{kept} sentences (every {args.every}th, {len(excluded)} excluded transcripts) -> {args.out}")


if __name__ == "__main__":
    main()
