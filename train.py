#!/usr/bin/env python
"""Train or fine-tune DeepLab v3+ (Xception-65) on one device, with the official VOC recipe as defaults.

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


def main(argv=None, multi_gpu=False, description=__doc__):
    """Parse the options, train, and turn known failures into one-line errors (exit status 1)."""
    from mylib.data import DatasetError
    from mylib.training import TrainingError, build_parser, given_options, train
    from mylib.weights import WeightsError
    parser = build_parser(description, multi_gpu)
    options = parser.parse_args(argv)
    options.given = given_options(build_parser(description, multi_gpu), argv)  # --resume fills in the rest
    if not multi_gpu:
        if options.gpus and (',' in options.gpus or options.gpus.startswith('cpu:')):
            parser.error('train.py runs on one device; use train_multi_gpu.py --gpus %s' % options.gpus)
        if options.gpus is None:   # one device: GPU 0 if there is one, else the CPU
            import mxnet as mx
            options.gpus = '0' if mx.context.num_gpus() else 'cpu'
    try:
        train(options)
    except (TrainingError, DatasetError, WeightsError) as error:
        print('%s: error: %s' % (os.path.basename(sys.argv[0]), error), file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
