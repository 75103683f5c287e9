#!/usr/bin/env bash
# ASR on joe-lj: read English sentences, one synthetic voice (a sanity baseline; see recipes/synth/asr
# for many voices). Train on joe-lj train less chapter LJ050, select checkpoints on LJ050, and score on
# joe-lj dev (LJ002: sentences never seen in training or selection).
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                          # corpora root: joe-lj/ (stage 0 builds what is missing)
lj_metadata=                                      # LJSpeech's metadata.csv (default: DATA/LJSpeech-1.1, else download)
jobs=2                                            # Piper processes in stage 0
config=$repo/configs/asr_transformer_tiny.yaml
manifests=$recipe_dir/data
exp=$recipe_dir/exp/asr_transformer_tiny
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--lj-metadata CSV] [--jobs N] [--config YAML] [--manifests DIR] [--exp DIR]
  stage 0: build joe-lj (LJSpeech's sentences read by Piper's joe voice; resumable, skipped when complete)
  stage 1: manifests (train, valid = chapter LJ050, dev)   stage 2: train   stage 3: evaluate on joe-lj dev"
parse_options "$@"

if stage 0 "build joe-lj"; then
  make_joe_lj
fi

if stage 1 "prepare manifests"; then
  require_data joe-lj
  speechs2s prepare ljspeech "$data/joe-lj/train" "$manifests/train_all.jsonl"
  python "$repo/recipes/tools/filter_manifest.py" "$manifests/train_all.jsonl" "$manifests/valid.jsonl" --id-regex '^LJ050-'
  python "$repo/recipes/tools/filter_manifest.py" "$manifests/train_all.jsonl" "$manifests/train.jsonl" --id-regex '^LJ050-' --invert
  speechs2s prepare ljspeech "$data/joe-lj/dev" "$manifests/dev.jsonl"
fi

if stage 2 "train $config"; then
  train_model "$config" "$exp" --set "data.train=$manifests/train.jsonl" --set "data.valid=$manifests/valid.jsonl"
fi

if stage 3 "evaluate on joe-lj dev"; then
  evaluate_model "$exp" "$manifests/dev.jsonl" dev
fi
