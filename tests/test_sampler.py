import random
from collections import Counter

import pytest

from speechs2s.data.sampler import BucketBatchSampler


def _lengths(n=300, seed=0):
    rng = random.Random(seed)
    return [rng.randint(20, 400) for _ in range(n)]


def _check_budget(sampler, batches):
    for batch in batches:
        longest = max(sampler.lengths[i] for i in batch)
        assert len(batch) == 1 or len(batch) * longest <= sampler.max_frames


@pytest.mark.parametrize("shuffle", [True, False])
def test_budget_and_exact_coverage(shuffle):
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, max_frames=2000, shuffle=shuffle, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) > 1
        _check_budget(sampler, batches)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        # bucketing keeps lengths within a batch close: padding waste is small
        padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
        assert sum(lengths) / padded > 0.9


def test_max_batch_size():
    sampler = BucketBatchSampler([10] * 25, max_frames=10_000, max_batch_size=8)
    assert sorted(len(batch) for batch in sampler) == [1, 8, 8, 8]


def test_oversized_item_gets_its_own_batch():
    lengths = [100, 100, 5000, 100, 6000]
    with pytest.warns(UserWarning, match="2 item"):
        sampler = BucketBatchSampler(lengths, max_frames=1000)
    assert sampler.oversized == 2
    batches = list(sampler)
    assert sorted(map(sorted, batches)) == [[0, 1, 3], [2], [4]]


def test_deterministic_per_seed_and_epoch():
    lengths = _lengths()
    a = BucketBatchSampler(lengths, 2000, seed=1)
    b = BucketBatchSampler(lengths, 2000, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    epoch1 = list(a)
    assert epoch1 != list(b)  # new epoch, new order
    b.set_epoch(1)
    assert list(b) == epoch1
    assert list(BucketBatchSampler(lengths, 2000, seed=2)) != list(BucketBatchSampler(lengths, 2000, seed=1))


@pytest.mark.parametrize("n, replicas", [(300, 2), (301, 3), (7, 4), (3, 4)])
def test_ddp_disjoint_equal_shares(n, replicas):
    lengths = _lengths(n)
    for epoch in range(2):
        shards = []
        for rank in range(replicas):
            sampler = BucketBatchSampler(lengths, 1500, seed=5, num_replicas=replicas, rank=rank)
            sampler.set_epoch(epoch)
            shards.append(list(sampler))
            _check_budget(sampler, shards[-1])
        assert len({len(shard) for shard in shards}) == 1  # same count on every rank: no collective hangs
        counts = Counter(i for shard in shards for batch in shard for i in batch)
        assert set(counts) == set(range(n))
        if n >= replicas:
            assert set(counts.values()) == {1}  # batches were split, not repeated: each item exactly once


def test_resume_mid_epoch():
    lengths = _lengths()
    sampler = BucketBatchSampler(lengths, 2000, seed=7)
    sampler.set_epoch(2)
    full = list(sampler)
    iterator = iter(sampler)
    consumed = [next(iterator) for _ in range(5)]
    state = sampler.state_dict()
    assert state == {"seed": 7, "epoch": 2, "position": 5}

    resumed = BucketBatchSampler(lengths, 2000, seed=0)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # the trainer's loop calls this again: the position is kept
    assert len(resumed) == len(full) - 5
    assert consumed + list(resumed) == full
    # the following epoch starts from the beginning
    assert len(resumed) == len(full)
    resumed.set_epoch(3)
    assert sorted(i for batch in resumed for i in batch) == list(range(len(lengths)))


def _ddp_worker(rank, world_size, init_file, lengths, results):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        sampler = BucketBatchSampler(lengths, 1500, seed=1)  # rank and world size from torch.distributed
        sampler.set_epoch(4)
        results[rank] = (sampler.rank, sampler.num_replicas, list(sampler))
    finally:
        dist.destroy_process_group()


def test_ddp_from_process_group(tmp_path):
    import torch.multiprocessing as mp

    lengths = _lengths(101)
    with mp.Manager() as manager:
        results = manager.dict()
        mp.start_processes(_ddp_worker, args=(2, tmp_path / "init", lengths, results), nprocs=2, start_method="fork")
        results = dict(results)
    assert [results[r][:2] for r in range(2)] == [(0, 2), (1, 2)]
    shards = [results[r][2] for r in range(2)]
    assert len(shards[0]) == len(shards[1])
    assert sorted(i for shard in shards for batch in shard for i in batch) == list(range(101))
