"""A long live stream: does streaming keep up with real time for minutes on end?

    OMP_NUM_THREADS=1 python benchmarks/streaming_long.py [--model default] [--manifest data/joe_dev_test.jsonl]
        [--pause 1.5] [--chunk-size 8]

The manifest's utterances, joined with ``--pause`` seconds of faint noise between them, make one stream
(joe-lj dev second half: about 8 minutes), fed in 0.1 s blocks as fast as it decodes, twice:

- with endpointing (the default ``endpoint_silence``, 1 s): the stream is cut into segments at pauses;
- without (``endpoint_silence=None``): one utterance, each chunk re-encoding all the audio before it; stopped
  once a minute of audio took longer than a minute to decode (it can no longer keep up with real time).

Reported per run: the processing RTF of each minute of audio, the most encoder frames held, the segments,
and the WER of the joined final text against the joined references (with ``transcribe`` of each utterance
beside, the offline figure).
"""
import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch

from speechs2s.asr import DEFAULT_ENDPOINT_SILENCE, load_asr
from speechs2s.audio import load_audio
from speechs2s.metrics import wer

BLOCK_SECONDS = 0.1
RESULTS = Path(__file__).resolve().parent / "results" / "streaming"


def run_stream(asr, wav: torch.Tensor, chunk_size: int, endpoint_silence: float | None) -> dict:
    """Feed ``wav`` in blocks: RTF per minute of audio, most encoder frames held, segments and final text."""
    rate = asr.features.sample_rate
    block = round(BLOCK_SECONDS * rate)
    stream = asr.stream(chunk_size, endpoint_silence=endpoint_silence)
    minute_rtfs, minute_start, spent, held = [], 0, 0.0, 0
    for start in range(0, len(wav), block):
        began = time.perf_counter()
        stream.accept(wav[start : start + block])
        spent += time.perf_counter() - began
        held = max(held, len(stream.enc))
        end = min(start + block, len(wav))
        if end - minute_start >= 60 * rate or end == len(wav):  # a minute of audio (or the last of it) is in
            seconds = (end - minute_start) / rate
            minute_rtfs.append(round(spent / seconds, 3))
            if spent > seconds:
                return {"minute_rtfs": minute_rtfs, "fell_behind_after_s": round(end / rate, 1),
                        "max_encoder_seconds": round(held * stream.frame_seconds, 1)}
            minute_start, spent = end, 0.0
    began = time.perf_counter()
    transcript = stream.finish()
    return {"minute_rtfs": minute_rtfs, "finish_seconds": round(time.perf_counter() - began, 3),
            "max_encoder_seconds": round(held * stream.frame_seconds, 1), "segments": len(transcript.segments),
            "text": transcript.text}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--manifest", default="data/joe_dev_test.jsonl")
    parser.add_argument("--pause", type=float, default=1.5, help="seconds of faint noise between utterances")
    parser.add_argument("--chunk-size", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    asr = load_asr(args.model, "cpu")
    rate = asr.features.sample_rate
    entries = [json.loads(line) for line in open(args.manifest, encoding="utf-8")]
    wavs = [load_audio(e["audio"], rate, e.get("start", 0.0), e.get("end")) for e in entries]
    pieces = []
    for wav in wavs:
        pieces += [wav, torch.randn(round(args.pause * rate)) * 1e-3]
    stream_wav = torch.cat(pieces)
    reference = " ".join(e["text"] for e in entries)
    offline = " ".join(t.text for t in asr.transcribe(wavs, sample_rate=rate))
    results = {"offline_wer": round(wer([reference], [offline]), 4)}
    for name, endpoint in [("endpointing", DEFAULT_ENDPOINT_SILENCE), ("one_utterance", None)]:
        run = run_stream(asr, stream_wav, args.chunk_size, endpoint)
        if "text" in run:
            run["wer"] = round(wer([reference], [run.pop("text")]), 4)
        results[name] = run
        print(name, json.dumps(run), flush=True)
    report = {"benchmark": "streaming_long", "model": args.model, "manifest": args.manifest, "utterances": len(entries),
              "stream_seconds": round(len(stream_wav) / rate, 1), "pause_seconds": args.pause,
              "chunk_size": args.chunk_size, "threads": torch.get_num_threads(), "load_average": os.getloadavg(),
              "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"), "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"streaming_long-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
