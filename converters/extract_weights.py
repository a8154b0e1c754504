#!/usr/bin/env python
"""Convert an official TF DeepLab checkpoint (any family of the model zoo) or ImageNet backbone to Gluon.

    python converters/extract_weights.py deeplabv3_pascal_train_aug_2018_01_04.tar.gz
    python converters/extract_weights.py path/to/model.ckpt --output voc.params
    python converters/extract_weights.py model.ckpt --save-h5 voc.h5 --h5-only   # needs TensorFlow
    python converters/extract_weights.py voc.h5 --output voc.params               # needs only mxnet
    python converters/extract_weights.py --model xception65_coco_voc_trainaug     # download, convert, cache
    python converters/extract_weights.py --list-models

Stage 1 reads the checkpoint with TensorFlow into a .h5 of TF-named arrays; stage 2 finds the family
and variant from the tensors' names and shapes (Xception-41/65/71, DPC, ResNet-v1-beta, MobileNet-v2/v3),
maps them onto the parameters of that network and writes FILE.params plus FILE.json (the model
specification, classes, source and its sha256, tensor counts); `mylib.load_model(FILE.params)`
builds it. `--model NAME` does it for an
official release by name (mylib.zoo): downloaded once and converted once into $MXNET_HOME/models/deeplab.
"""
import os
import sys

if __package__ in (None, ''):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mylib import cli  # noqa: E402
from mylib.errors import OptionError  # noqa: E402

PROG = 'extract_weights.py'


def convert_release(name, output, progress=True, log=print):
    """Write the Gluon parameters of the official release `name` to `output` (downloaded, converted and
    cached by mylib.zoo on first use); return their metadata."""
    from mylib import zoo  # (MXNet and the converter load once the options are read)
    metadata = zoo.copy_params(name, output, progress=progress, log=log)
    log('wrote %s: %s, %s (cached in %s)'
        % (output, name, metadata.get('description', metadata['kind']), zoo.model_root()))
    log('load it with: net = mylib.load_model(%r)' % output)
    return metadata


def build_parser():
    parser = cli.ArgumentParser(
        prog=PROG, description='Convert an official TF DeepLab checkpoint (Xception-41/65/71, DPC, ResNet-v1-beta, '
                    'MobileNet-v2/v3) or ImageNet backbone into Gluon parameters for mylib.load_model.',
        epilog=__doc__.split('\n\n')[1])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('checkpoint', metavar='CKPT', nargs='?',
                        help='checkpoint prefix (.../model.ckpt), a folder holding one, an official release '
                             'archive (.tar.gz), or a .h5 written by --save-h5')
    source.add_argument('--model', metavar='NAME',
                        help='an official release by name instead of CKPT (see --list-models): downloaded once '
                             'and converted once, both cached in $MXNET_HOME/models/deeplab')
    source.add_argument('--list-models', action='store_true',
                        help='list the official releases that --model knows, with their published results')
    parser.add_argument('-o', '--output', metavar='FILE.params',
                        help='where to write the Gluon parameters (default: <CKPT name>.params, or '
                             'NAME.params with --model, here); FILE.json is written beside it')
    parser.add_argument('--save-h5', metavar='FILE.h5',
                        help='also keep the TF-named arrays of stage 1 in FILE.h5 (converts later without TF)')
    parser.add_argument('--h5-only', action='store_true',
                        help='stop after stage 1 (needs --save-h5)')
    parser.add_argument('--optimizer-state', action='store_true',
                        help="also keep the checkpoint's optimizer state (its tf.train.MomentumOptimizer slots), "
                             'written as FILE.momentum beside FILE.params: train.py --init FILE.params starts '
                             'from it, as the official fine-tuning does')
    parser.add_argument('--flag', action='append', default=[], metavar='NAME=VALUE', dest='flags',
                        help='an official model flag the checkpoint does not record, as the official scripts take '
                             'it (repeatable): output_stride=8, atrous_rates=12,24,36, multi_grid=1,2,4, '
                             'image_pooling_crop_size=769,769, decoder_output_stride=4, '
                             'dense_prediction_cell_json=FILE ... (default: the official release flags of the '
                             "checkpoint's family, listed by the conversion)")
    parser.add_argument('-q', '--quiet', action='store_true', help='no progress bars')
    return parser


def list_models(log=print):
    """Print the official releases that --model knows: name, dataset, classes, published results."""
    from mylib import zoo
    log(zoo.format_release_list())


@cli.command(PROG)
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        list_models()
        return 0
    if args.h5_only and not args.save_h5:
        raise OptionError('--h5-only needs --save-h5 FILE.h5')
    if args.model and args.optimizer_state:
        raise OptionError('--optimizer-state takes a CKPT: the zoo caches the weights only')
    if args.model and args.save_h5:
        raise OptionError('--save-h5 and --h5-only take a CKPT, not --model')
    if args.model and args.flags:
        raise OptionError('--flag takes a CKPT: a release by --model has its official flags')
    from mylib.models.spec import parse_flags
    try:
        parse_flags(args.flags)
    except ValueError as error:
        raise OptionError('--flag: %s' % error) from None
    from converters.convert import convert, default_output
    default_name = args.model + '.params' if args.model else default_output(args.checkpoint)
    if args.output and os.path.isdir(args.output):
        raise OptionError('--output %s is a folder; give a file name such as %s'
                          % (args.output, os.path.join(args.output, default_name)))
    progress = not args.quiet and sys.stderr.isatty()
    if args.model:
        convert_release(args.model, args.output or default_name, progress)
    else:
        convert(args.checkpoint, args.output, args.save_h5, args.h5_only, progress=progress,
                optimizer_state=args.optimizer_state, flags=args.flags)
    return 0


if __name__ == '__main__':
    sys.exit(main())
