"""Training throughput at matched model size and batch shape: speechs2s vs SpeechBrain (Transformer
ASR) and speechs2s vs Coqui TTS (Tacotron 2).

    benchmarks/.venv-peers/bin/python benchmarks/train_throughput.py [--quick] [--threads 1,2] [--asr-config FILE|tiny|base]

One training step = forward, loss, backward, gradient clipping (5.0) and an Adam update, on a fixed
random batch of the stated shape (throughput depends on shapes, not values). Each model runs in a
fresh process: ``--warmup`` steps, then ``--steps`` timed steps (median kept). Reported: steps/s,
seconds of audio per second (batch audio x steps/s), parameters, peak memory (process VmHWM on
CPU, ``max_memory_allocated`` on CUDA), and speechs2s's speed relative to the peer.

Matching: parameter counts must agree within 10% (checked, printed).
- ASR: speechs2s ``TransformerASR`` at the size of ``--asr-config`` (default: the bundled default
  model's ``configs/asr_default.yaml``; or a preset name; pre-LN, Conv2d x4 subsampling, joint CTC /
  label-smoothed attention loss) vs SpeechBrain's LibriSpeech-recipe composition of
  ``ConvolutionFrontEnd`` (2 stride-2 blocks of the same width) + ``TransformerASR`` (same d_model,
  heads, layers, d_ffn, ``normalize_before=True``) + CTC and output linears, CTC 0.3 + KL label smoothing 0.1.
- TTS: speechs2s ``Tacotron2`` defaults (r = 2, forward attention, guided attention loss) vs Coqui
  ``Tacotron2`` defaults (r = 2, location-sensitive attention, guided attention loss, postnet), same
  character vocabulary, 80 mels.
"""
import statistics
from dataclasses import dataclass

import common

SAMPLE_RATES = {"asr": (16000, 160), "tts": (22050, 256)}  # (sample rate, hop): frames -> seconds


@dataclass
class Shape:
    batch: int
    frames: int  # feature / mel frames per utterance
    tokens: int  # tokens per utterance
    vocab: int

    def audio_seconds(self, task: str) -> float:
        rate, hop = SAMPLE_RATES[task]
        return self.batch * self.frames * hop / rate


def shapes(quick: bool) -> dict[str, Shape]:
    """Batch shape per task. The full shapes are training-sized (16 x 8 s for ASR, 16 x 7 s for TTS):
    on a 2-core CPU the Tacotron 2 pair takes minutes per step there, so run them on a GPU or a quiet machine."""
    if quick:
        return {"asr": Shape(batch=8, frames=300, tokens=30, vocab=256), "tts": Shape(batch=4, frames=300, tokens=60, vocab=40)}
    return {"asr": Shape(batch=16, frames=800, tokens=80, vocab=256), "tts": Shape(batch=16, frames=600, tokens=120, vocab=40)}


# ------------------------------------------------------------------------------------------ models
def matched_asr_config(shape: Shape, asr_config: str):
    """``TransformerASRConfig`` of a preset name (``tiny``, ``base``) or of a training YAML's ``model.options``."""
    from speechs2s.models.asr_transformer import TransformerASRConfig

    if asr_config in TransformerASRConfig.PRESETS:
        return TransformerASRConfig.preset(asr_config, vocab_size=shape.vocab)
    import yaml

    return TransformerASRConfig(vocab_size=shape.vocab, **yaml.safe_load(open(common.REPO / asr_config))["model"]["options"])


def speechs2s_asr(shape: Shape, asr_config: str):
    import torch

    from speechs2s.models.asr_transformer import TransformerASR

    model = TransformerASR(matched_asr_config(shape, asr_config))
    generator = torch.Generator().manual_seed(0)
    batch = {"features": torch.randn(shape.batch, shape.frames, 80, generator=generator),
             "feature_lengths": torch.full((shape.batch,), shape.frames),
             "tokens": torch.randint(1, shape.vocab - 1, (shape.batch, shape.tokens), generator=generator),
             "token_lengths": torch.full((shape.batch,), shape.tokens)}
    return model, batch, lambda batch: model(batch)["loss"]


