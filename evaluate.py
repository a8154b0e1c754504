#!/usr/bin/env python
"""Evaluate DeepLab weights (any family) with the official protocol (mIoU over one confusion matrix).

    python evaluate.py --weights voc.params                                   # VOC 2012 val, OS16
    python evaluate.py --weights voc.params --os 8 --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip
    python evaluate.py --model xception65_coco_voc_trainaug                   # official release

Expected with the official xception65_coco_voc_trainaug weights: 82.20 % (OS16, single scale) and
83.58 % (OS8, scales 0.5-1.75, flip) on VOC 2012 val.
"""
import os
import sys

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mylib import cli  # noqa: E402
from mylib.cli import positive_int, scales_type, size_type  # noqa: E402
from mylib.data.specs import DATASETS, SINGLE_SCALE  # noqa: E402
from mylib.errors import OptionError  # noqa: E402

PROG = 'evaluate.py'


def build_parser():
    parser = cli.ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0], epilog=__doc__.split('\n\n', 1)[1])
    model = parser.add_argument_group('model')
    source = model.add_mutually_exclusive_group(required=True)
    source.add_argument('--weights', metavar='FILE.params', help='converted or trained DeepLab parameters (any family)')
    source.add_argument('--model', metavar='NAME', help='an official release, downloaded and converted once '
                                                        '(see converters/extract_weights.py --list-models)')
    model.add_argument('--os', dest='output_stride', type=int, choices=(8, 16, 32), default=None,
                       help="output stride (default: the weights' own, 16 for most releases; the ASPP rates follow: "
                            '6/12/18 at 16, 12/24/36 at 8)')
    protocol = parser.add_argument_group('protocol')
    protocol.add_argument('--scales', type=scales_type, default=SINGLE_SCALE,
                          help='comma-separated input scales (default 1.0; official multi-scale: 0.5,...,1.75)')
    protocol.add_argument('--flip', action='store_true', help='add left-right flipped inputs')
    protocol.add_argument('--crop-size', type=size_type,
                          help="HxW the images are padded to (default: the dataset's official crop; torchvision and "
                               "DeepLab-v3-plus-cityscapes networks: each image unpadded at its own size)")
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default=None, choices=tuple(DATASETS) + ('folder',),
                      help="default: voc, or the release's dataset with --model")
    data.add_argument('--data-root', metavar='DIR',
                      help="dataset folder (default: gluoncv's, e.g. ~/.mxnet/datasets/voc)")
    data.add_argument('--split', default='val', help='default val')
    data.add_argument('--num-classes', type=positive_int, help='classes of a --dataset folder')
    data.add_argument('--limit', type=positive_int, metavar='N', help='only the first N images (a quick check)')
    run = parser.add_argument_group('run')
    run.add_argument('--gpus', default=None, help="GPU ids like 0,1, or cpu / cpu:N (default: every GPU, else CPU)")
    run.add_argument('--batch-size', type=positive_int, help='images per step, split over the devices '
                                                    '(default: one per device)')
    run.add_argument('--output', metavar='FILE.json', help='results file (default: eval_<weights>_<dataset>_<split>'
                                                           '_os<N>[_ms][_flip].json here)')
    run.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def default_output(args, weights):
    name = os.path.splitext(os.path.basename(weights))[0]
    suffix = ('_ms' if args.scales != SINGLE_SCALE else '') + ('_flip' if args.flip else '')
    return 'eval_%s_%s_%s_os%d%s.json' % (name, args.dataset, args.split, args.output_stride, suffix)


@cli.command(PROG)
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.output and os.path.isdir(args.output):
        raise OptionError('--output %s is a folder; give a file name such as %s'
                          % (args.output, os.path.join(args.output, 'results.json')))
    from mylib import zoo
    from mylib.data import get_dataset, spec_for
    from mylib.devices import parse_devices
    from mylib.errors import DatasetError
    from mylib.evaluation import evaluate, iou_table
    from mylib.fileio import write_json
    from mylib.inference import OWN_SIZE, cap_onednn_isa
    from mylib.metrics import number_or_none
    from mylib.weights import fitting_crop, load_segmentation, recorded_dataset, runs_unpadded
    cap_onednn_isa()  # before any oneDNN work: the faster CPU kernels for inference
    ctxs = parse_devices(args.gpus)
    args.batch_size = args.batch_size or len(ctxs)
    release = zoo.get_release(args.model) if args.model else None
    weights = zoo.get_params_file(release, progress=not args.quiet) if release else args.weights
    args.dataset = args.dataset or (release.dataset if release else 'voc')
    net = load_segmentation(weights, args.output_stride, ctx=ctxs)
    args.output_stride = net.output_stride
    dataset = get_dataset(args.dataset, args.split, root=args.data_root, num_classes=args.num_classes)
    if dataset.num_classes != net.num_classes:
        raise DatasetError('%s has %d classes but %s predicts %d'
                           % (args.dataset, dataset.num_classes, weights, net.num_classes))
    spec = spec_for(args.dataset, dataset.num_classes)
    # your own data names its classes as the weights' dataset does (recorded beside them, else by class count)
    names = (spec_for(recorded_dataset(weights, net.num_classes), net.num_classes) if args.dataset == 'folder'
             else spec).class_names
    if args.crop_size is None and runs_unpadded(weights):  # as the original (torchvision, Cityscapes project)
        crop_size = OWN_SIZE
    else:
        crop_size = fitting_crop(net, args.crop_size or spec.eval_crop, args.crop_size is not None)
    own_size = tuple(crop_size) == OWN_SIZE
    settings = {'weights': os.path.abspath(weights), 'model': args.model, 'output_stride': args.output_stride,
                'model_spec': net.spec.to_json(), 'scales': list(args.scales), 'flip': args.flip,
                'crop_size': 'own size' if own_size else list(crop_size), 'dataset': args.dataset, 'split': args.split,
                'data_root': dataset.root, 'devices': [str(ctx) for ctx in ctxs], 'batch_size': args.batch_size}
    print('evaluating %s on %s %s (%d images): OS%d, scales %s%s, %s, %s'
          % (weights, args.dataset, args.split, len(dataset) if args.limit is None else min(args.limit, len(dataset)),
             args.output_stride, ','.join('%g' % s for s in args.scales), ', flip' if args.flip else '',
             'each image at its own size' if own_size else 'crop %dx%d' % tuple(crop_size),
             ', '.join(settings['devices'])))
    results = evaluate(net, dataset, ctxs, args.scales, args.flip, crop_size, args.batch_size,
                       progress=not args.quiet, limit=args.limit)
    print(iou_table(results, names))
    report = {'settings': settings, 'miou': number_or_none(results['miou']),  # None: no labelled pixel at all
              'pixel_accuracy': number_or_none(results['pixel_accuracy']),
              'iou': {name: number_or_none(iou)  # None: a class neither labelled nor predicted
                      for name, iou in zip(names, results['iou'])},
              'images': results['images'], 'seconds': results['seconds'],
              'confusion_matrix': results['confusion']}
    if release is not None and release.results:
        report['official'] = [dict(result._asdict()) for result in release.results]
        print('official results of %s: %s' % (release.name, '; '.join(map(zoo.format_result, release.results))))
    output = args.output or default_output(args, weights)
    write_json(output, report)
    print('mIoU %.2f %%, pixel accuracy %.2f %% over %d images in %.0f s; results in %s'
          % (100 * results['miou'], 100 * results['pixel_accuracy'], results['images'], results['seconds'], output))
    return 0


if __name__ == '__main__':
    sys.exit(main())
