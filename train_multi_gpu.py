#!/usr/bin/env python
"""Train DeepLab on several devices: each batch is split over them, with SyncBatchNorm, so that the
batch-norm statistics are those of the whole batch. Same options as train.py.

    python train_multi_gpu.py --gpus 0,1,2,3 --init voc.params --run-dir runs/voc_ft
    python train_multi_gpu.py --gpus cpu:2 --freeze-bn ...   # the multi-device path on two CPU contexts

SyncBatchNorm needs GPUs: on several CPU contexts MXNet 1.9's operator deadlocks, so there the batch-norm
statistics must be frozen (--freeze-bn); everything else (batch split, whole-batch loss, gradient
aggregation) is the same code.
"""
import os
import sys

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import train  # noqa: E402
from mylib import cli  # noqa: E402


@cli.command('train_multi_gpu.py')
def main(argv=None):
    return train.run(argv, True, __doc__, 'train_multi_gpu.py')


if __name__ == '__main__':
    sys.exit(main())
