#!/usr/bin/env bash
# MWER vs CE control (2026-11-27): same init (asr-default), data, seed and steps; both evaluated without LM.
# Run from the repository root; data/asr_train3.jsonl as in benchmarks/results/asr_round6/report.json.
COMMON="--set trainer.init_from=asr-default --set data.train=data/asr_train3.jsonl --set data.valid=data/joe_dev_tune.jsonl
  --set data.num_workers=1 --set optim.lr=1.5e-4 --set optim.schedule=constant --set optim.warmup_steps=10
  --set trainer.max_steps=100 --set trainer.ckpt_every=20 --set trainer.valid_every=50 --set trainer.log_every=10
  --set trainer.average_last=3 --set trainer.keep_best=0"
speechs2s train configs/asr_default.yaml $COMMON --set trainer.out_dir=exp/asr_mwer \
  --set model.options.mwer_weight=0.5 --set model.options.mwer_hypotheses=4 --threads 1
speechs2s train configs/asr_default.yaml $COMMON --set trainer.out_dir=exp/asr_ce_control --threads 1
for run in asr_ce_control asr_mwer; do
  for set in joe_dev_test joe_dev_tune; do
    speechs2s evaluate --model exp/$run/final --lm none --manifest data/$set.jsonl --threads 1 \
      --report benchmarks/results/mwer/${run}_$set.tsv
  done
done
# 2026-11-28: the same from the same start (round-6 asr-default: git archive 3144a26 speechs2s/pretrained/asr-default | tar -x -C /tmp/r6,
# then trainer.init_from=/tmp/r6/speechs2s/pretrained/asr-default in COMMON) with the beam-search n-best, and all three on synth valid (/work/data_synth: recipes/synth output, outside the repo)
speechs2s train configs/asr_default.yaml $COMMON --set trainer.out_dir=exp/asr_mwer_beam \
  --set model.options.mwer_weight=0.5 --set model.options.mwer_hypotheses=4 --set model.options.mwer_nbest=beam --threads 1
for set in joe_dev_test joe_dev_tune; do
  speechs2s evaluate --model exp/asr_mwer_beam/final --lm none --manifest data/$set.jsonl --threads 1 \
    --report benchmarks/results/mwer/asr_mwer_beam_$set.tsv
done
for run in asr_ce_control asr_mwer asr_mwer_beam; do  # synth valid: recipes/synth's valid.jsonl
  speechs2s evaluate --model exp/$run/final --lm none --manifest /work/data_synth/valid.jsonl --threads 1 \
    --report benchmarks/results/mwer/${run}_synth_valid.tsv
done
