"""Length-bucketed batching with a padded-frame budget, deterministic shuffling, DDP and resume."""
import math
import warnings

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


class BucketBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices whose padded size ``len(batch) * max(lengths)`` stays within
    ``max_frames`` (and ``len(batch) <= max_batch_size`` when given).

    Items are sorted by length (ties in random order) and cut greedily into batches, so each batch
    holds similar lengths; the batch order is shuffled. Everything is a function of
    ``(seed, epoch)``: call :meth:`set_epoch` before each epoch. An item longer than
    ``max_frames`` gets a batch of its own (counted in ``oversized``, with a warning).

    Under DDP (``num_replicas`` > 1, taken from ``torch.distributed`` when not given) rank ``r``
    takes every ``num_replicas``-th batch. All ranks get the same number of batches, so no
    collective hangs: the largest batches are split in two until the count divides evenly (only
    if every batch is a single item are batches repeated). Each item is thus seen once per epoch.

    ``state_dict()`` records ``position``, the batches this rank has drawn this epoch;
    ``load_state_dict`` makes the next iteration yield only the remaining ones. A DataLoader with
    workers draws a few batches ahead, so a trainer that counts the batches it actually consumed
    should save ``{**sampler.state_dict(), "position": consumed}``.
    """

    def __init__(
        self,
        lengths: list[int],
        max_frames: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        max_batch_size: int | None = None,
    ):
        if max_frames <= 0:
            raise ValueError(f"max_frames must be positive, got {max_frames}")
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else dist.get_world_size() if distributed else 1
        self.rank = rank if rank is not None else dist.get_rank() if distributed else 0
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is not in [0, {self.num_replicas})")
        self.lengths = list(lengths)
        self.max_frames = max_frames
        self.max_batch_size = max_batch_size or len(self.lengths)
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.position = 0
        self.oversized = sum(length > max_frames for length in self.lengths)
        if self.oversized:
            warnings.warn(
                f"{self.oversized} item(s) longer than max_frames={max_frames} "
                f"(longest {max(self.lengths)}) will each be a batch of their own",
                stacklevel=2,
            )
        self._cache = None  # ((seed, epoch), this rank's batches)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields (from the start)."""
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0

    def __iter__(self):
        batches = self._rank_batches()
        while self.position < len(batches):
            self.position += 1
            yield batches[self.position - 1]
        self.position = 0

    def __len__(self) -> int:
        """Batches the next iteration yields (fewer than a full epoch after a mid-epoch resume)."""
        return max(0, len(self._rank_batches()) - self.position)

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch, self.position = state["seed"], state["epoch"], state["position"]

    def _rank_batches(self) -> list[list[int]]:
        if self._cache is None or self._cache[0] != (self.seed, self.epoch):
            batches = self._batches()
            self._cache = ((self.seed, self.epoch), batches[self.rank :: self.num_replicas])
        return self._cache[1]

    def _batches(self) -> list[list[int]]:
        """Every rank's batches for the current epoch, their count a multiple of ``num_replicas``."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist() if self.shuffle else range(len(self.lengths))
        order = sorted(order, key=self.lengths.__getitem__)  # stable: equal lengths keep the random order
        batches, batch = [], []
        for index in order:  # ascending length: the newest item is the batch's longest
            padded = (len(batch) + 1) * self.lengths[index]
            if batch and (padded > self.max_frames or len(batch) == self.max_batch_size):
                batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return _divisible(batches, self.num_replicas)


def _divisible(batches: list[list[int]], parts: int) -> list[list[int]]:
    """Split the largest batches in two (or, failing that, repeat batches) until ``parts`` divides
    the count. Halves of a batch keep within its frame budget."""
    batches = list(batches)
    while len(batches) % parts:
        largest = max(range(len(batches)), key=lambda i: len(batches[i]))
        if len(batches[largest]) < 2:
            shortfall = parts - len(batches) % parts
            return batches + (batches * math.ceil(shortfall / len(batches)))[:shortfall]
        batch = batches[largest]
        batches[largest : largest + 1] = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
    return batches
