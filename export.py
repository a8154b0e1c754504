#!/usr/bin/env python
"""Export DeepLab weights (any family) for deployment: an ONNX file, or MXNet's symbol + params pair.

    python export.py --weights voc.params --format onnx        # -> voc-os16-513x513.onnx
    python export.py --model mobilenetv3_large_cityscapes_trainfine --format onnx   # an official release
    python export.py --weights voc.params --format onnx --os 8 --size 1025x2049 --output city-os8
    python export.py --weights voc.params --format symbol      # -> voc-os16-symbol.json, voc-os16-0000.params

Both take `data`, N x 3 x H x W float32 RGB pixel values in [0, 255] (normalised inside), and give
`logits`, N x classes x H x W, equal to the Gluon model's (each export is run against it on a random
image before it is kept). The ONNX graph is fixed to --size with a dynamic batch axis N; the MXNet
symbol takes any size, like the Gluon model:
    net = mx.gluon.SymbolBlock.imports('voc-os16-symbol.json', ['data'], 'voc-os16-0000.params')

ONNX is the way to GPUs that MXNet's wheels do not support: mxnet-cu112 1.9.1 carries GPU code for
sm_50 to sm_86 only (Maxwell to Ampere; no Ada such as the RTX 40 series or L4, no Hopper such as
the H100). Run the .onnx file there with onnxruntime-gpu (`pip install onnxruntime-gpu`):

    import onnxruntime
    session = onnxruntime.InferenceSession('voc-os16-513x513.onnx',
                                           providers=['CUDAExecutionProvider', 'CPUExecutionProvider'])
    logits = session.run(['logits'], {'data': x})[0]   # x: N x 3 x 513 x 513 float32 RGB 0-255
"""
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mylib import cli  # noqa: E402
from mylib.cli import size_type  # noqa: E402
from mylib.errors import OptionError  # noqa: E402

PROG = 'export.py'
FORMATS = ('onnx', 'symbol')


def build_parser():
    parts = __doc__.split('\n\n')
    parser = cli.ArgumentParser(prog=PROG, description=parts[0], epilog='\n\n'.join(parts[1:]))
    model = parser.add_argument_group('model')
    source = model.add_mutually_exclusive_group(required=True)
    source.add_argument('--weights', metavar='FILE.params',
                        help='DeepLab parameters (converted by converters/extract_weights.py, or saved by '
                             'training); the network is read from the JSON beside them')
    source.add_argument('--model', metavar='NAME', help='an official release, downloaded and converted once '
                                                        '(see converters/extract_weights.py --list-models)')
    model.add_argument('--os', dest='output_stride', type=int, choices=(8, 16, 32), default=None,
                       help="output stride of the exported graph (default: the weights' own, 16 for most releases; 8 "
                            'is finer and about 3x slower)')
    export = parser.add_argument_group('export')
    export.add_argument('--format', required=True, choices=FORMATS,
                        help='onnx: PREFIX.onnx (onnxruntime and other ONNX runtimes); symbol: PREFIX-symbol.json + '
                             'PREFIX-0000.params (MXNet, mx.gluon.SymbolBlock.imports)')
    export.add_argument('--size', type=size_type, metavar='HxW',
                        help="input height x width the ONNX graph is fixed to (default: the official evaluation "
                             "crop of the weights' dataset, 513x513 for VOC); its batch axis is dynamic (any N, so "
                             'there is no --batch-size). The symbol takes any size: --size is then only that of '
                             'the check input')
    output = parser.add_argument_group('output')
    output.add_argument('--output', metavar='PREFIX',
                        help='output path without extension, in an existing folder (default: '
                             '<weights name>-os<OS>[-<H>x<W> for onnx] in the current folder)')
    output.add_argument('--no-check', action='store_true',
                        help='skip running the exported model against the Gluon model on a random input')
    return parser


def output_prefix(args):
    """--output (its folder must exist), or `<weights name>-os16[-513x513]` in the current folder."""
    if args.output is None:
        name = os.path.splitext(os.path.basename(args.weights))[0]
        suffix = '-%dx%d' % args.size if args.format == 'onnx' else ''
        return '%s-os%d%s' % (name, args.output_stride, suffix)
    prefix = args.output[:-len('.onnx')] if args.format == 'onnx' and args.output.endswith('.onnx') else args.output
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        raise OptionError('--output %s: folder %s does not exist' % (args.output, folder))
    if os.path.isdir(prefix):
        raise OptionError('--output %s is a folder; give a file prefix such as %s'
                          % (args.output, os.path.join(prefix, 'deeplab')))
    return prefix


def check_input(args):
    """A random 1 x 3 x H x W image (0-255) to run the export on, or None when it is not to be run."""
    import numpy as np
    if args.no_check:
        return None
    if args.format == 'onnx':
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            print('not checked: onnxruntime is not installed (pip install onnxruntime)')
            return None
    return np.random.default_rng(0).uniform(0, 255, (1, 3) + args.size).astype(np.float32)


def export(args):
    """Load the weights, export and check; prints what was written. WeightsError, ExportError."""
    from mylib import zoo
    from mylib.data import spec_for
    from mylib.export import export_onnx, export_symbol
    from mylib.weights import fitting_crop, load_segmentation, recorded_dataset
    args.weights = args.weights or zoo.get_params_file(args.model)
    net = load_segmentation(args.weights, args.output_stride)
    args.output_stride = net.output_stride
    args.size = fitting_crop(net, args.size or spec_for(recorded_dataset(args.weights, net.num_classes),
                                                        net.num_classes).eval_crop, args.size is not None, '--size')
    args.output = output_prefix(args)
    print('loaded %s: %s' % (args.weights, net.spec.describe()))
    x = check_input(args)
    if args.format == 'onnx':
        path, difference = export_onnx(net, args.output + '.onnx', args.size, check_input=x)
        paths, size = [path], '%d x %d' % args.size
    else:
        paths, difference = export_symbol(net, args.output, check_input=x)
        size = 'H x W'
    print('wrote %s: input data N x 3 x %s float32 RGB 0-255, output logits N x %d x %s'
          % (' and '.join(paths), size, net.num_classes, size))
    if difference is not None:
        print('checked against the Gluon model on a random %d x %d image: max |difference| = %.1g of max |logit|'
              % (args.size + (difference,)))


@cli.command(PROG)
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.output is not None:
        output_prefix(args)  # refuse a bad --output before the weights are loaded
    export(args)
    return 0


if __name__ == '__main__':
    sys.exit(main())
