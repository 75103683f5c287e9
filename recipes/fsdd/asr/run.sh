#!/usr/bin/env bash
# FSDD spoken digits ASR with one speaker held out: train on four speakers, test on an unseen voice.
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                        # corpora root: fsdd/ (stage 0 downloads it unless there)
test_speaker=theo                               # held out entirely (theo or yweweler)
config=$repo/configs/asr_transformer_tiny.yaml
manifests=$recipe_dir/data
exp=$recipe_dir/exp/asr_transformer_tiny
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--test-speaker NAME] [--config YAML] [--manifests DIR] [--exp DIR]
  stage 0: download FSDD v1.0.9 (12 MB, verified) into DATA/fsdd unless it is there
  stage 1: manifests (train/valid: the other speakers, upstream split; test: --test-speaker)
  stage 2: train (--overrides 'KEY=VALUE ...' adds config overrides)   stage 3: evaluate on the held-out speaker"
parse_options "$@"

if stage 0 "download FSDD"; then
  fetch_fsdd
fi

if stage 1 "prepare manifests (test speaker: $test_speaker)"; then
  require_data fsdd
  speakers=$(ls "$data/fsdd/recordings" | sed -n 's/^[0-9]_\(.*\)_[0-9]*\.wav$/\1/p' | sort -u | grep -vx "$test_speaker" | paste -sd,)
  speechs2s prepare fsdd "$data/fsdd" "$manifests/train.jsonl" --speakers "$speakers" --split train
  speechs2s prepare fsdd "$data/fsdd" "$manifests/valid.jsonl" --speakers "$speakers" --split test
  speechs2s prepare fsdd "$data/fsdd" "$manifests/test.jsonl" --speakers "$test_speaker"
fi

if stage 2 "train $config"; then
  train_model "$config" "$exp" --set "data.train=$manifests/train.jsonl" --set "data.valid=$manifests/valid.jsonl"
fi

if stage 3 "evaluate on $test_speaker"; then
  evaluate_model "$exp" "$manifests/test.jsonl" "test_$test_speaker"
fi
