"""Join single spoken digits into digit runs ("three seven one"), so a model trained on FSDD learns that
a digit utterance need not end after one word.

    python recipes/tools/digit_runs.py FSDD_MANIFEST OUT_DIR --count 1500 [--min-digits 2] [--max-digits 6]

Each run takes 2-6 recordings of one speaker (from the manifest, so held-out speakers stay held out),
trims their leading and trailing silence, joins them with 50-350 ms pauses, and is written as 16 kHz FLAC
to ``OUT_DIR/audio/<id>.flac``; ``OUT_DIR/manifest.jsonl`` lists them (text: the digit words, space-joined).
Seeded: the same arguments give the same runs.
"""
import argparse
import random
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile
import torch

from speechs2s.audio import load_audio
from speechs2s.data.manifest import read_manifest, write_manifest
from speechs2s.errors import SpeechS2SError
from speechs2s.vad import frame_levels

SAMPLE_RATE = 16000


def trim_silence(wav: torch.Tensor, threshold_db: float = -40.0, frame: int = 160) -> torch.Tensor:
    """``wav`` (T,) without the leading and trailing 10 ms frames quieter than ``threshold_db`` below its peak."""
    levels = frame_levels(wav, frame)
    if not len(levels):
        return wav
    voiced = np.flatnonzero(levels > levels.max() + threshold_db)
    return wav[int(voiced[0]) * frame: (int(voiced[-1]) + 1) * frame]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", help="single-digit utterances (speechs2s prepare fsdd)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, required=True, help="digit runs to write")
    parser.add_argument("--min-digits", type=int, default=2)
    parser.add_argument("--max-digits", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if not 1 <= args.min_digits <= args.max_digits:
        sys.exit("error: need 1 <= --min-digits <= --max-digits")
    try:
        entries = read_manifest(args.manifest)
    except SpeechS2SError as error:
        sys.exit(f"error: {error}")
    by_speaker = defaultdict(list)
    for entry in entries:
        by_speaker[entry.get("speaker", "")].append(entry)
    speakers = sorted(by_speaker)
    rng = random.Random(args.seed)
    (args.out_dir / "audio").mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(args.count):
        speaker = rng.choice(speakers)
        parts = rng.sample(by_speaker[speaker], rng.randint(args.min_digits, args.max_digits))
        pieces = [torch.zeros(int(rng.uniform(0.05, 0.25) * SAMPLE_RATE))]
        for part in parts:
            try:
                pieces.append(trim_silence(load_audio(part["audio"], SAMPLE_RATE)))
            except SpeechS2SError as error:
                sys.exit(f"error: {error}")
            pieces.append(torch.zeros(int(rng.uniform(0.05, 0.35) * SAMPLE_RATE)))
        wav = torch.cat(pieces)
        run_id = f"digits_{speaker}_{index:05d}"
        path = args.out_dir / "audio" / f"{run_id}.flac"
        soundfile.write(path, wav.numpy(), SAMPLE_RATE)
        runs.append({"id": run_id, "text": " ".join(part["text"] for part in parts), "speaker": speaker,
                     "audio": str(path.resolve()), "duration": len(wav) / SAMPLE_RATE})
    write_manifest(args.out_dir / "manifest.jsonl", runs)
    hours = sum(run["duration"] for run in runs) / 3600
    print(f"wrote {len(runs)} digit runs ({hours:.2f} h) from {len(speakers)} speakers to {args.out_dir}")


if __name__ == "__main__":
    main()
