#!/usr/bin/env bash
# TTS on joe-lj (one synthetic voice in LJSpeech layout): acoustic model, Vocos vocoder, samples,
# FastSpeech and FastSpeech 2 distilled from it, and a Whisper-judged score beside Piper and espeak-ng.
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                          # corpora root: joe-lj/ (stage 0 builds what is missing)
lj_metadata=                                      # LJSpeech's metadata.csv (default: DATA/LJSpeech-1.1, else download)
jobs=2                                            # Piper processes in stage 0
config=$repo/configs/tts_transformer_tiny.yaml   # or configs/tts_tacotron_tiny.yaml
vocoder_config=$repo/configs/vocoder_vocos_tiny.yaml  # or configs/vocoder_hifigan_tiny.yaml
sentences=$repo/recipes/tools/tts_sentences.txt   # stage 4 speaks these (none is in joe-lj)
manifests=$recipe_dir/data
exp=$recipe_dir/exp/tts_transformer_tiny
vocoder_exp=$recipe_dir/exp/vocoder_vocos_tiny
fastspeech_config=$repo/configs/tts_fastspeech.yaml  # starts from stage 2's model: keep their sizes alike
fastspeech_exp=$recipe_dir/exp/tts_fastspeech
fastspeech2_config=$repo/configs/tts_fastspeech2.yaml  # starts from stage 5's model: keep their sizes alike
fastspeech2_exp=$recipe_dir/exp/tts_fastspeech2
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--lj-metadata CSV] [--jobs N] [--config YAML]
  [--vocoder-config YAML] [--exp DIR] [--fastspeech-config YAML] [--fastspeech-exp DIR]
  [--fastspeech2-config YAML] [--fastspeech2-exp DIR]
  stage 0: build joe-lj (LJSpeech's sentences read by Piper's joe voice; resumable, skipped when complete)
  stage 1: manifests (joe-lj train / dev)   stage 2: train the acoustic model
  stage 3: train the vocoder (Vocos)        stage 4: synthesize --sentences into EXP/samples (Griffin-Lim if stage 3 was skipped)
  stage 5: durations from stage 2's alignment, train FastSpeech   stage 6: train FastSpeech 2 from stage 5's model
  stage 7: synthesize --sentences with FastSpeech 2   stage 8: score it (Whisper judge, held-out sentences; needs benchmarks/setup_peers.sh)"
parse_options "$@"

if stage 0 "build joe-lj"; then
  make_joe_lj
fi

if stage 1 "prepare manifests"; then
  require_data joe-lj
  speechs2s prepare ljspeech "$data/joe-lj/train" "$manifests/train.jsonl"
  speechs2s prepare ljspeech "$data/joe-lj/dev" "$manifests/valid.jsonl"
fi

tts_stages
