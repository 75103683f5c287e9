#!/usr/bin/env bash
# One-shot GPU training of a bundled model, for a lent GPU machine that has PyTorch but no network
# and takes at most 64 MiB of files (the checkout is ~44 MiB of them, the bundled models 39 MiB):
#
#   here (CPU, once):  recipes/gpu/stage.sh prepare asr|vocoder     # data/gpu_pack_<what> + .whl (wheels the image lacks)
#   on the GPU:        recipes/gpu/stage.sh run asr|vocoder|both OUT  # carry data/gpu_pack_<what> and .whl
#
# asr:     continues asr-default (trainer.init_from) on ~28 MiB of 16 kHz Opus at ~13 kbit/s (joe-lj train + extra,
#          FSDD and digit runs joined from it; with SYNTH=MANIFEST, ~36 MiB that also draw from the multi-voice
#          synthetic corpus of recipes/synth: ~4,000 of its utterances, the data that helps unseen voices), scores
#          40 joe-lj dev sentences before and after; OUT gets the averaged fp16 weights. Both packs travel only if the
#          checkout leaves out the bundled models it does not use (an ASR run: move tts-default and tts-transformer out).
# vocoder: continues tts-default's Vocos (configs/vocoder_vocos_tiny.yaml, trainer.init_from=its vocoder/; --set
#          overrides below) on ~10 MiB of 22.05 kHz joe-lj train audio; validation (mel L1) on 40 joe-lj dev
#          sentences; OUT gets its best checkpoint.
# both:    the two at once on one GPU (WORKERS data loaders each), OUT/asr.tar and OUT/vocoder.tar.
# All: bf16, a fixed time budget (MINUTES, default 7: the call's limit is 10 min with start-up and scoring),
# OUT/report.json + the training log. Land new weights only when this machine's full dev sets say so.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
minutes=${MINUTES:-7}
workers=${WORKERS:-12}
data=${SPEECHS2S_DATA:-../shared/corpora}
usage="usage: $0 prepare asr|vocoder | run asr|vocoder|both OUT_DIR"

prepare() {
  local what=$1 pack=data/gpu_pack_$1 tmp
  tmp=$(mktemp -d)
  speechs2s prepare ljspeech "$data/joe-lj/dev" "$tmp/dev.jsonl"
  head -40 "$tmp/dev.jsonl" > "$tmp/dev40.jsonl"   # LJ002-0001..0040: the selection half of joe-lj dev
  speechs2s prepare ljspeech "$data/joe-lj/train" "$tmp/train.jsonl"
  if [ "$what" = asr ]; then
    speechs2s prepare ljspeech "$data/joe-lj/extra" "$tmp/extra.jsonl"
    speechs2s prepare fsdd "$data/fsdd" "$tmp/fsdd.jsonl" --speakers george,jackson,nicolas,yweweler
    python recipes/tools/digit_runs.py "$tmp/fsdd.jsonl" "$tmp/digit_runs" --count 1500
    cat "$tmp/extra.jsonl" "$tmp/fsdd.jsonl" "$tmp/digit_runs/manifest.jsonl" >> "$tmp/train.jsonl"
    local mib=28
    if [ -n "${SYNTH:-}" ]; then  # its paths are relative to its own folder: write them absolute
      python -c 'import json, sys; from speechs2s.data.manifest import read_manifest
for entry in read_manifest(sys.argv[1]): print(json.dumps(entry))' "$SYNTH" >> "$tmp/train.jsonl"
      mib=36
    fi
    python recipes/tools/pack_audio.py "$tmp/train.jsonl" "$pack/train" --max-mib $mib --level 0.98
    python recipes/tools/pack_audio.py "$tmp/dev40.jsonl" "$pack/dev" --max-mib 2
  else
    python recipes/tools/pack_audio.py "$tmp/train.jsonl" "$pack/train" --max-mib 10 --sample-rate 22050 --codec vorbis
    python recipes/tools/pack_audio.py "$tmp/dev40.jsonl" "$pack/dev" --max-mib 3 --sample-rate 22050 --codec vorbis
  fi
  rm -r "$tmp"
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # the GPU image has torch, torchaudio, numpy, yaml, safetensors, sentencepiece, click, tqdm, tensorboard
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl soundfile cffi pycparser jiwer rapidfuzz num2words
  du -sh "$pack" .whl
}

