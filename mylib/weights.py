"""Build the right network for a parameters file (converted, or saved by training)."""
import json
import os

import mxnet as mx

from .data.specs import DATASETS
from .errors import WeightsError, library_reason
from .models import DeepLabV3Plus


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
