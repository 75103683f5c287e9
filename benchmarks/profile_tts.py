"""Where `speechs2s speak` spends its time and memory: load, text -> tokens, acoustic model, vocoder.

    OMP_NUM_THREADS=1 python benchmarks/profile_tts.py [--model default] [--sentences 5] [--repeats 3]
        [--save out.pt | --compare out.pt] [--cprofile 25]

Runs in one process on one thread: loads the model (seconds, RSS growth), then synthesizes the first
``--sentences`` texts of joe-lj dev one by one, ``--repeats`` times after a warm-up, timing each
part (median per sentence, summed): tokenizer, acoustic model (decoder loop + postnet), vocoder.
RTF = part seconds / audio seconds. First-audio latency: seconds until the first sentence of all
the texts joined comes out of ``TTS.synthesize_sentences``. Every sentence is synthesized after
``torch.manual_seed(index)`` (the prenet's dropout stays on at inference), so ``--save`` then
``--compare`` with another version of the code checks that its output is unchanged: mel lengths,
max mel difference, and the log-mel L1 of the vocoder's audio against its input mel.
"""
import argparse
import cProfile
import csv
import pstats
import statistics
import time
from pathlib import Path

began_import = time.perf_counter()
import torch

import speechs2s
from speechs2s.audio import LogMel
from speechs2s.decode.tts import synthesize_sequences

from common import CORPORA

import_s = time.perf_counter() - began_import
METADATA = CORPORA / "joe-lj" / "dev" / "metadata.csv"


def status_mb(key: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def texts(count: int) -> list[str]:
    with METADATA.open(newline="") as f:
        return [row[2] for row, _ in zip(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE), range(count))]


def timed(fn, *args):
    began = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - began


def synthesize(tts, ids: list[int], seed: int):
    """One sentence: ``(mel, wav, acoustic seconds, vocoder seconds)``."""
    torch.manual_seed(seed)
    (mel, _), acoustic_s = timed(lambda: next(synthesize_sequences(tts.model, [ids], 1, tts.config)))
    wav, vocoder_s = timed(tts.vocoder.generate, mel)
    return mel, wav, acoustic_s, vocoder_s


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--model", default="default")
    cli.add_argument("--sentences", type=int, default=5)
    cli.add_argument("--repeats", type=int, default=3)
    cli.add_argument("--save", help="write mels and wavs here (torch.save)")
    cli.add_argument("--compare", help="compare mels and wavs with a --save file")
    cli.add_argument("--cprofile", type=int, default=0, help="print the top N functions by cumulative time")
    args = cli.parse_args()
    torch.set_num_threads(1)

    rss_before = status_mb("VmRSS")
    tts, load_s = timed(speechs2s.load_tts, args.model, "cpu")
    sentences = texts(args.sentences)
    token_lists, tokenize_s = timed(lambda: [tts.tokenizer.encode(s) for s in sentences])  # first call: loads CMUdict
    load_rss = status_mb("VmRSS") - rss_before

    synthesize(tts, token_lists[0], 0)  # warm-up
    runs = [[synthesize(tts, ids, i) for i, ids in enumerate(token_lists)] for _ in range(args.repeats)]
    acoustic_s = sum(statistics.median(run[i][2] for run in runs) for i in range(len(token_lists)))
    vocoder_s = sum(statistics.median(run[i][3] for run in runs) for i in range(len(token_lists)))
    audio_s = sum(len(wav) for _, wav, _, _ in runs[-1]) / tts.sample_rate

    latencies = []
    for _ in range(args.repeats):
        began = time.perf_counter()
        next(iter(tts.synthesize_sentences(" ".join(sentences))))
        latencies.append(time.perf_counter() - began)

    print(f"import {import_s:.2f} s | load_tts {load_s:.2f} s | first encode (CMUdict) {tokenize_s:.2f} s | "
          f"RSS +{load_rss:.0f} MB after load+encode")
    print(f"{len(token_lists)} sentences, {sum(map(len, token_lists))} tokens, {audio_s:.1f} s audio: "
          f"acoustic {acoustic_s:.2f} s (RTF {acoustic_s / audio_s:.3f}) | vocoder {vocoder_s:.2f} s "
          f"(RTF {vocoder_s / audio_s:.3f}) | total RTF {(acoustic_s + vocoder_s) / audio_s:.3f}")
    print(f"first audio of the joined text: {statistics.median(latencies):.2f} s | peak RSS {status_mb('VmHWM'):.0f} MB")

    mels = [mel for mel, _, _, _ in runs[-1]]
    wavs = [torch.as_tensor(wav) for _, wav, _, _ in runs[-1]]
    log_mel = LogMel(tts.features)
    vocoder_l1 = statistics.mean((log_mel(wav)[: len(mel)] - mel).abs().mean().item() for mel, wav in zip(mels, wavs))
    print(f"vocoder log-mel L1 vs its input mel: {vocoder_l1:.5f}")
    if args.save:
        torch.save({"mels": mels, "wavs": wavs}, args.save)
    if args.compare:
        reference = torch.load(args.compare)
        same_lengths = [len(a) == len(b) for a, b in zip(mels, reference["mels"])]
        mel_diff = max((a - b).abs().max().item() for a, b, same in zip(mels, reference["mels"], same_lengths) if same)
        print(f"vs {args.compare}: lengths equal {all(same_lengths)} "
              f"({[len(m) for m in mels]} vs {[len(m) for m in reference['mels']]}), max |mel diff| {mel_diff:.2e}")
    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.runcall(lambda: [synthesize(tts, ids, i) for i, ids in enumerate(token_lists)])
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
