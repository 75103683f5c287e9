"""Where a TTS model loses intelligibility: vocoder, acoustic model, or running on its own outputs.

    benchmarks/.venv-peers/bin/python benchmarks/tts_where_lost.py [--tts-model default] [--count 12]
        [--vocoder auto|griffin-lim|DIR] [--report FILE]

On ``--count`` joe-lj dev sentences (spread over the split), Whisper tiny.en (the judge of
tts_intelligibility_speed.py) transcribes three renderings, all vocoded by ``--vocoder``:

- ``real mel``: the recordings' own log-mels (the vocoder's ceiling: copy synthesis);
- ``teacher-forced``: the model's mels (after the postnet) when each decoder step is fed the real
  previous frame, as in training (what the acoustic model has learned); for FastSpeech, its mels
  on the durations that ``--teacher`` reads off the recordings (what it trained on);
- ``free-running``: ``synthesize_sequences``, fed its own previous frames, with the inference
  guards (what users hear); for FastSpeech, on its own predicted durations.

A large gap between the last two is exposure bias (or, for FastSpeech, the duration predictor): the
model has learned the sounds but drifts on its own predictions. Prints WER/CER (%) per rendering and the first
sentences side by side; ``--report`` also writes them, with every transcript, as JSON.
"""
import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF

import common
from speechs2s.checkpoint import load_checkpoint
from speechs2s.data.collate import collate_tts
from speechs2s.data.datasets import TTSDataset, VarianceTTSDataset
from speechs2s.decode.tts import synthesize_sequences
from speechs2s.tts import resolve_vocoder
from speechs2s.vocoder import load_vocoder


def main():
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--tts-model", default="default", help="speechs2s checkpoint (dir or bundled name)")
    cli.add_argument("--teacher", default="tts-transformer", help="FastSpeech only: attention model giving the durations")
    cli.add_argument("--count", type=int, default=12, help="joe-lj dev sentences")
    cli.add_argument("--seed", type=int, default=0, help="seed of the prenet dropout in free-running synthesis")
    cli.add_argument("--vocoder", default="auto", help="auto (the model's own, else griffin-lim), griffin-lim or a vocoder checkpoint folder")
    cli.add_argument("--report", type=Path, default=None, help="write the scores and transcripts here (JSON)")
    args = cli.parse_args()
    torch.set_num_threads(1)

    model, tokenizer, _ = load_checkpoint(args.tts_model, task="tts")
    entries = common.joe_lj_dev().entries
    entries = [entries[i * len(entries) // args.count] for i in range(args.count)]
    batch = collate_tts([TTSDataset(entries, tokenizer)[i] for i in range(len(entries))])
    texts = [entry["text"] for entry in entries]
    args.vocoder = str(resolve_vocoder(args.tts_model, args.vocoder))
    judge, vocoder = common.whisper_tiny_en("float32", 1), load_vocoder(args.vocoder, device="cpu")

    def transcribe(mels):
        return [judge(AF.resample(vocoder.generate(mel), vocoder.sample_rate, 16000).numpy().astype(np.float32))
                for mel in mels]

    with torch.no_grad():
        lengths = batch["mel_lengths"].tolist()
        if hasattr(model, "generate"):  # FastSpeech
            durations = load_checkpoint(args.teacher, task="tts")[0].token_durations(batch)
            if getattr(model, "has_pitch", False):  # FastSpeech 2 also takes the recordings' pitch and energy per token
                entries = [dict(entry, durations=d[:n].tolist()) for entry, d, n in zip(entries, durations, batch["token_lengths"])]
                batch = collate_tts([VarianceTTSDataset(entries, tokenizer)[i] for i in range(len(entries))])
            else:
                batch["durations"] = durations
            teacher_forced = model.aligned_mels(batch)
        else:
            _, _, (before, _, _) = model._teacher_forced(batch)
            teacher_forced = model.denormalize(model.refine(before, batch["mel_lengths"]))
        torch.manual_seed(args.seed)
        free = [mel for mel, _ in synthesize_sequences(model, [tokenizer.encode(text) for text in texts])]
        renderings = {"real mel": [m[:n] for m, n in zip(batch["mels"], lengths)],
                      "teacher-forced": [m[:n] for m, n in zip(teacher_forced, lengths)],
                      "free-running": free}
        heard = {name: transcribe(mels) for name, mels in renderings.items()}
    scores = {name: common.score(texts, hyps) for name, hyps in heard.items()}
    for name, score in scores.items():
        print(f"{name:15s} WER {score['wer']:5.1f}%  CER {score['cer']:5.1f}%")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps({"command": common.command_line(), "tts_model": args.tts_model,
                                           "vocoder": args.vocoder, "judge": "Whisper tiny.en float32",
                                           "references": texts, "scores": scores, "transcripts": heard}, indent=2) + "\n")
    for i, text in enumerate(texts[:3]):
        print(f"\nREF  {text}" + "".join(f"\n{name[:4].upper():4s} {hyps[i]}" for name, hyps in heard.items()))


if __name__ == "__main__":
    main()
