from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from reelforge.config import TrainParams
from reelforge.train.module import EMA, BatchStream, bucket_batches, lr_lambda


class _Held:
    """Samples held in memory, in buckets (`reelforge.train.module.Bucketed`): `x[idx]` is their rows."""

    def __init__(self, values: torch.Tensor, buckets: np.ndarray):
        self.values, self.buckets = values, buckets
        self.shapes = [values.shape[1:]] * (int(buckets.max()) + 1)

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, idx) -> torch.Tensor:
        idx = np.asarray(idx, np.int64)
        (_,) = set(self.buckets[idx].tolist())  # one bucket per batch, as the streams promise
        return self.values[torch.from_numpy(idx)]


def _held(values: torch.Tensor, buckets: list[int] | None = None) -> _Held:
    """Samples 0..N-1 (their value is their index) in the given buckets (default: one)."""
    return _Held(values, np.zeros(len(values), np.int64) if buckets is None else np.asarray(buckets))


def _stream_batches(world: int, per_rank: int, steps: range, start: int = 0) -> list[list[int]]:
    """The sample indices each optimizer step sees, over all ranks."""
    x, ids = _held(torch.arange(10).view(10, 1).float()), torch.zeros(10, 2, dtype=torch.long)
    streams = [
        iter(BatchStream(x, ids, per_rank, seed=7, rank=r, world=world, start=start)) for r in range(world)
    ]
    out = []
    for _ in steps:
        out.append(sorted(int(v) for s in streams for v in next(s)[0].flatten()))
    return out


def test_batch_stream_position_is_a_function_of_the_step_alone():
    single = _stream_batches(world=1, per_rank=4, steps=range(6))
    assert _stream_batches(world=2, per_rank=2, steps=range(6)) == single  # same samples however sharded
    assert _stream_batches(world=1, per_rank=4, steps=range(3), start=3) == single[3:]  # resume
    epochs = _stream_batches(world=1, per_rank=10, steps=range(2))  # 2 epochs of 10 samples
    assert epochs[0] == epochs[1] == list(range(10))  # each epoch visits every sample once


def test_one_bucket_is_the_endless_permuted_sequence_cut_into_batches():
    """What a store of one clip shape trained on before buckets: runs resume and reproduce across it."""
    stream = BatchStream(_held(torch.arange(10).view(10, 1)), torch.zeros(10, 1), 4, 7, 0, 1, 0)
    endless = np.concatenate([np.random.default_rng([7, e]).permutation(10) for e in range(3)])
    assert [stream.indices(g).tolist() for g in range(7)] == [
        endless[4 * g : 4 * g + 4].tolist() for g in range(7)
    ]


def test_every_batch_is_of_one_bucket_and_each_bucket_is_drawn_in_proportion():
    buckets = [0] * 12 + [1] * 30 + [2] * 8  # 3 + 8 + 2 batches of 4 per block of 13
    x = _held(torch.arange(50).view(50, 1), buckets)
    stream = BatchStream(x, torch.zeros(50, 1), 4, seed=3, rank=0, world=1, start=0)
    seen = [stream.indices(g) for g in range(26)]  # two blocks
    assert all(len({buckets[i] for i in b}) == 1 for b in seen)
    for block in (seen[:13], seen[13:]):  # each block: every sample once, but for bucket 1's last batch
        counts = np.bincount(np.concatenate(block), minlength=50)
        assert (counts[:12] == 1).all() and (counts[42:] == 1).all() and counts[12:42].sum() == 32
    assert [buckets[b[0]] for b in seen[:13]] != [buckets[b[0]] for b in seen[13:]]  # the order is reshuffled
    # The same batches however they are asked for: out of order (resume, workers), or after caches moved on.
    again = BatchStream(x, torch.zeros(50, 1), 4, seed=3, rank=0, world=1, start=0)
    assert [again.indices(g).tolist() for g in reversed(range(26))] == [b.tolist() for b in reversed(seen)]
    assert x[torch.from_numpy(seen[0])].shape == (4, 1)


def test_validation_batches_hold_every_sample_once_one_bucket_each():
    batches = bucket_batches(np.array([1, 0, 1, 1, 0, 1, 1]), 2)
    assert batches == [[1, 4], [0, 2], [3, 5], [6]]


def test_dataloader_workers_hand_over_the_same_batches_in_the_same_order():
    x, ids = _held(torch.arange(40).view(40, 1).float(), [0] * 25 + [1] * 15), torch.arange(40).view(40, 1)

    def batches(workers: int, start: int) -> list[tuple[list[int], int]]:
        stream = BatchStream(x, ids, 3, seed=1, rank=1, world=2, start=start)
        loader = iter(DataLoader(stream, batch_size=None, num_workers=workers))
        return [(b[1].flatten().tolist(), int(b[2])) for b in (next(loader) for _ in range(7))]

    assert batches(workers=2, start=4) == batches(workers=0, start=4)
    assert batches(workers=3, start=0)[4:] == batches(workers=0, start=4)[:3]  # resumed at step 4


def test_ema_follows_the_closed_form_and_swaps_weights_in_and_out():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    ema = EMA(model, decay=0.5)
    expected = torch.zeros(1, 2)
    for step, value in enumerate([1.0, 2.0, 4.0]):
        model.weight.data.fill_(value)
        ema.update(model, step=100 + step)  # past warm-up: decay 0.5
        expected = 0.5 * expected + 0.5 * value
    assert torch.allclose(ema.shadows()[0], expected)
    with ema.applied(model):
        assert torch.allclose(model.weight, expected)
    assert torch.all(model.weight == 4.0)


def test_lr_warms_up_then_decays_to_the_floor():
    f = lr_lambda(TrainParams(steps=100, warmup_steps=10, min_lr_ratio=0.1))
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(100) == pytest.approx(0.1) and f(500) == pytest.approx(0.1)
