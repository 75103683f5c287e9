#!/usr/bin/env bash
# Round 11: land the LM continuation (exp/lm_cont: from the bundled LM, 9,864 steps, constant lr 5e-4).
set -euo pipefail
. .venv/bin/activate; export OMP_NUM_THREADS=1
R=benchmarks/results/asr_lm_round11
speechs2s train configs/lm_lstm.yaml --threads 1 --set data.train=data/lm_train.txt --set data.valid=data/lm_valid.txt \
  --set trainer.init_from=speechs2s/pretrained/asr-default/lm --set trainer.out_dir=exp/lm_cont --set trainer.max_minutes=100 \
  --set trainer.max_steps=100000 --set optim.schedule=constant --set optim.lr=5e-4 --set optim.warmup_steps=50 \
  --set trainer.valid_every=500 --set trainer.ckpt_every=500 --set trainer.keep_best=3 --set trainer.average_last=3
speechs2s average --half /tmp/lm10 exp/lm_cont/final
# choices (joe-lj dev first half; synthetic training voices, unseen sentences)
speechs2s tune-lm --model default --lm /tmp/lm10 --manifest data/joe_dev_tune.jsonl --weights 0.2,0.35,0.5 --bonuses 0,1,2 --threads 1 | tee $R/tune.txt
cp /tmp/lm10/fusion.json $R/lm_fusion_tuning.json
speechs2s evaluate --model default --lm /tmp/lm10 --manifest /work/data_synth/valid.jsonl --threads 1 --report $R/cand_synth_valid.tsv
# landed (copied into speechs2s/pretrained/asr-default/lm), then the never-chosen sets once
for s in joe_dev_test:data/joe_dev_test.jsonl librivox:data/librivox.jsonl theo:data/theo.jsonl synth_test:/work/data_synth/test.jsonl; do
  speechs2s evaluate --model default --manifest ${s#*:} --threads 1 --report $R/${s%%:*}.tsv
done
