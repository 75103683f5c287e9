"""Pack a seeded random part of a manifest's audio into a small folder, for a machine that gets files only.

    python recipes/tools/pack_audio.py MANIFEST OUT_DIR --max-mib 18 [--sample-rate 16000] [--codec opus] [--level L] [--seed 0]

Each entry's audio is read (its ``start``..``end`` part), resampled and written as OGG to
``OUT_DIR/audio/<id>.ogg``: Opus at ~20 kbit/s (ample for 16 kHz ASR features; Opus rates only) or
Vorbis at ~60 kbit/s (as joe-lj itself, for vocoders at any rate), until the folder would pass
``--max-mib``; ``--level`` (libsndfile's compression level, 0-1) trades quality for hours.
``OUT_DIR/manifest.jsonl`` lists the packed entries with relative paths. Entries are taken
in a seeded random order, so a pack is a fair sample and the same arguments give the same pack.
"""
import argparse
import io
import random
import sys
from pathlib import Path

import soundfile

from speechs2s.audio import load_audio
from speechs2s.data.augment import OPUS_RATES
from speechs2s.data.manifest import read_manifest, write_manifest
from speechs2s.errors import SpeechS2SError

# libsndfile's compression level: Opus 0.95 ~ 20 kbit/s at 16 kHz (0.98 ~ 13, 1.0 ~ 8); Vorbis 0.5 ~ 60 kbit/s at 22.05 kHz (joe-lj's own)
CODECS = {"opus": ("OPUS", 0.95), "vorbis": ("VORBIS", 0.5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--max-mib", type=float, required=True, help="size limit of the packed audio")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--codec", choices=list(CODECS), default="opus")
    parser.add_argument("--level", type=float, help="compression level, 0-1 (default: the codec's above)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.codec == "opus" and args.sample_rate not in OPUS_RATES:
        sys.exit(f"error: --sample-rate {args.sample_rate}: Opus takes {', '.join(map(str, OPUS_RATES))} (or --codec vorbis)")
    subtype, level = CODECS[args.codec]
    level = level if args.level is None else args.level
    if not 0 <= level <= 1:
        sys.exit(f"error: --level {level}: give a compression level from 0 to 1")
    try:
        entries = read_manifest(args.manifest)
    except SpeechS2SError as error:
        sys.exit(f"error: {error}")
    random.Random(args.seed).shuffle(entries)
    budget, used, packed = args.max_mib * 2**20, 0, []
    (args.out_dir / "audio").mkdir(parents=True, exist_ok=True)
    for entry in entries:
        try:
            wav = load_audio(entry["audio"], args.sample_rate, entry.get("start", 0.0), entry.get("end"))
        except SpeechS2SError as error:
            print(f"skipping {entry['id']}: {error}", file=sys.stderr)
            continue
        data = io.BytesIO()
        soundfile.write(data, wav.numpy(), args.sample_rate, format="OGG", subtype=subtype, compression_level=level)
        if used + data.tell() > budget:
            break
        name = f"audio/{entry['id']}.ogg"
        (args.out_dir / name).write_bytes(data.getvalue())
        used += data.tell()
        packed.append({key: value for key, value in entry.items() if key not in ("start", "end")}
                      | {"audio": name, "duration": len(wav) / args.sample_rate})
    packed.sort(key=lambda entry: entry["id"])
    write_manifest(args.out_dir / "manifest.jsonl", packed)
    hours = sum(entry["duration"] for entry in packed) / 3600
    print(f"packed {len(packed)} of {len(entries)} entries ({hours:.2f} h, {used / 2**20:.1f} MiB) into {args.out_dir}")


if __name__ == "__main__":
    main()
