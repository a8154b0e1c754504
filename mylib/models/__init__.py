"""The networks: arrays in, arrays out. No TensorFlow names, no datasets.

`spec` (what a network is, pure Python) imports without MXNet; the networks are imported when first
asked for (PEP 562 `__getattr__`), so that option parsing can read the model families at once.
"""
import importlib

_HOMES = {
    'DEFAULT_RATES': 'deeplab', 'DecoderLogits': 'deeplab', 'DeepLab': 'deeplab', 'DeepLabV3Plus': 'deeplab',
    'ASPP': 'heads', 'Decoder': 'heads', 'DensePredictionCell': 'heads', 'SumMergeDecoder': 'heads',
    'ModelSpec': 'spec', 'release_spec': 'spec',
    'XCEPTION_41': 'xception', 'XCEPTION_65': 'xception', 'XCEPTION_71': 'xception', 'BlockSpec': 'xception',
    'Xception65': 'xception', 'XceptionBackbone': 'xception', 'XceptionClassifier': 'xception',
    'unit_plan': 'xception',
}
__all__ = sorted(_HOMES) + ['build_network']


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError('module %r has no attribute %r' % (__name__, name))
    return getattr(importlib.import_module('.' + _HOMES[name], __name__), name)


def build_network(spec, norm_layer=None, dropout_keep=None):
    """The network of a ModelSpec: `DeepLab(spec)` for segmentation, the family's ImageNet classifier for
    classification. norm_layer / dropout_keep: as `DeepLab` takes them (None: the defaults)."""
    from .backbones import build_classifier
    from .deeplab import DeepLab
    options = {name: value for name, value in (('norm_layer', norm_layer), ('dropout_keep', dropout_keep))
               if value is not None}
    if spec.task == 'classification':
        options.pop('dropout_keep', None)
        net = build_classifier(spec, **options)
        net.spec = spec  # as DeepLab has it: what the network is
        return net
    return DeepLab(spec, **options)
