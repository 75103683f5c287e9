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
everyday=0                                        # stage 0 also has Piper read this many everyday sentences...
everyday_text=                                    # ...of this file (cv-text/sentences.txt); stage 1 adds them to train
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
  [--everyday N --everyday-text SENTENCES_TXT]
  [--vocoder-config YAML] [--exp DIR] [--fastspeech-config YAML] [--fastspeech-exp DIR]
  [--fastspeech2-config YAML] [--fastspeech2-exp DIR]
  stage 0: build joe-lj (LJSpeech's sentences read by Piper's joe voice; resumable, skipped when complete)
           and, with --everyday N, N everyday sentences of --everyday-text (joe-lj/everyday)
  stage 1: manifests (joe-lj train [+ everyday] / dev)   stage 2: train the acoustic model
  stage 3: train the vocoder (Vocos)        stage 4: synthesize --sentences into EXP/samples (Griffin-Lim if stage 3 was skipped)
  stage 5: durations from stage 2's alignment, train FastSpeech   stage 6: train FastSpeech 2 from stage 5's model
  stage 7: fine-tune stage 3's vocoder on FastSpeech 2's aligned mels   stage 8: synthesize --sentences with FastSpeech 2
  stage 9: score it (Whisper judge, held-out sentences; needs benchmarks/setup_peers.sh)"
parse_options "$@"

[[ "$everyday" =~ ^[0-9]+$ ]] || die "--everyday takes a number of sentences, got '$everyday'"
if stage 0 "build joe-lj"; then
  if [ "$everyday" -gt 0 ] && [ ! -e "$data/joe-lj/everyday/metadata.csv" ]; then
    [ -n "$everyday_text" ] || die "--everyday $everyday needs --everyday-text FILE (one sentence per line)"
    python "$repo/recipes/tools/joe_lj.py" everyday "$everyday_text" "$data/joe-lj" --num "$everyday"
  fi
  make_joe_lj
fi

if stage 1 "prepare manifests"; then
  require_data joe-lj
  speechs2s prepare ljspeech "$data/joe-lj/train" "$manifests/train.jsonl"
  if [ "$everyday" -gt 0 ]; then
    require_data joe-lj/everyday
    speechs2s prepare ljspeech "$data/joe-lj/everyday" "$manifests/everyday.jsonl"
    cat "$manifests/everyday.jsonl" >> "$manifests/train.jsonl"
  fi
  speechs2s prepare ljspeech "$data/joe-lj/dev" "$manifests/valid.jsonl"
fi

tts_stages
