#!/usr/bin/env python
"""Train or fine-tune DeepLab (any family of the model zoo) on one device, with the official VOC recipe as defaults.

    python train.py --init voc.params --run-dir runs/voc_ft                 # fine-tune converted weights
    python train.py --init xception65_imagenet.params --run-dir runs/voc     # from the ImageNet backbone
    python train.py --dataset folder --data-root mydata --num-classes 5 --init voc.params --run-dir runs/mine
    python train.py --run-dir runs/voc --resume                              # after a stop or a kill

Several GPUs: train_multi_gpu.py --gpus 0,1,2,3 (same options, SyncBatchNorm over the devices).
"""
import os
import sys

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mylib import cli  # noqa: E402
from mylib.errors import OptionError  # noqa: E402


def run(argv, multi_gpu, description, prog):
    """Parse the options of train.py (or train_multi_gpu.py) and train."""
    from mylib.training import build_parser, given_options, train
    options = build_parser(description, multi_gpu, prog).parse_args(argv)
    options.given = given_options(build_parser(description, multi_gpu, prog), argv)  # --resume fills in the rest
    if not multi_gpu:
        if options.gpus and (',' in options.gpus or options.gpus.startswith('cpu:')):
            raise OptionError('train.py runs on one device; use train_multi_gpu.py --gpus %s' % options.gpus)
        if options.gpus is None:   # one device: GPU 0 if there is one, else the CPU
            import mxnet as mx
            options.gpus = '0' if mx.context.num_gpus() else 'cpu'
    train(options)
    return 0


@cli.command('train.py')
def main(argv=None):
    return run(argv, False, __doc__, 'train.py')


if __name__ == '__main__':
    sys.exit(main())
