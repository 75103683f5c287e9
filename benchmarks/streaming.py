"""Streaming ASR: WER cost against full context, latency and real-time factor (issue 15).

    OMP_NUM_THREADS=1 python benchmarks/streaming.py [--model default] [--manifest data/joe_dev_test.jsonl]
        [--chunk-sizes 8,16] [--left-chunks -1] [--final beam|full]

Each utterance is fed to ``ASR.stream`` in 40 ms blocks on a simulated real-time clock: block k arrives
at the end of its audio and is processed once it has arrived and the previous block is done, so a
partial appears at ``max(arrival, previous done) + processing time`` (measured, one thread). Reported:

- WER of the streaming final text with the stream's final pass (``--final``: ``beam``, joint attention/CTC beam
  search over the streamed encoder output, the default; ``full``, the utterance encoded again with full context
  first) and, for ``beam``, with ``rescore`` (attention rescoring of the CTC n-best, computed from the same
  stream's encoder output, which streaming reproduces exactly), each against the same decoding with full context
  (``transcribe``'s beam search; CTC prefix beam search + rescoring);
- first-partial latency: the first non-empty partial's time minus the start of speech;
- word emission latency, minus the word's end: of the partial text (``partial_word_latency_s``: for word i of
  the last partial, the time from which every later partial holds it as word i) and of the final text
  (``final_word_latency_s``: the same for the final text, the final result's time for words only settled
  there; a word the final pass inserts or drops shifts every later word to that time);
- RTF: processing seconds per audio second (of the stream, with its final pass).

Speech start and word ends come from CTC forced alignment (``decode/align.py``) of the final
streaming text on the full-context CTC head (a CTC spike falls on or shortly after its token).
"""
import argparse
import datetime
import json
import os
import statistics
import time
from pathlib import Path

import torch

from speechs2s.asr import load_asr
from speechs2s.audio import load_audio
from speechs2s.decode.align import align_tokens
from speechs2s.decode.stream import two_pass_decode
from speechs2s.metrics import wer

BLOCK_SECONDS = 0.04
RESULTS = Path(__file__).resolve().parent / "results" / "streaming"


def stream_utterance(asr, wav: torch.Tensor, chunk_size: int, left_chunks: int, final: str) -> dict:
    """Feed ``wav`` block by block on the simulated clock: final text, partials ``[(time, text)]``, compute seconds."""
    sample_rate = asr.features.sample_rate
    block = round(BLOCK_SECONDS * sample_rate)
    stream = asr.stream(chunk_size, left_chunks, final=final)
    clock, partials = 0.0, []
    for start in range(0, len(wav), block):
        began = time.perf_counter()
        partial = stream.accept(wav[start : start + block])
        clock = max(clock, min(start + block, len(wav)) / sample_rate) + time.perf_counter() - began
        partials.append((clock, partial))
    began = time.perf_counter()
    transcript = stream.finish()
    clock += time.perf_counter() - began
    return {"text": transcript.text, "partials": partials, "done": clock, "seconds": transcript.seconds,
            "enc": stream.enc}


def word_times(asr, enc: torch.Tensor, text: str, frame_seconds: float) -> list[tuple[float, float]]:
    """``(start, end)`` seconds of each word of ``text``, force-aligned on the CTC head over ``enc (T', D)``."""
    ids = asr.tokenizer.encode(text)
    spans = align_tokens(asr.model.ctc_log_probs(enc[None])[0], ids, asr.tokenizer.blank_id) if ids else None
    if not spans:
        return []
    return [(spans[p[0]].start * frame_seconds, spans[p[-1]].end * frame_seconds)
            for p in asr.tokenizer.word_positions(ids)]


def settled_times(words: list[str], partials: list[tuple[float, str]], done: float) -> list[float]:
    """Time from which word i of the final ``words`` stays word i of every later partial (``done`` if never)."""
    times = [done] * len(words)
    for i, word in enumerate(words):
        for clock, partial in reversed(partials):
            held = partial.split()
            if len(held) <= i or held[i] != word:
                break
            times[i] = clock
    return times


