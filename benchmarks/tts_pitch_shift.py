"""Does ``speak --pitch N`` move the pitch by N semitones? Median F0 (YIN with the tracker's defaults, voiced
frames) of a TTS model's speech at 0, +4 and -4 semitones on the first 10 choice sentences, against 2 ** (N / 12).
The median, because octave errors pull a mean: with the lenient thresholds this benchmark used until round 17
(needed for Griffin-Lim's phase), the bundle's mean F0 came out at 115 Hz (results/tts_round16/tts_pitch_shift-20261129-141737.json)
where its median is 86 Hz (results/tts_round17/tts_pitch_shift-20261129-153914.json).

    python benchmarks/tts_pitch_shift.py --model default --threads 1   # writes results/tts_pitch_shift-*.json
"""
import argparse
import datetime
import json
from pathlib import Path

import torch

from speechs2s.pitch import track_pitch
from speechs2s.tts import load_tts
from speechs2s.utils import set_threads

BENCHMARKS = Path(__file__).resolve().parent
SHIFTS = (0, 4, -4)  # semitones


def median_f0(tts, sentences: list[str], shift: float) -> float:
    """Median F0 (Hz) over the voiced frames of all the sentences' speech."""
    voiced = []
    for sentence in sentences:
        wav, rate = tts.synthesize(sentence, pitch=shift)
        f0 = track_pitch(torch.from_numpy(wav), rate, hop_length=256)
        voiced.append(f0[f0 > 0])
    return float(torch.cat(voiced).median())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a TTS checkpoint (dir or bundled name)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    set_threads(args.threads)
    tts = load_tts(args.model, "cpu")
    lines = (BENCHMARKS / "tts_choice_sentences.txt").read_text(encoding="utf-8").splitlines()
    sentences = [line.strip() for line in lines if line.strip() and not line.startswith("#")][:10]
    f0 = {shift: median_f0(tts, sentences, shift) for shift in SHIFTS}
    report = {"benchmark": "tts_pitch_shift", "model": args.model, "sentences": sentences, "median_f0_hz": f0,
              "ratio": {shift: f0[shift] / f0[0] for shift in SHIFTS if shift},
              "expected_ratio": {shift: 2 ** (shift / 12) for shift in SHIFTS if shift},
              "date": datetime.datetime.now().isoformat(timespec="seconds")}
    path = BENCHMARKS / "results" / f"tts_pitch_shift-{datetime.datetime.now():%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({key: report[key] for key in ("median_f0_hz", "ratio", "expected_ratio")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
