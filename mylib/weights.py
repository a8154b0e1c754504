"""Build the right network for a parameters file (converted, or saved by training)."""
import os

import mxnet as mx

from .models import DeepLabV3Plus


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


def read_params(path):
    """{Gluon name: NDArray} of an MXNet `.params` file; WeightsError if it is not one."""
    path = os.fspath(path)
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
                              ' '.join(str(error).split())[:300])) from None
    return net
