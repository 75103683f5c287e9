"""Shallow fusion of an ASR model with a token language model: its weights, stored with the LM.

A language model (``task: lm``, :mod:`speechs2s.models.lm`) trained with an ASR model's tokenizer joins
that model's beam search with a weight and a length bonus (``DecodeConfig.lm_weight``/``length_bonus``).
:func:`tune_fusion` picks both on a dev manifest and writes them, with the WER of every setting tried,
to ``fusion.json`` in the LM's folder, so that ``--lm DIR`` alone decodes with the tuned values.
"""
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from speechs2s.checkpoint import resolve_checkpoint, write_text_atomic
from speechs2s.decode.asr import DecodeConfig
from speechs2s.errors import CheckpointError

FUSION_FILE = "fusion.json"


@dataclass
class FusionWeights:
    """``lm_weight`` scales ``log p_lm`` per token; ``length_bonus`` is added per non-eos token."""

    lm_weight: float = 0.3
    length_bonus: float = 0.5


def read_fusion(lm_name_or_dir: str | Path) -> FusionWeights:
    """The tuned weights stored with an LM, or the defaults when it was never tuned."""
    path = resolve_checkpoint(lm_name_or_dir) / FUSION_FILE
    if not path.exists():
        return FusionWeights()
    try:
        best = json.loads(path.read_text())["best"]
        return FusionWeights(float(best["lm_weight"]), float(best["length_bonus"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{path}: unreadable fusion settings ({error})") from None


def tune_fusion(asr, lm_dir: str | Path, manifest: str | Path, lm_weights: list[float],
                length_bonuses: list[float], decode: DecodeConfig | None = None, progress: bool = False,
                asr_name: str = "") -> dict:
    """Decode ``manifest`` with ``asr`` (whose ``lm`` is set) for every pair of weights, keep the pair with the
    lowest WER (ties: the smaller weight) and write ``{"best", "runs", "manifest", "asr"}`` to ``LM/fusion.json``
    (``asr``: ``asr_name``, the model the weights were tuned with).
    ``lm_weight`` 0 is always tried, so the stored choice is never worse than no LM on this set."""
    base = decode or DecodeConfig()
    runs = []
    for weight in sorted({0.0, *lm_weights}):
        for bonus in ([0.0] if weight == 0 else length_bonuses):
            config = dataclasses.replace(base, lm_weight=weight, length_bonus=bonus)
            evaluation = asr.evaluate(manifest, config, progress=progress)
            runs.append({"lm_weight": weight, "length_bonus": bonus, "wer": evaluation.wer, "cer": evaluation.cer})
    best = min(runs, key=lambda run: (run["wer"], run["lm_weight"], run["length_bonus"]))
    report = {"best": best, "runs": runs, "manifest": str(manifest), "beam_size": base.beam_size,
              "ctc_weight": base.ctc_weight, "asr": asr_name}
    write_text_atomic(resolve_checkpoint(lm_dir) / FUSION_FILE, json.dumps(report, indent=2) + "\n")
    return report
