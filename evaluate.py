#!/usr/bin/env python
"""Evaluate DeepLab v3+ weights with the official protocol (mIoU over one confusion matrix).

    python evaluate.py --weights voc.params                                   # VOC 2012 val, OS16
    python evaluate.py --weights voc.params --os 8 --scales 0.5,0.75,1.0,1.25,1.5,1.75 --flip
    python evaluate.py --model xception65_coco_voc_trainaug                   # official release

Expected with the official xception65_coco_voc_trainaug weights: 82.20 % (OS16, single scale) and
83.58 % (OS8, scales 0.5-1.75, flip) on VOC 2012 val.
"""
import argparse
import os
import sys

if __package__ in (None, ''):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mylib.cli import scales_type, size_type  # noqa: E402


def build_parser():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split('\n\n', 1)[1])
    model = parser.add_argument_group('model')
    source = model.add_mutually_exclusive_group(required=True)
    source.add_argument('--weights', metavar='FILE.params', help='converted or trained DeepLab v3+ parameters')
    source.add_argument('--model', metavar='NAME', help='an official release, downloaded and converted once '
                                                        '(see converters/extract_weights.py --list-models)')
    model.add_argument('--os', dest='output_stride', type=int, choices=(8, 16), default=16,
                       help='output stride (default 16; the ASPP rates follow: 6/12/18 or 12/24/36)')
    protocol = parser.add_argument_group('protocol')
    protocol.add_argument('--scales', type=scales_type, default=(1.0,),
                          help='comma-separated input scales (default 1.0; official multi-scale: 0.5,...,1.75)')
    protocol.add_argument('--flip', action='store_true', help='add left-right flipped inputs')
    protocol.add_argument('--crop-size', type=size_type,
                          help="HxW the images are padded to (default: the dataset's official crop)")
    data = parser.add_argument_group('data')
    data.add_argument('--dataset', default=None, choices=('voc', 'cityscapes', 'ade20k', 'folder'),
                      help="default: voc, or the release's dataset with --model")
    data.add_argument('--data-root', metavar='DIR',
                      help="dataset folder (default: gluoncv's, e.g. ~/.mxnet/datasets/voc)")
    data.add_argument('--split', default='val', help='default val')
    data.add_argument('--num-classes', type=int, help='classes of a --dataset folder')
    data.add_argument('--limit', type=int, metavar='N', help='only the first N images (a quick check)')
    run = parser.add_argument_group('run')
    run.add_argument('--gpus', default=None, help="GPU ids like 0,1, or cpu / cpu:N (default: every GPU, else CPU)")
    run.add_argument('--batch-size', type=int, help='images per step, split over the devices '
                                                    '(default: one per device)')
    run.add_argument('--output', metavar='FILE.json', help='results file (default: eval_<weights>_<dataset>_<split>'
                                                           '_os<N>[_ms][_flip].json here)')
    run.add_argument('--quiet', action='store_true', help='no progress bar')
    return parser


def default_output(args, weights):
    name = os.path.splitext(os.path.basename(weights))[0]
    suffix = ('_ms' if args.scales != (1.0,) else '') + ('_flip' if args.flip else '')
    return 'eval_%s_%s_%s_os%d%s.json' % (name, args.dataset, args.split, args.output_stride, suffix)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    from converters.mapping import ConversionError
    from mylib import zoo
    from mylib.data import DATASETS, DatasetError, get_dataset
    from mylib.devices import parse_devices
    from mylib.evaluation import class_names, evaluate, iou_table
    from mylib.fileio import write_json
    from mylib.inference import cap_onednn_isa
    from mylib.weights import WeightsError, load_deeplab
    cap_onednn_isa()  # before any oneDNN work: the faster CPU kernels for inference
    try:
        ctxs = parse_devices(args.gpus)
    except ValueError as error:
        parser.error(str(error))
    if args.batch_size is not None and args.batch_size < 1:
        parser.error('--batch-size %d: give at least 1' % args.batch_size)
    args.batch_size = args.batch_size or len(ctxs)
    release = None
    try:
        if args.model:
            release = zoo.get_release(args.model)
            weights = zoo.get_params_file(release, progress=not args.quiet)
        else:
            weights = args.weights
        args.dataset = args.dataset or (release.dataset if release else 'voc')
        net = load_deeplab(weights, args.output_stride, ctx=ctxs)
        dataset = get_dataset(args.dataset, args.split, root=args.data_root, num_classes=args.num_classes)
    except (WeightsError, DatasetError, zoo.ZooError, ConversionError) as error:
        print('evaluate.py: error: %s' % error, file=sys.stderr)
        return 1
    if dataset.num_classes != net.num_classes:
        print('evaluate.py: error: %s has %d classes but %s predicts %d' % (args.dataset, dataset.num_classes,
                                                                           weights, net.num_classes), file=sys.stderr)
        return 1
    crop_size = args.crop_size or (DATASETS[args.dataset].crop_size if args.dataset in DATASETS else (513, 513))
    settings = {'weights': os.path.abspath(weights), 'model': args.model, 'output_stride': args.output_stride,
                'atrous_rates': list(net.atrous_rates), 'scales': list(args.scales), 'flip': args.flip,
                'crop_size': list(crop_size), 'dataset': args.dataset, 'split': args.split,
                'data_root': dataset.root, 'devices': [str(ctx) for ctx in ctxs], 'batch_size': args.batch_size}
    print('evaluating %s on %s %s (%d images): OS%d, scales %s%s, crop %dx%d, %s'
          % (weights, args.dataset, args.split, len(dataset) if args.limit is None else min(args.limit, len(dataset)),
             args.output_stride, ','.join('%g' % s for s in args.scales), ', flip' if args.flip else '',
             crop_size[0], crop_size[1], ', '.join(settings['devices'])))
    results = evaluate(net, dataset, ctxs, args.scales, args.flip, crop_size, args.batch_size,
                       progress=not args.quiet, limit=args.limit)
    names = class_names(net.num_classes)
    print(iou_table(results, names))
    report = {'settings': settings, 'miou': results['miou'], 'pixel_accuracy': results['pixel_accuracy'],
              'iou': {name: None if iou != iou else iou for name, iou in zip(names, results['iou'])},  # NaN: absent
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