def speechbrain_asr(shape: Shape, asr_config: str):
    """SpeechBrain's recipe composition (CNN front-end + TransformerASR + CTC/seq linears) at our model's size."""
    import torch
    from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
    from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
    from speechbrain.nnet.linear import Linear
    from speechbrain.nnet.losses import ctc_loss, kldiv_loss

    c = matched_asr_config(shape, asr_config)
    channels = c.subsampling_channels
    cnn = ConvolutionFrontEnd(input_shape=(None, None, 80), num_blocks=2, num_layers_per_block=1, out_channels=(channels, channels),
                              kernel_sizes=(3, 3), strides=(2, 2), residuals=(False, False))
    transformer = TransformerASR(tgt_vocab=shape.vocab, input_size=channels * 20, d_model=c.d_model, nhead=c.n_heads,
                                 num_encoder_layers=c.encoder_layers, num_decoder_layers=c.decoder_layers, d_ffn=c.d_ff,
                                 dropout=c.dropout, normalize_before=True, causal=False)
    ctc_lin, seq_lin = Linear(input_size=c.d_model, n_neurons=shape.vocab), Linear(input_size=c.d_model, n_neurons=shape.vocab)
    model = torch.nn.ModuleList([cnn, transformer, ctc_lin, seq_lin])
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, shape.vocab - 1, (shape.batch, shape.tokens), generator=generator)
    bos = eos = shape.vocab - 1
    batch = {"features": torch.randn(shape.batch, shape.frames, 80, generator=generator), "wav_lens": torch.ones(shape.batch),
             "tokens": tokens, "tokens_lens": torch.ones(shape.batch),
             "tokens_bos": torch.cat([torch.full((shape.batch, 1), bos), tokens], 1),
             "tokens_eos": torch.cat([tokens, torch.full((shape.batch, 1), eos)], 1)}

    def loss(batch):  # as recipes/LibriSpeech/ASR/transformer/train.py: compute_forward + compute_objectives
        enc, dec = transformer(cnn(batch["features"]), batch["tokens_bos"], batch["wav_lens"], pad_idx=0)
        p_ctc = ctc_lin(enc).log_softmax(-1)
        p_seq = seq_lin(dec).log_softmax(-1)
        ctc = ctc_loss(p_ctc, batch["tokens"], batch["wav_lens"], batch["tokens_lens"], blank_index=0, reduction="batchmean")
        seq = kldiv_loss(p_seq, batch["tokens_eos"], length=batch["tokens_lens"], label_smoothing=c.label_smoothing, reduction="batchmean")
        return c.ctc_weight * ctc + (1 - c.ctc_weight) * seq

    return model, batch, loss


def tts_data(shape: Shape):
    """Random token ids ``(B, L)`` in 1..vocab-1 and log-mels ``(B, T, 80)`` of full length."""
    import torch

    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, shape.vocab, (shape.batch, shape.tokens), generator=generator)
    mels = torch.randn(shape.batch, shape.frames, 80, generator=generator) - 4.0
    return tokens, mels


def speechs2s_tacotron2(shape: Shape, asr_config: str):
    import torch

    from speechs2s.models.tts_tacotron import Tacotron2, Tacotron2Config

    model = Tacotron2(Tacotron2Config(vocab_size=shape.vocab))
    tokens, mels = tts_data(shape)
    batch = {"tokens": tokens, "token_lengths": torch.full((shape.batch,), shape.tokens),
             "mels": mels, "mel_lengths": torch.full((shape.batch,), shape.frames)}
    return model, batch, lambda batch: model(batch)["loss"]