def summary(values: list[float]) -> dict:
    values = sorted(values)
    return {"mean": round(statistics.fmean(values), 3), "median": round(statistics.median(values), 3),
            "p90": round(values[int(0.9 * (len(values) - 1))], 3), "count": len(values)} if values else {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--manifest", default="data/joe_dev_test.jsonl")
    parser.add_argument("--chunk-sizes", default="8,16")
    parser.add_argument("--left-chunks", type=int, default=-1)
    parser.add_argument("--final", choices=["beam", "full"], default="beam", help="the stream's final pass")
    args = parser.parse_args()
    torch.set_num_threads(1)
    asr = load_asr(args.model, "cpu")
    entries = [json.loads(line) for line in open(args.manifest, encoding="utf-8")]
    wavs = [load_audio(e["audio"], asr.features.sample_rate, e.get("start", 0.0), e.get("end")) for e in entries]
    audio_seconds = sum(len(wav) for wav in wavs) / asr.features.sample_rate
    refs = [e["text"] for e in entries]
    asr.transcribe(wavs[0], sample_rate=asr.features.sample_rate)  # warm-up

    began = time.perf_counter()
    beam = [t.text for t in asr.transcribe(wavs, sample_rate=asr.features.sample_rate)]
    beam_seconds = time.perf_counter() - began
    encoded, two_pass = [], []
    began = time.perf_counter()
    for wav in wavs:
        features = asr.log_mel(wav)[None]
        with torch.no_grad():
            enc = asr.model.encode(features, torch.tensor([features.size(1)]))[0][0]
        encoded.append((enc, features.size(1) * asr.features.hop_length / asr.features.sample_rate / len(enc)))
        two_pass.append(asr.tokenizer.decode(two_pass_decode(asr.model, enc, asr.decode, asr.tokenizer.eos_id)))
    two_pass_seconds = time.perf_counter() - began
    results = {
        "full_context_beam": {"wer": round(wer(refs, beam), 4), "rtf": round(beam_seconds / audio_seconds, 3)},
        "full_context_two_pass": {"wer": round(wer(refs, two_pass), 4), "rtf": round(two_pass_seconds / audio_seconds, 3)},
    }
    for chunk_size in map(int, args.chunk_sizes.split(",")):
        finals, rescored, first_partial, partial_latency, final_latency, seconds = [], [], [], [], [], 0.0
        for wav, (enc, frame_seconds) in zip(wavs, encoded):
            run = stream_utterance(asr, wav, chunk_size, args.left_chunks, args.final)
            finals.append(run["text"])
            if args.final == "beam":  # run["enc"] is the streamed encoder output
                rescored.append(asr.tokenizer.decode(two_pass_decode(asr.model, run["enc"], asr.decode, asr.tokenizer.eos_id)))
            seconds += run["seconds"]
            for text, latencies in [(run["partials"][-1][1], partial_latency), (run["text"], final_latency)]:
                words = word_times(asr, enc, text, frame_seconds)
                settled = settled_times(text.split(), run["partials"], run["done"])
                latencies += [at - end for at, (_, end) in zip(settled, words)]
            words = word_times(asr, enc, run["text"], frame_seconds)
            if words:
                first = next((clock for clock, partial in run["partials"] if partial), run["done"])
                first_partial.append(first - words[0][0])
        final_wer, rescore_wer = wer(refs, finals), rescored and wer(refs, rescored)
        results[f"stream_chunk{chunk_size}"] = {
            "chunk_seconds": round(chunk_size * asr.model.subsampling.factor * asr.features.hop_length
                                   / asr.features.sample_rate, 3),
            f"wer_{args.final}_final": round(final_wer, 4),
            f"wer_{args.final}_final_relative_to_full_context": round(final_wer / results["full_context_beam"]["wer"] - 1, 3),
            **({"wer_rescore_final": round(rescore_wer, 4),
                "wer_rescore_final_relative_to_full_context":
                    round(rescore_wer / results["full_context_two_pass"]["wer"] - 1, 3)} if rescored else {}),
            "first_partial_latency_s": summary(first_partial),
            "partial_word_latency_s": summary(partial_latency),
            "final_word_latency_s": summary(final_latency),
            "rtf": round(seconds / audio_seconds, 3),
        }
        print(chunk_size, json.dumps(results[f"stream_chunk{chunk_size}"]), flush=True)
    report = {"benchmark": "streaming", "model": args.model, "manifest": args.manifest, "utterances": len(entries),
              "audio_seconds": round(audio_seconds, 1), "threads": torch.get_num_threads(),
              "left_chunks": args.left_chunks, "final_pass": args.final, "block_seconds": BLOCK_SECONDS,
              "load_average": os.getloadavg(), "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
              "results": results}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"streaming-{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
