"""The ad-hoc experiment behind report.json's "not_kept" figures (round 13), kept as the record of how they were made.

    benchmarks/.venv-peers/bin/python benchmarks/results/tts_round13/postfilter_experiment.py scale default choice-cv 1.0,1.2,1.4
    benchmarks/.venv-peers/bin/python benchmarks/results/tts_round13/postfilter_experiment.py sharpen default choice 1.0,1.15,1.3

``scale``: each sentence's log-mel deviations from its per-bin mean times ALPHA; ``sharpen``: Griffin-Lim's ``sharpen``
(magnitudes to the power ALPHA at constant frame energy). Griffin-Lim, 0.25 s after each sentence, Whisper
tiny.en judge as in tts_intelligibility_speed.py. Prints WER/CER per value.
The figures in report.json were measured on the round-11 tts-default (the bundle at the time; `default` now
names round 13's weights, so pass round 11's checkpoint folder to reproduce them).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import common  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchaudio.functional as AF  # noqa: E402
from tts_intelligibility_speed import sentence_set  # noqa: E402

import speechs2s  # noqa: E402
from speechs2s.models.vocoder import GriffinLim  # noqa: E402

torch.set_num_threads(1)
mode, model, set_name, values = sys.argv[1], sys.argv[2], sys.argv[3], [float(a) for a in sys.argv[4].split(",")]
tts = speechs2s.load_tts(model, device="cpu", vocoder="griffin-lim")
sentences = sentence_set(set_name, False)
mels = [[u.mel.float() for u in tts.synthesize_sentences(s)] for s in sentences]
judge = common.whisper_tiny_en("float32", 1)
pause = torch.zeros(round(0.25 * tts.sample_rate))
for alpha in values:
    vocoder = GriffinLim(sharpen=alpha) if mode == "sharpen" else tts.vocoder
    hyps = []
    for parts in mels:
        wavs = []
        for mel in parts:
            mean = mel.mean(0, keepdim=True)
            wavs += [vocoder.generate(mean + alpha * (mel - mean) if mode == "scale" else mel), pause]
        hyps.append(judge(AF.resample(torch.cat(wavs), tts.sample_rate, 16000).numpy().astype(np.float32)))
    print(alpha, common.score(sentences, hyps), flush=True)
