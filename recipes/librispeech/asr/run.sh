#!/usr/bin/env bash
# LibriSpeech ASR (openslr.org SLR12): download, manifests, Conformer training (all visible GPUs), WER on
# dev/test, then a token LM on the LibriSpeech LM corpus (SLR11) fused into beam search.
#   train-clean-100:  run.sh --data /corpora                   (configs/asr_conformer_base.yaml)
#   960 h:            run.sh --data /corpora --subset 960      (conf/asr_conformer_960h.yaml)
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
ngpu=                                            # GPUs for training (default: all visible; 0 or 1: no torchrun)
manifests=$recipe_dir/data
exp=
lm_url=${LIBRISPEECH_LM_URL:-https://www.openslr.org/resources/11/librispeech-lm-norm.txt.gz}
lm_sha256=                                       # OpenSLR publishes none for SLR11: give one to pin your copy
lm_every=10                                      # LM text: every N-th sentence of the LM corpus
lm_config=$recipe_dir/conf/lm_lstm_librispeech.yaml
lm_exp=                                          # default: <exp>_lm
tune_set=dev-clean                               # where stage 6 chooses the LM weight
beam=20                                          # beam width in stages 3 and 6 (ESPnet's LibriSpeech-100 figures: 20)
usage="Usage: $0 [--data DIR] [--subset 100|960] [--stage N] [--stop-stage N] [--base-url URL] [--config YAML] [--ngpu N]
  [--exp DIR] [--lm-url URL] [--lm-sha256 HASH] [--lm-every N] [--lm-config YAML] [--lm-exp DIR] [--tune-set PART] [--beam N]
  stage 0: download and unpack (resumable, checksum-verified)   stage 1: manifests
  stage 2: train (torchrun over --ngpu GPUs)                    stage 3: evaluate on --dev-sets and --test-sets
  stage 4: LM text (SLR11, every --lm-every-th sentence)        stage 5: train the LM with stage 2's tokenizer
  stage 6: tune the LM weight on --tune-set, evaluate every dev and test part with the LM"
parse_options "$@"

case "$subset" in
  100) train_sets="train-clean-100"; config=${config:-$repo/configs/asr_conformer_base.yaml} ;;
  960) train_sets="train-clean-100 train-clean-360 train-other-500"; config=${config:-$recipe_dir/conf/asr_conformer_960h.yaml} ;;
  *) die "--subset must be 100 or 960, got '$subset'" ;;
esac
exp=${exp:-$recipe_dir/exp/train_${subset}h}
lm_exp=${lm_exp:-${exp}_lm}
valid_set=${dev_sets%% *}

if stage 0 "download $train_sets $dev_sets $test_sets"; then
  require_data_root
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

if stage 4 "LM text (every ${lm_every}th sentence of $lm_url)"; then
  require_data_root
  speechs2s download "$lm_url" "$data/downloads/librispeech-lm-norm.txt.gz" ${lm_sha256:+--sha256 "$lm_sha256"}
  excluded=()  # no dev or test transcript is LM training text
  for part in $dev_sets $test_sets; do excluded+=(--exclude "$manifests/$part.jsonl"); done
  python "$repo/recipes/tools/librispeech_lm_text.py" "$data/downloads/librispeech-lm-norm.txt.gz" \
    "$manifests/lm_train.txt" --every "$lm_every" "${excluded[@]}"
fi

if stage 5 "train the LM ($lm_config)"; then
  train_model "$lm_config" "$lm_exp" --set "data.train=$manifests/lm_train.txt" --set "data.valid=$manifests/$valid_set.jsonl" \
    --set "data.tokenizer.path=$exp/tokenizer.json"
fi

if stage 6 "tune the LM weight on $tune_set, evaluate with the LM"; then
  tune_lm_weight "$exp" "$lm_exp" "$manifests/$tune_set.jsonl"
  for part in $dev_sets $test_sets; do
    evaluate_model "$exp" "$manifests/$part.jsonl" "$part" "$lm_exp"
  done
fi
