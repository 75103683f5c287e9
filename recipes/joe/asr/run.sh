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
lm_config=$repo/configs/lm_lstm.yaml
lm_exp=$recipe_dir/exp/lm_lstm
lm_text=""                                        # extra sentence files for the LM (default: DATA/cv-text/sentences.txt if there)
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--lj-metadata CSV] [--jobs N] [--config YAML] [--manifests DIR] [--exp DIR]
  [--lm-config YAML] [--lm-exp DIR] [--lm-text FILE]
  stage 0: build joe-lj (LJSpeech's sentences read by Piper's joe voice; resumable, skipped when complete)
  stage 1: manifests (train, valid = chapter LJ050, dev)   stage 2: train   stage 3: evaluate on joe-lj dev
  stage 4: LM text (LJSpeech LJ004-LJ050 + --lm-text)      stage 5: train the LM with stage 2's tokenizer
  stage 6: tune the LM weight on dev's first half, evaluate with it on the second half"
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

if stage 4 "LM text"; then
  metadata=${lj_metadata:-$data/LJSpeech-1.1/metadata.csv}
  [ -f "$metadata" ] || metadata=$data/lj-text/metadata.csv
  [ -n "$lm_text" ] || { [ -f "$data/cv-text/sentences.txt" ] && lm_text=$data/cv-text/sentences.txt; } || true
  python "$repo/recipes/tools/lm_text.py" "$manifests/lm_train.txt" "$manifests/lm_valid.txt" \
    --ljspeech "$metadata" ${lm_text:+--sentences "$lm_text"}
fi

if stage 5 "train the LM ($lm_config)"; then
  train_model "$lm_config" "$lm_exp" --set "data.train=$manifests/lm_train.txt" --set "data.valid=$manifests/lm_valid.txt" \
    --set "data.tokenizer.path=$exp/tokenizer.json"
fi

if stage 6 "tune the LM weight on dev (first half), evaluate on dev (second half)"; then
  half=$(( $(wc -l < "$manifests/dev.jsonl") / 2 ))
  head -n "$half" "$manifests/dev.jsonl" > "$manifests/dev_tune.jsonl"
  tail -n +"$((half + 1))" "$manifests/dev.jsonl" > "$manifests/dev_test.jsonl"
  tune_lm_weight "$exp" "$lm_exp" "$manifests/dev_tune.jsonl"
  evaluate_model "$exp" "$manifests/dev_test.jsonl" dev_test_lm "$lm_exp"
  speechs2s evaluate --model "$exp" --manifest "$manifests/dev_test.jsonl" --report "$lm_exp/results_dev_test_no_lm.tsv" \
    | tee "$lm_exp/results_dev_test_no_lm.txt"
fi