run() {
  local what=$1 out=$2 pack=data/gpu_pack_$1 exp=/tmp/gpu_$1
  mkdir -p "$out"
  local speechs2s=(python3 -m speechs2s) budget=(--set "trainer.max_minutes=$minutes" --set trainer.amp=bf16
    --set "trainer.out_dir=$exp" --set "data.train=$pack/train/manifest.jsonl" --set "data.valid=$pack/dev/manifest.jsonl")
  if [ "$what" = asr ]; then
    "${speechs2s[@]}" evaluate --model asr-default --manifest "$pack/dev/manifest.jsonl" | tee "$out/before.txt"
    "${speechs2s[@]}" train configs/asr_default.yaml "${budget[@]}" --set trainer.init_from=asr-default \
      --set data.max_frames=50000 --set "data.num_workers=$workers" --set trainer.valid_every=500 --set trainer.ckpt_every=250 \
      --set trainer.average_last=3 --set optim.lr=5e-4 --set optim.warmup_steps=200 > "$out/train.log" 2>&1 \
      || { tail -20 "$out/train.log"; exit 1; }
    "${speechs2s[@]}" average --half "$exp/avg" "$exp/final"
    "${speechs2s[@]}" evaluate --model "$exp/avg" --manifest "$pack/dev/manifest.jsonl" | tee "$out/after.txt"
    cp "$exp"/avg/{model.safetensors,config.json,tokenizer.json} "$out/"
  else
    "${speechs2s[@]}" train configs/vocoder_vocos_tiny.yaml "${budget[@]}" --set data.max_frames=4096 \
      --set trainer.init_from=speechs2s/pretrained/tts-default/vocoder \
      --set "data.num_workers=$workers" --set trainer.valid_every=1000 --set trainer.ckpt_every=1000 > "$out/train.log" 2>&1 \
      || { tail -20 "$out/train.log"; exit 1; }
    cp "$exp"/best/{model.safetensors,config.json,metrics.json} "$out/"
  fi
  tail -3 "$out/train.log"
  python3 - "$out" "$exp" <<'PY'
import json, pathlib, sys
out, exp = map(pathlib.Path, sys.argv[1:])
report = {name: (out / f"{name}.txt").read_text().strip() for name in ("before", "after") if (out / f"{name}.txt").exists()}
report["final"] = json.loads((exp / "final" / "metrics.json").read_text())
(out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
print(json.dumps(report, indent=2))
PY
}

setup() {  # the bare GPU image lacks soundfile, jiwer and num2words: install the carried wheels once
  export PYTHONPATH=$repo PYTHONUNBUFFERED=1
  if ! python3 -c "import soundfile, jiwer, num2words" 2> /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$repo
  fi
}

both() {  # asr and vocoder side by side; each leaves one tar (the machine returns at most 8 files)
  local out=$1 what status=0
  (run vocoder "$out/vocoder") > "$out/vocoder.out" 2>&1 &
  (run asr "$out/asr") > "$out/asr.out" 2>&1 || status=1
  wait $! || status=1
  for what in asr vocoder; do
    cat "$out/$what.out"
    tar cf "$out/$what.tar" -C "$out" "$what" "$what.out" && rm -r "${out:?}/$what" "$out/$what.out"
  done
  return $status
}

case "${1:-} ${2:-}" in
  "prepare asr" | "prepare vocoder") prepare "$2" ;;
  "run asr" | "run vocoder") [ $# -eq 3 ] || { echo "$usage" >&2; exit 1; }; setup; run "$2" "$3" ;;
  "run both") [ $# -eq 3 ] || { echo "$usage" >&2; exit 1; }; setup; both "$3" ;;
  *) echo "$usage" >&2; exit 1 ;;
esac
