"""Every backbone family behind one call: `build_backbone(spec, taps, norm_layer)`.

A backbone takes NCHW float32 normalised as its family's original (`spec.input_normalization`: [-1, 1]
for the official TF families, torchvision's ImageNet normalisation for the PyTorch ones) and returns a
tuple: its decoder skips at the strides of `taps` (official DECODER_END_POINTS), in that order, then its
final features. It has `channels` (final) and `tap_channels` ({stride: channels}). Heads never see more.

Each family's batch norm has its official decay (the official feature extractor's arg scopes:
Xception 0.9997, ResNet-v1-beta 0.95, MobileNet 0.997; PyTorch's BatchNorm2d default 0.1, MXNet's 0.9,
for the PyTorch ones) unless `bn_momentum` sets one for every layer; `norm_layer` chooses the layer
(BatchNorm, SyncBatchNorm).
"""
import functools

from . import densenet, mobilenet, resnet, torch_mobilenet, torch_resnet, vovnet
from .densenet import DenseNet
from .layers import BN_MOMENTUM, batch_norm
from .mobilenet import MobileNetBackbone, MobileNetClassifier
from .mobilenet_spec import CLASSIFIER_VARIANTS
from .resnet import ResNetV1Beta, ResNetV1BetaClassifier
from .torch_mobilenet import TorchMobileNetV3
from .torch_resnet import TorchResNet
from .vovnet import VoVNet
from .xception import XceptionBackbone, XceptionClassifier

BACKBONE_BN_DECAY = {  # the official decay of each backbone's arg scope, where each backbone states it
    'xception': BN_MOMENTUM, 'resnet': resnet.BN_MOMENTUM, 'mobilenet': mobilenet.BN_DECAY,
    'vovnet': vovnet.BN_MOMENTUM, 'torch_resnet': torch_resnet.BN_MOMENTUM,
    'torch_mobilenet': torch_mobilenet.BN_MOMENTUM, 'densenet': densenet.BN_MOMENTUM,
}


def _with_decay(spec, norm_layer, bn_momentum=None):
    return functools.partial(norm_layer, momentum=bn_momentum or BACKBONE_BN_DECAY[spec.family])


def _xception(spec, taps, norm_layer):
    return XceptionBackbone(spec.output_stride, spec.model_variant, taps, norm_layer=norm_layer)


def _resnet(spec, taps, norm_layer):
    return ResNetV1Beta(resnet.VARIANTS[spec.model_variant], spec.output_stride, spec.multi_grid, taps,
                        norm_layer=norm_layer)


def _mobilenet(spec, taps, norm_layer):
    return MobileNetBackbone(spec.model_variant, spec.depth_multiplier, spec.output_stride, taps,
                             divisible_by=spec.divisible_by, norm_layer=norm_layer)


def _vovnet(spec, taps, norm_layer):
    return VoVNet(vovnet.VARIANTS[spec.model_variant], spec.output_stride, taps, norm_layer=norm_layer)


def _torch_resnet(spec, taps, norm_layer):
    return TorchResNet(torch_resnet.VARIANTS[spec.model_variant], spec.output_stride, taps,
                       first_unit_dilated=spec.first_unit_dilated, relu_slope=spec.relu_slope, norm_layer=norm_layer)


def _torch_mobilenet(spec, taps, norm_layer):
    return TorchMobileNetV3(spec.model_variant, spec.output_stride, taps, norm_layer=norm_layer)


def _densenet(spec, taps, norm_layer):
    return DenseNet(densenet.VARIANTS[spec.model_variant], spec.output_stride, taps, norm_layer=norm_layer)


BUILDERS = {'xception': _xception, 'resnet': _resnet, 'mobilenet': _mobilenet, 'vovnet': _vovnet,
            'torch_resnet': _torch_resnet, 'torch_mobilenet': _torch_mobilenet, 'densenet': _densenet}


def build_backbone(spec, taps=(), norm_layer=batch_norm, bn_momentum=None):
    """The backbone of `spec` (a ModelSpec) at its output stride, returning the skips of `taps`.
    bn_momentum: MXNet's momentum of every batch norm (None: the family's official decay)."""
    return BUILDERS[spec.family](spec, tuple(taps), _with_decay(spec, norm_layer, bn_momentum))


def _xception_classifier(spec, norm_layer):
    return XceptionClassifier(spec.num_classes, spec.model_variant, norm_layer=norm_layer)


def _resnet_classifier(spec, norm_layer):
    return ResNetV1BetaClassifier(resnet.VARIANTS[spec.model_variant], spec.num_classes, norm_layer=norm_layer)


def _mobilenet_classifier(spec, norm_layer):
    if spec.model_variant not in CLASSIFIER_VARIANTS:
        raise ValueError('%s has no ImageNet classifier in the official releases' % spec.model_variant)
    return MobileNetClassifier(spec.num_classes, spec.depth_multiplier, spec.model_variant, norm_layer=norm_layer,
                               finegrain=spec.finegrain_classification_mode)


CLASSIFIERS = {'xception': _xception_classifier, 'resnet': _resnet_classifier, 'mobilenet': _mobilenet_classifier}


def build_classifier(spec, norm_layer=batch_norm):
    """The ImageNet classifier of `spec`'s family (RGB 0-255 NCHW in, N x num_classes logits out)."""
    if spec.family not in CLASSIFIERS:
        raise ValueError('%s: no ImageNet classifier is built for this family' % spec.model_variant)
    return CLASSIFIERS[spec.family](spec, _with_decay(spec, norm_layer))