def coqui_tacotron2(shape: Shape, asr_config: str):
    import torch
    from TTS.tts.configs.tacotron2_config import Tacotron2Config
    from TTS.tts.models.tacotron2 import Tacotron2

    config = Tacotron2Config(num_chars=shape.vocab, out_channels=80)
    model = Tacotron2(config)
    criterion = model.get_criterion()
    tokens, mels = tts_data(shape)
    stop = torch.zeros(shape.batch, shape.frames // config.r)
    stop[:, -1] = 1.0
    batch = {"text_input": tokens, "text_lengths": torch.full((shape.batch,), shape.tokens), "mel_input": mels,
             "mel_lengths": torch.full((shape.batch,), shape.frames), "stop_targets": stop,
             "stop_target_lengths": torch.full((shape.batch,), shape.frames // config.r), "speaker_ids": None, "d_vectors": None}
    return model, batch, lambda batch: model.train_step(batch, criterion)[1]["loss"]


MODELS = {  # name -> (task, builder(shape, asr_config) -> (model, batch, loss function))
    "speechs2s-transformer-asr": ("asr", speechs2s_asr),
    "speechbrain-transformer-asr": ("asr", speechbrain_asr),
    "speechs2s-tacotron2": ("tts", speechs2s_tacotron2),
    "coqui-tacotron2": ("tts", coqui_tacotron2),
}
PEERS = {"speechbrain-transformer-asr": "speechs2s-transformer-asr", "coqui-tacotron2": "speechs2s-tacotron2"}


def run_model(threads: int, name: str, shape: Shape, asr_config: str, warmup: int, steps: int, device: str) -> dict:
    """In a fresh process: build, then time ``warmup + steps`` training steps."""
    import time

    import torch

    task, build = MODELS[name]
    model, batch, loss_fn = build(shape, asr_config)
    model.to(device).train()
    batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    seconds = []
    for step in range(warmup + steps):
        began = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if step >= warmup:
            seconds.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda") else common.peak_rss_mb()
    return {"params": sum(p.numel() for p in model.parameters()), "step_s": statistics.median(seconds),
            "peak_mb": peak, "loss": loss.item()}


def main():
    cli = common.parser(__doc__)
    cli.add_argument("--models", default=",".join(MODELS))
    cli.add_argument("--asr-config", default="configs/asr_default.yaml",
                     help="ASR size matched on both sides: a training YAML (model.options) or a preset (tiny, base)")
    cli.add_argument("--warmup", type=int, default=None, help="untimed steps (default 2, quick 1)")
    cli.add_argument("--steps", type=int, default=None, help="timed steps (default 10, quick 3)")
    cli.add_argument("--device", default="cpu", help="cpu or cuda")
    args = cli.parse_args()

    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    steps = args.steps or (3 if args.quick else 10)
    batch_shapes, rows = shapes(args.quick), []
    for threads in common.thread_counts(args):
        for name in args.models.split(","):
            task = MODELS[name][0]
            shape = batch_shapes[task]
            result = common.run_isolated(run_model, threads, name, shape, args.asr_config, warmup, steps, args.device)
            audio_s = shape.audio_seconds(task)
            rows.append({"model": name, "task": task, "threads": threads, "params_m": result["params"] / 1e6,
                         "batch": f"{shape.batch}x{shape.frames} frames, {shape.tokens} tokens", "step_s": result["step_s"],
                         "steps_per_s": 1 / result["step_s"], "audio_s_per_s": audio_s / result["step_s"],
                         "peak_mb": result["peak_mb"], "loss": result["loss"]})
            print(f"{name:28s} {threads} thr: {result['params'] / 1e6:6.2f} M params  {result['step_s']:.3f} s/step  "
                  f"{audio_s / result['step_s']:.1f} audio-s/s  peak {result['peak_mb']:.0f} MB")
    notes = compare(rows)
    columns = [("model", "model", ""), ("threads", "thr", "d"), ("params_m", "params M", ".2f"), ("batch", "batch", ""),
               ("steps_per_s", "steps/s", ".3f"), ("audio_s_per_s", "audio s / s", ".1f"),
               ("speechs2s_speedup", "speechs2s faster ×", ".2f"), ("peak_mb", "peak MB", ".0f")]
    notes.append(f"ASR size of {args.asr_config}; {warmup} warm-up + {steps} timed steps (median), Adam, clip 5.0, device {args.device}; "
                 "random batch of the stated shape, all items full length. 'speechs2s faster ×' = speechs2s steps/s / peer steps/s.")
    common.record("train_throughput", args, {"rows": rows}, [("Training throughput", rows, columns)], notes)


def compare(rows: list[dict]) -> list[str]:
    """Fill ``speechs2s_speedup`` on peer rows and return warnings for sizes that are not matched within 10%."""
    warnings = []
    for row in rows:
        ours = next((r for r in rows if r["model"] == PEERS.get(row["model"]) and r["threads"] == row["threads"]), None)
        row["speechs2s_speedup"] = ours["steps_per_s"] / row["steps_per_s"] if ours else None
        if ours and abs(ours["params_m"] / row["params_m"] - 1) > 0.10:
            warnings.append(f"size NOT matched: {row['model']} {row['params_m']:.2f} M vs {ours['model']} {ours['params_m']:.2f} M params")
    return warnings


if __name__ == "__main__":
    main()
