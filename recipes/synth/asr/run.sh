#!/usr/bin/env bash
# ASR on a generated multi-voice corpus (~90 voices of espeak-ng, flite, festival and Piper, with
# random tempo, speed, noise and reverberation; see ../local/make_corpus.py). Three voices are held
# out for the test split; the model is also scored on real human digits (FSDD, all 5 speakers).
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                          # corpora root: joe-lj/ (its sentences) and fsdd/, fetched by stage 0
lj_metadata=                                      # LJSpeech's metadata.csv (default: DATA/LJSpeech-1.1, else download)
corpus=$recipe_dir/data/corpus                    # generated WAVs and {train,valid,test}.jsonl
num_train=20000                                   # about 29 h of audio
sentences=""                                      # more train sentences (default: DATA/cv-text/sentences.txt if there)
num_valid=300
num_test=600
jobs=2                                            # generator processes (one thread each)
config=$repo/configs/asr_transformer_tiny.yaml
manifests=$recipe_dir/data
exp=$recipe_dir/exp/asr_transformer_tiny
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--lj-metadata CSV] [--num-train N] [--sentences FILE] [--jobs N] [--config YAML] [--exp DIR]
  stage 0: install the TTS engines (apt-get as root, pip), fetch joe-lj's sentences and FSDD
  stage 1: generate the corpus (resumable)
  stage 2: FSDD manifest (real speech)   stage 3: train   stage 4: evaluate (held-out voices, FSDD)"
parse_options "$@"

if stage 0 "install TTS engines, fetch joe-lj's sentences and FSDD"; then
  if ! (command -v espeak-ng && command -v flite && command -v text2wave && command -v sox) > /dev/null; then
    [ "$(id -u)" = 0 ] || die "stage 0 installs Debian packages: run it as root, or install them yourself (see README.md)"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q espeak-ng flite festival festvox-us-slt-hts \
      festvox-kallpc16k festvox-kdlpc16k festlex-cmu sox
  fi
  install_piper
  make_joe_lj --text-only
  fetch_fsdd
fi

if stage 1 "generate $num_train + $num_valid + $num_test utterances"; then
  require_data joe-lj
  [ -n "$sentences" ] || { [ -f "$data/cv-text/sentences.txt" ] && sentences=$data/cv-text/sentences.txt; } || true
  python "$recipe_dir/../local/make_corpus.py" --joe-lj "$data/joe-lj" --out "$corpus" ${sentences:+--sentences "$sentences"} \
    --num-train "$num_train" --num-valid "$num_valid" --num-test "$num_test" --jobs "$jobs"
fi

if stage 2 "prepare the FSDD manifest"; then
  require_data fsdd
  speechs2s prepare fsdd "$data/fsdd" "$manifests/fsdd.jsonl"
fi

if stage 3 "train $config"; then
  train_model "$config" "$exp" --set "data.train=$corpus/train.jsonl" --set "data.valid=$corpus/valid.jsonl"
fi

if stage 4 "evaluate"; then
  evaluate_model "$exp" "$corpus/test.jsonl" test_heldout_voices
  evaluate_model "$exp" "$manifests/fsdd.jsonl" fsdd
fi
