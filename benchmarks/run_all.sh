#!/usr/bin/env bash
# Every benchmark, one after the other, with the same options; each appends its table to RESULTS.md.
#   bash benchmarks/run_all.sh --quick --threads 1 --note "machine busy: preliminary"
#   bash benchmarks/run_all.sh --threads 1,2          # full sets (hours on 2 CPU cores)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-benchmarks/.venv-peers/bin/python}
[[ -x $PYTHON ]] || { echo "error: $PYTHON not found: run bash benchmarks/setup_peers.sh first" >&2; exit 1; }
for script in asr_accuracy_speed tts_intelligibility_speed scaling train_throughput; do
  echo "== $script"
  "$PYTHON" "benchmarks/$script.py" "$@"
done
