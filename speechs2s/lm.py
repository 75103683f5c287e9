"""Language model API: ``load_lm(...)`` -> a token language model for shallow fusion
(:mod:`speechs2s.models.lm`; ``load_asr(..., lm=...)`` uses it)."""
from pathlib import Path

import torch

from speechs2s.errors import CheckpointError
from speechs2s.models.lm import LSTMLM


def load_lm(name_or_path: str | Path, device: str | torch.device | None = None, tokenizer=None) -> LSTMLM:
    """Load a language model checkpoint (directory or training ``out_dir``) on ``device`` (default:
    CUDA if available). Given the ASR model's ``tokenizer``, the LM must have been trained with it
    (else its ids mean other tokens)."""
    from speechs2s.checkpoint import load_checkpoint
    from speechs2s.utils import select_device

    lm, lm_tokenizer, _ = load_checkpoint(name_or_path, select_device(device), task="lm")
    if tokenizer is not None and lm_tokenizer.to_dict() != tokenizer.to_dict():
        raise CheckpointError(f"{name_or_path}: the language model was trained with another tokenizer than the ASR "
                              "model's (train it with data.tokenizer.path = the ASR model's tokenizer.json)")
    return lm
