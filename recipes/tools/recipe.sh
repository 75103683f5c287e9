# Shared by every recipes/<corpus>/<task>/run.sh: option parsing, stage selection, training.
#
#     . "$(dirname "$0")/../../tools/recipe.sh"   # defines the functions below and $repo, $recipe_dir
#     stage=0 stop_stage=100 data=${SPEECHS2S_DATA:-} ...   # defaults: each one is an option
#     usage="..."
#     parse_options "$@"
#     if stage 1 "prepare manifests"; then ...; fi
#
# Paths are used as given (relative to where the script was started); outputs default to the
# recipe's own folder (data/ for manifests, exp/ for models and results).

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
recipe_dir=$(cd "$(dirname "${BASH_SOURCE[1]}")" && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"  # recipes run the checkout they live in

overrides=""  # --overrides "trainer.max_steps=2000 optim.lr=5e-4": extra `speechs2s train --set`s, every recipe

die() { echo "error: $*" >&2; exit 1; }

parse_options() {
  # Every `--some-name VALUE` (or `--some-name=VALUE`) sets the existing variable `some_name`.
  local name value
  while [ $# -gt 0 ]; do
    case "$1" in
      -h|--help) echo "$usage"; exit 0 ;;
      --*=*) name="${1%%=*}"; value="${1#*=}"; shift ;;
      --*) [ $# -ge 2 ] || die "option $1 needs a value"; name="$1"; value="$2"; shift 2 ;;
      *) die "unexpected argument '$1' (see --help)" ;;
    esac
    name="${name#--}"; name="${name//-/_}"
    case "$name" in repo|recipe_dir|usage|name|value) die "unknown option --${name//_/-} (see --help)" ;; esac
    declare -p "$name" > /dev/null 2>&1 || die "unknown option --${name//_/-} (see --help)"
    printf -v "$name" '%s' "$value"
  done
}

stage() {
  # stage NUMBER DESCRIPTION: true (after printing a header) when stage <= NUMBER <= stop_stage.
  [[ "$stage" =~ ^[0-9]+$ && "$stop_stage" =~ ^[0-9]+$ ]] || die "--stage and --stop-stage take numbers"
  [ "$1" -ge "$stage" ] && [ "$1" -le "$stop_stage" ] || return 1
  echo "=== stage $1: $2 ($(date '+%H:%M:%S'))"
}

require_data() {
  # require_data [SUBDIR]: fail with a clear message unless $data/SUBDIR is a folder.
  [ -n "$data" ] || die "no data folder: pass --data DIR or set SPEECHS2S_DATA"
  [ -d "$data/${1:-}" ] || die "$data/${1:-}: not found (pass --data DIR or set SPEECHS2S_DATA)"
}

train_model() {
  # train_model CONFIG OUT_DIR [--set KEY=VALUE ...]: start a run in OUT_DIR, or resume the one there.
  local config=$1 out=$2 resume=() override
  shift 2
  [ -e "$out/last" ] && resume=(--resume)
  for override in $overrides; do set -- "$@" --set "$override"; done
  speechs2s train "$config" --set "trainer.out_dir=$out" "$@" "${resume[@]}"
}

evaluate_model() {
  # evaluate_model MODEL_DIR MANIFEST NAME: WER/CER of MODEL_DIR on MANIFEST -> MODEL_DIR/results_NAME.{txt,tsv}.
  speechs2s evaluate --model "$1" --manifest "$2" --report "$1/results_$3.tsv" | tee "$1/results_$3.txt"
}

synthesize_lines() {
  # synthesize_lines MODEL_DIR VOCODER TEXT_FILE OUT_DIR: one OUT_DIR/NNN.wav (+ alignment PNG) per line.
  local model=$1 vocoder=$2 text_file=$3 out=$4 number=0 line
  mkdir -p "$out"
  while IFS= read -r line; do
    number=$((number + 1))
    [ -n "$line" ] || continue
    speechs2s speak "$line" -o "$out/$(printf %03d $number).wav" --model "$model" --vocoder "$vocoder" \
      --plot-alignment "$out/$(printf %03d $number).png"
  done < "$text_file"
}

tts_stages() {
  # tts_stages: stages 2-6 shared by the TTS recipes, on $manifests/{train,valid}.jsonl: train the
  # acoustic model ($config -> $exp), the vocoder ($vocoder_config -> $vocoder_exp), then speak each
  # line of $sentences into $exp/samples (with Griffin-Lim when stage 3 was skipped); stage 5 reads
  # the token durations off $exp's alignment and trains a FastSpeech from it ($fastspeech_config ->
  # $fastspeech_exp), stage 6 speaks the sentences with it into $fastspeech_exp/samples.
  local sets=(--set "data.train=$manifests/train.jsonl" --set "data.valid=$manifests/valid.jsonl") vocoder=griffin-lim
  [ -e "$vocoder_exp/last" ] && vocoder=$vocoder_exp
  if stage 2 "train $config"; then
    train_model "$config" "$exp" "${sets[@]}"
  fi
  if stage 3 "train vocoder $vocoder_config"; then
    train_model "$vocoder_config" "$vocoder_exp" "${sets[@]}"
    vocoder=$vocoder_exp
  fi
  if stage 4 "synthesize $sentences"; then
    synthesize_lines "$exp" "$vocoder" "$sentences" "$exp/samples"
  fi
  if stage 5 "durations from $exp, train $fastspeech_config"; then
    local name
    for name in train valid; do
      [ -e "$manifests/${name}_durations.jsonl" ] || \
        speechs2s durations "$manifests/$name.jsonl" "$manifests/${name}_durations.jsonl" --model "$exp"
    done
    train_model "$fastspeech_config" "$fastspeech_exp" --set "data.train=$manifests/train_durations.jsonl" \
      --set "data.valid=$manifests/valid_durations.jsonl" --set "trainer.init_from=$exp"
  fi
  if stage 6 "synthesize $sentences with FastSpeech"; then
    synthesize_lines "$fastspeech_exp" "$vocoder" "$sentences" "$fastspeech_exp/samples"
  fi
}
