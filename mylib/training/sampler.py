"""Deterministic batches: the order of an epoch depends only on (seed, epoch), never on history."""
import numpy as np


class EpochBatchSampler:
    """Batches of keys `epoch * length + index` for `mylib.data.AugmentedDataset`.

    Each epoch is a fresh permutation drawn from (seed, epoch); with several workers (dist_sync),
    worker `rank` takes every `num_workers`-th image of it. The last incomplete batch is dropped.
    `start(epoch, batch)` positions the next iteration, so a resumed run sees the batches an
    uninterrupted run would have seen.
    """

    def __init__(self, length, batch_size, seed, rank=0, num_workers=1):
        self.length, self.batch_size, self.seed = length, batch_size, seed
        self.rank, self.num_workers = rank, num_workers
        self.epoch, self.first_batch = 0, 0
        if len(self) == 0:
            raise ValueError('%d images cannot fill one batch of %d%s' % (
                length, batch_size, ' per worker' if num_workers > 1 else ''))

    def __len__(self):
        """Batches per epoch."""
        return (self.length // self.num_workers) // self.batch_size

    def start(self, epoch, batch=0):
        self.epoch, self.first_batch = epoch, batch

    def __iter__(self):
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.length)
        mine = order[self.rank::self.num_workers][:len(self) * self.batch_size]
        for batch in range(self.first_batch, len(self)):
            indices = mine[batch * self.batch_size:(batch + 1) * self.batch_size]
            yield (self.epoch * self.length + indices).tolist()
