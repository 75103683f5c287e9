#!/usr/bin/env bash
cd /work/main; . .venv/bin/activate
for s in joe_dev_test librivox theo synth_test joe_dev_tune synth_valid; do
  if [ $s = synth_test ] || [ $s = synth_valid ]; then man=/work/data_synth/${s#synth_}.jsonl; else man=data/$s.jsonl; fi
  echo "beam12 $s: $(OMP_NUM_THREADS=1 speechs2s evaluate --model asr-default --beam 12 --manifest $man --threads 1 --report benchmarks/results/asr_beam12/beam12_$s.tsv 2>&1 | tail -1)"
done
