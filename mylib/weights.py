"""Build the right network for a parameters file (converted, or saved by training)."""
import json
import os

import mxnet as mx

from .data.specs import DATASETS
from .errors import WeightsError, library_reason
from .models import DeepLabV3Plus, build_network
from .models.spec import ModelSpec, xception65_spec


def metadata_path(params_path):
    """The JSON written beside a `.params` file (by the converter, the zoo or training): `a.params` -> `a.json`."""
    root, extension = os.path.splitext(os.fspath(params_path))
    return (root if extension == '.params' else os.fspath(params_path)) + '.json'


def momentum_path(params_path):
    """The optimizer state written beside converted parameters by `--optimizer-state`: `a.params` -> `a.momentum`."""
    root, extension = os.path.splitext(os.fspath(params_path))
    return (root if extension == '.params' else os.fspath(params_path)) + '.momentum'


def read_metadata(params_path):
    """The JSON beside a `.params` file as a dict ({} when there is none or it cannot be read).

    Written by the converter (kind, classes, source), the zoo (also the release's dataset) and
    training (also its dataset); `mylib.data.spec_for(metadata.get('dataset'), num_classes)` gives
    the class names and colours of the weights' dataset.
    """
    try:
        with open(metadata_path(params_path)) as stream:
            metadata = json.load(stream)
    except (OSError, ValueError):
        return {}
    return metadata if isinstance(metadata, dict) else {}


def recorded_dataset(params_path, num_classes, log=print):
    """The dataset that the JSON beside `params_path` records for the weights ('voc', 'cityscapes',
    'ade20k' or 'folder'), or None if it records none that fits `num_classes` (then `log` says why)."""
    dataset = read_metadata(params_path).get('dataset')
    if dataset is None:
        return None
    if dataset == 'folder' or (isinstance(dataset, str) and dataset in DATASETS
                               and DATASETS[dataset].num_classes == num_classes):
        return dataset
    log('%s: its dataset %r does not fit its %d classes; ignored' % (metadata_path(params_path), dataset,
                                                                   num_classes))
    return None


def read_params(path):
    """{Gluon name: NDArray} of an MXNet `.params` file; WeightsError if it is not one."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise WeightsError('%s is a folder, not a weights file (.params)' % path)
    if not os.path.isfile(path):
        raise WeightsError('%s: no such weights file' % path)
    try:
        params = mx.nd.load(path)
    except mx.base.MXNetError:
        raise WeightsError('%s: not an MXNet parameters file (damaged, or another format)' % path) from None
    if not isinstance(params, dict):
        raise WeightsError('%s: holds unnamed arrays, not Gluon parameters' % path)
    return {name.split(':', 1)[-1]: value for name, value in params.items()}


def describe_params(params, path='weights'):
    """(num_classes, decoder) of DeepLabV3Plus parameters; WeightsError for anything else."""
    if 'logits.weight' not in params or not any(name.startswith('aspp.') for name in params):
        hint = (' (it is the ImageNet classifier: use it with --init to train DeepLab)'
                if any(name.startswith('backbone.') for name in params) else '')
        raise WeightsError('%s: not DeepLab v3+ parameters: no logits.weight / aspp.*%s' % (path, hint))
    return int(params['logits.weight'].shape[0]), any(name.startswith('decoder.') for name in params)


def load_deeplab(path, output_stride=16, ctx=None, atrous_rates=None):
    """DeepLabV3Plus with the weights of `path`, its classes and decoder read from the file itself.

    ctx: an mx.Context or a list of them (default CPU). Raises WeightsError naming the file.
    """
    params = read_params(path)
    num_classes, decoder = describe_params(params, path)
    net = DeepLabV3Plus(num_classes=num_classes, output_stride=output_stride, atrous_rates=atrous_rates,
                        decoder=decoder)
    try:
        net.load_parameters(os.fspath(path), ctx=ctx or mx.cpu())
    except (AssertionError, mx.base.MXNetError) as error:
        raise WeightsError('%s: does not fit DeepLabV3Plus(num_classes=%d%s): %s'
                           % (path, num_classes, '' if decoder else ', decoder=False',
                              library_reason(error, 300))) from None
    return net


def spec_of(path, params=None):
    """The ModelSpec of a parameters file: from the JSON beside it (written by the converter, the zoo and
    training), else, for files of earlier versions, the Xception-65 DeepLab its parameters describe."""
    metadata = read_metadata(path)
    if 'model' in metadata:
        return ModelSpec.from_json(metadata['model'], metadata_path(path))
    params = read_params(path) if params is None else params
    if 'logits.weight' in params and not any(name.startswith('aspp.') for name in params):
        return ModelSpec('xception_65', int(params['logits.weight'].shape[0]), task='classification', output_stride=32)
    num_classes, decoder = describe_params(params, path)
    return xception65_spec(num_classes, decoder=decoder)


# Converted PyTorch projects whose evaluation runs each image at its own size (no padding to a crop):
# DeepLab-v3-plus-cityscapes' evaluate.py and torchvision's reference scripts. VoVNet-DeepLabV3 pads to 513.
UNPADDED_PROJECTS = ('cityscapes_deeplabv3plus', 'torchvision')


def runs_unpadded(path):
    """True when the original of the network in `path` runs each image at its own size (the converter's
    JSON names the project); the scripts then default to `inference.OWN_SIZE` instead of a padded crop."""
    return read_metadata(path).get('project') in UNPADDED_PROJECTS


def fitting_crop(net, crop_size, given, option='--crop-size'):
    """The crop a segmentation network runs at: `crop_size`, grown to `net.minimum_input` when it was a
    default (`given` False); OptionError naming `option` when a given crop is smaller than that."""
    from .errors import OptionError
    minimum = net.minimum_input
    if crop_size[0] >= minimum[0] and crop_size[1] >= minimum[1]:
        return tuple(crop_size)
    if given:
        raise OptionError('%s %dx%d is smaller than the %dx%d that %s takes (its image pooling window is fixed)'
                          % ((option,) + tuple(crop_size) + tuple(minimum) + (net.spec.describe(),)))
    return max(crop_size[0], minimum[0]), max(crop_size[1], minimum[1])


def load_segmentation(path, output_stride=None, ctx=None):
    """`load_model` for what segments images: a WeightsError naming the file if it holds a classifier."""
    spec = spec_of(path)
    if spec.task != 'segmentation':
        raise WeightsError('%s holds %s, not a segmentation network: use it with train.py --init to train DeepLab'
                           % (path, spec.describe()))
    return load_model(path, output_stride, ctx)


def load_model(path, output_stride=None, ctx=None):
    """The network that a converted (or trained) parameters file holds, with its weights.

    A segmentation network (NCHW float32 RGB 0-255 in, logits at the input's size out) or an ImageNet
    classifier (N x classes logits), as the JSON beside the file specifies (`spec_of`).
    output_stride: run a segmentation network at another output stride than its release's (8, 16, 32;
    the atrous rates follow). ctx: an mx.Context or a list of them (default CPU).
    Raises WeightsError naming the file.
    """
    spec = spec_of(path)
    if output_stride is not None and spec.task == 'segmentation':
        try:
            spec = spec.with_output_stride(output_stride)
            net = build_network(spec)
        except ValueError as error:
            raise WeightsError('%s at output stride %s: %s' % (path, output_stride, error)) from None
    else:
        net = build_network(spec)
    try:
        net.load_parameters(os.fspath(path), ctx=ctx or mx.cpu())
    except (AssertionError, mx.base.MXNetError) as error:
        raise WeightsError('%s: does not fit %s: %s' % (path, spec.describe(), library_reason(error, 300))) from None
    return net
