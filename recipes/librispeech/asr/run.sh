#!/usr/bin/env bash
# LibriSpeech ASR (openslr.org SLR12): download, manifests, Transformer training, WER on dev/test.
#   train-clean-100:  run.sh --data /corpora                   (configs/asr_transformer_base.yaml)
#   960 h:            run.sh --data /corpora --subset 960      (conf/asr_transformer_960h.yaml)
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                         # archives go to $data/downloads, corpus to $data/LibriSpeech
subset=100                                       # 100 (train-clean-100) or 960 (all training parts)
dev_sets="dev-clean dev-other"
test_sets="test-clean test-other"
base_url=${LIBRISPEECH_URL:-https://www.openslr.org/resources/12}   # or a mirror, e.g. https://us.openslr.org/resources/12
checksums=$recipe_dir/conf/sha256sums.txt        # "SHA256  FILE" lines (sha256sum format)
config=                                          # default: by --subset, see below
manifests=$recipe_dir/data
exp=
usage="Usage: $0 [--data DIR] [--subset 100|960] [--stage N] [--stop-stage N] [--base-url URL] [--config YAML] [--exp DIR]
  stage 0: download and unpack (resumable, checksum-verified)   stage 1: manifests
  stage 2: train   stage 3: evaluate on --dev-sets and --test-sets"
parse_options "$@"

case "$subset" in
  100) train_sets="train-clean-100"; config=${config:-$repo/configs/asr_transformer_base.yaml} ;;
  960) train_sets="train-clean-100 train-clean-360 train-other-500"; config=${config:-$recipe_dir/conf/asr_transformer_960h.yaml} ;;
  *) die "--subset must be 100 or 960, got '$subset'" ;;
esac
exp=${exp:-$recipe_dir/exp/train_${subset}h}
valid_set=${dev_sets%% *}

if stage 0 "download $train_sets $dev_sets $test_sets"; then
  [ -n "$data" ] || die "no data folder: pass --data DIR or set SPEECHS2S_DATA"
  for part in $train_sets $dev_sets $test_sets; do
    sha256=$(awk -v file="$part.tar.gz" '$2 == file {print $1}' "$checksums")
    [ -n "$sha256" ] || die "$checksums: no checksum for $part.tar.gz"
    speechs2s download "$base_url/$part.tar.gz" "$data/downloads/" --sha256 "$sha256" --extract "$data"
  done
fi

if stage 1 "prepare manifests"; then
  require_data LibriSpeech
  for part in $train_sets $dev_sets $test_sets; do
    speechs2s prepare librispeech "$data/LibriSpeech/$part" "$manifests/$part.jsonl"
  done
  for part in $train_sets; do cat "$manifests/$part.jsonl"; done > "$manifests/train_${subset}h.jsonl.tmp"
  mv "$manifests/train_${subset}h.jsonl.tmp" "$manifests/train_${subset}h.jsonl"
fi

if stage 2 "train $config"; then
  train_model "$config" "$exp" --set "data.train=$manifests/train_${subset}h.jsonl" --set "data.valid=$manifests/$valid_set.jsonl"
fi

if stage 3 "evaluate"; then
  for part in $dev_sets $test_sets; do
    evaluate_model "$exp" "$manifests/$part.jsonl" "$part"
  done
fi
