"""Learning-rate schedules as ``LambdaLR`` multipliers of the peak ``lr``.

``factor(step)`` is the multiplier for optimizer step ``step + 1`` (``LambdaLR`` starts at 0), so
the first update already has a non-zero learning rate and the peak is reached at ``warmup``.
The multipliers are pure functions of the step: resuming restores ``LambdaLR.last_epoch`` and
nothing else.
"""
import math
from functools import partial
from typing import Callable

import torch


def noam(step: int, warmup: int) -> float:
    """Linear warmup to 1 at ``warmup``, then ``sqrt(warmup / step)`` (Vaswani et al., 2017)."""
    step += 1
    return min(step / warmup, math.sqrt(warmup / step)) if warmup > 0 else 1 / math.sqrt(step)


def cosine(step: int, warmup: int, total: int) -> float:
    """Linear warmup to 1, then half a cosine down to 0 at ``total`` steps."""
    step += 1
    if step < warmup:
        return step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress))


def constant(step: int, warmup: int) -> float:
    """Linear warmup to 1, then 1."""
    return min(1.0, (step + 1) / warmup) if warmup > 0 else 1.0


def lr_lambda(name: str, warmup: int, total: int) -> Callable[[int], float]:
    if name == "noam":
        return partial(noam, warmup=warmup)
    if name == "cosine":
        return partial(cosine, warmup=warmup, total=total)
    if name == "constant":
        return partial(constant, warmup=warmup)
    raise ValueError(f"unknown schedule {name!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, name: str, warmup: int,
                    total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` for schedule ``name`` (noam|cosine|constant); ``total`` = max optimizer steps."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(name, warmup, total))
