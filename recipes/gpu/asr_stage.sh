#!/usr/bin/env bash
# One-shot GPU continuation of the bundled asr-default, for a lent GPU machine that has PyTorch but no
# network and takes at most 64 MiB of files (the checkout included, ~35 MiB).
#
#   here (CPU, once):  recipes/gpu/asr_stage.sh prepare   # data/gpu_pack (~17 MiB of 16 kHz Opus) + .whl
#   on the GPU:        recipes/gpu/asr_stage.sh run OUT    # carry data/gpu_pack and .whl; OUT/report.json
#
# `run` installs the carried wheels (soundfile, jiwer, ...: what the GPU image lacks) into /tmp/site,
# continues asr-default (trainer.init_from) with mixed precision for a fixed time budget, averages the
# last checkpoints, scores the packed dev set before and after, and writes OUT/report.json with the
# commands; the new weights come back as OUT/model.safetensors + config.json + tokenizer.json (fp16).
# Land them only if the dev figures improve on this machine's full dev sets (see the model card).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
pack=data/gpu_pack
minutes=${MINUTES:-7}         # training budget; the call's limit is 10 min, start-up and scoring included
data=${SPEECHS2S_DATA:-../shared/corpora}

prepare() {
  mkdir -p "$pack"
  speechs2s prepare ljspeech "$data/joe-lj/train" "$pack/joe_train.jsonl"
  speechs2s prepare ljspeech "$data/joe-lj/extra" "$pack/joe_extra.jsonl"
  speechs2s prepare fsdd "$data/fsdd" "$pack/fsdd.jsonl" --speakers george,jackson,nicolas,yweweler
  speechs2s prepare ljspeech "$data/joe-lj/dev" "$pack/joe_dev.jsonl"
  cat "$pack/joe_train.jsonl" "$pack/joe_extra.jsonl" "$pack/fsdd.jsonl" > "$pack/all.jsonl"
  python recipes/tools/pack_audio.py "$pack/all.jsonl" "$pack/train" --max-mib 16
  head -40 "$pack/joe_dev.jsonl" > "$pack/dev40.jsonl"   # LJ002-0001..0040: the selection half of joe-lj dev
  python recipes/tools/pack_audio.py "$pack/dev40.jsonl" "$pack/dev" --max-mib 2
  rm "$pack"/*.jsonl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # the GPU image has torch, torchaudio, numpy, yaml, safetensors, sentencepiece, click, tqdm, tensorboard
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl soundfile cffi pycparser jiwer rapidfuzz
  du -sh "$pack" .whl
}

run() {
  local out=$1
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$repo PYTHONUNBUFFERED=1
  local py="python3 -m speechs2s"
  $py evaluate --model asr-default --manifest "$pack/dev/manifest.jsonl" --report "$out/dev_before.tsv" | tee "$out/dev_before.txt"
  $py train configs/asr_default.yaml --set trainer.init_from=asr-default --set trainer.out_dir=/tmp/asr_gpu \
    --set data.train="$pack/train/manifest.jsonl" --set data.valid="$pack/dev/manifest.jsonl" \
    --set data.max_frames=50000 --set data.num_workers=12 --set trainer.amp=bf16 \
    --set trainer.max_minutes="$minutes" --set trainer.valid_every=500 --set trainer.ckpt_every=250 \
    --set trainer.average_last=3 --set optim.lr=5e-4 --set optim.warmup_steps=200 > "$out/train.log" 2>&1 || { tail -20 "$out/train.log"; exit 1; }
  tail -4 "$out/train.log"
  $py average --half /tmp/asr_gpu/avg /tmp/asr_gpu/final
  $py evaluate --model /tmp/asr_gpu/avg --manifest "$pack/dev/manifest.jsonl" --report "$out/dev_after.tsv" | tee "$out/dev_after.txt"
  cp /tmp/asr_gpu/avg/{model.safetensors,config.json,tokenizer.json} "$out/"
  python3 - "$out" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
report = {"before": (out / "dev_before.txt").read_text().strip(), "after": (out / "dev_after.txt").read_text().strip(),
          "metrics": json.loads(pathlib.Path("/tmp/asr_gpu/final/metrics.json").read_text())}
(out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
PY
}

case "${1:-}" in
  prepare) prepare ;;
  run) [ $# -eq 2 ] || { echo "usage: $0 run OUT_DIR" >&2; exit 1; }; run "$2" ;;
  *) echo "usage: $0 prepare | run OUT_DIR" >&2; exit 1 ;;
esac
