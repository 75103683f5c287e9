#!/usr/bin/env bash
# TTS on LJSpeech 1.1 (keithito.com): download, manifests, acoustic model, HiFi-GAN vocoder, samples,
# FastSpeech and FastSpeech 2 distilled from it, and a Whisper-judged score beside Piper and espeak-ng.
# Splits by chapter: LJ001 + LJ003 test (the sentences joe-lj also reserves), LJ002 valid, the rest train.
set -euo pipefail
. "$(dirname "$0")/../../tools/recipe.sh"

stage=0
stop_stage=100
data=${SPEECHS2S_DATA:-}                          # archive goes to $data/downloads, corpus to $data/LJSpeech-1.1
config=$repo/configs/tts_transformer_tiny.yaml
vocoder_config=$repo/configs/vocoder_hifigan_tiny.yaml
sentences=$repo/recipes/tools/tts_sentences.txt
manifests=$recipe_dir/data
exp=$recipe_dir/exp/tts_transformer_tiny
vocoder_exp=$recipe_dir/exp/vocoder_hifigan_tiny
fastspeech_config=$repo/configs/tts_fastspeech.yaml  # starts from stage 2's model: keep their sizes alike
fastspeech_exp=$recipe_dir/exp/tts_fastspeech
fastspeech2_config=$repo/configs/tts_fastspeech2.yaml  # starts from stage 5's model: keep their sizes alike
fastspeech2_exp=$recipe_dir/exp/tts_fastspeech2
usage="Usage: $0 [--data DIR] [--stage N] [--stop-stage N] [--ljspeech-url URL] [--config YAML] [--vocoder-config YAML] [--exp DIR]
  [--fastspeech-config YAML] [--fastspeech-exp DIR]
  [--fastspeech2-config YAML] [--fastspeech2-exp DIR]
  stage 0: download and unpack (2.6 GB, resumable, checksum-verified)   stage 1: manifests
  stage 2: train the acoustic model   stage 3: train the HiFi-GAN vocoder   stage 4: synthesize --sentences
  stage 5: durations from stage 2's alignment, train FastSpeech   stage 6: train FastSpeech 2 from stage 5's model
  stage 7: fine-tune stage 3's vocoder on FastSpeech 2's aligned mels   stage 8: synthesize --sentences with FastSpeech 2
  stage 9: score it (Whisper judge, held-out sentences; needs benchmarks/setup_peers.sh)"
parse_options "$@"

if stage 0 "download LJSpeech-1.1"; then
  fetch_ljspeech --extract
fi

if stage 1 "prepare manifests"; then
  require_data LJSpeech-1.1
  speechs2s prepare ljspeech "$data/LJSpeech-1.1" "$manifests/all.jsonl"
  python "$repo/recipes/tools/filter_manifest.py" "$manifests/all.jsonl" "$manifests/test.jsonl" --id-regex '^LJ00[13]-'
  python "$repo/recipes/tools/filter_manifest.py" "$manifests/all.jsonl" "$manifests/valid.jsonl" --id-regex '^LJ002-'
  python "$repo/recipes/tools/filter_manifest.py" "$manifests/all.jsonl" "$manifests/train.jsonl" --id-regex '^LJ00[123]-' --invert
fi

tts_stages
