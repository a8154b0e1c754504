"""The ResNet of torchvision (`torchvision/models/resnet.py`), as the PyTorch DeepLabs use it.

torchvision's DeepLabV3, VoVNet-DeepLabV3's ResNet and DeepLab-v3-plus-cityscapes all build this network:
a 7x7 stride-2 stem + BN + ReLU, a 3x3 stride-2 max pool (padding 1), four layers of bottlenecks whose
stride sits on the 3x3 conv (the "v1.5" bottleneck), a 1x1 + BN projection shortcut on each layer's first
block. They differ in where dilation starts (`unit_plan`'s `first_unit_dilated`) and, in DeepLab-v3-plus-
cityscapes, in the activation (`relu_slope`: its InPlaceABN is a leaky ReLU after every BN but a block's
last and its shortcut's). The networks are data (`TORCH_RESNET`).
"""
from collections import namedtuple

from mxnet.gluon import nn

from .layers import ConvBN, batch_norm, stride_or_dilation

Layer = namedtuple('Layer', ['name', 'planes', 'blocks', 'stride'])
Layer.__doc__ = """One torchvision ResNet layer: `blocks` bottlenecks, named `<name>_<i>` from 0 (torchvision's
`<name>.<i>`); planes: the 1x1 and 3x3 convs' channels (the block outputs EXPANSION times that); stride:
the first block's (on its 3x3 conv and its shortcut)."""

EXPANSION = 4  # torchvision Bottleneck.expansion
TORCH_RESNET = {  # torchvision resnet50 / resnet101: layers [3, 4, 6, 3] / [3, 4, 23, 3]
    50: (Layer('layer1', 64, 3, 1), Layer('layer2', 128, 4, 2), Layer('layer3', 256, 6, 2), Layer('layer4', 512, 3, 2)),
    101: (Layer('layer1', 64, 3, 1), Layer('layer2', 128, 4, 2), Layer('layer3', 256, 23, 2),
          Layer('layer4', 512, 3, 2)),
}
VARIANTS = {'resnet_50': 50, 'resnet_101': 101}
STEM_CHANNELS = 64
STEM_STRIDE = 4  # conv1 and maxpool
BN_EPSILON = 1e-5  # nn.BatchNorm2d's default (and InPlaceABN's)
BN_MOMENTUM = 0.9  # nn.BatchNorm2d's momentum 0.1 is MXNet's 0.9
TAP_LAYERS = {4: 'layer1', 8: 'layer2', 16: 'layer3'}  # tap stride -> the layer whose output it is

Unit = namedtuple('Unit', ['name', 'layer', 'planes', 'stride', 'rate'])


def unit_plan(layers, output_stride=16, first_unit_dilated=False):
    """Each block's (name, layer, planes, stride, rate) at `output_stride` (8, 16 or 32).

    A layer whose stride would pass the output stride keeps stride 1 and doubles the rate instead
    (torchvision's replace_stride_with_dilation). Its first block then runs at the previous layer's rate
    (torchvision `_make_layer`: previous_dilation), or at its own with `first_unit_dilated`
    (DeepLab-v3-plus-cityscapes' `create_stage`).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError('ResNet output stride %r: use 8, 16 or 32' % (output_stride,))
    units, stride, rate = [], STEM_STRIDE, 1
    for layer in layers:
        previous_rate = rate
        stride, rate, layer_stride = stride_or_dilation(stride, rate, layer.stride, output_stride)
        for index in range(layer.blocks):
            first = index == 0
            units.append(Unit('%s_%d' % (layer.name, index), layer.name, layer.planes,
                              layer_stride if first else 1,
                              previous_rate if first and not first_unit_dilated else rate))
    return units


class Bottleneck(nn.HybridBlock):
    """torchvision's Bottleneck: conv1 1x1, conv2 3x3 (stride, rate), conv3 1x1 without activation, plus
    the input (or its `downsample` 1x1 + BN projection), then ReLU. Children: `conv1`..`conv3`, `downsample`."""

    def __init__(self, in_channels, unit, relu_slope=0.0, norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        out_channels = unit.planes * EXPANSION
        self.projection = in_channels != out_channels or unit.stride != 1
        conv = dict(bn_epsilon=BN_EPSILON, norm_layer=norm_layer, relu_slope=relu_slope)
        with self.name_scope():
            self.conv1 = ConvBN(in_channels, unit.planes, 1, **conv)
            self.conv2 = ConvBN(unit.planes, unit.planes, 3, stride=unit.stride, rate=unit.rate, **conv)
            self.conv3 = ConvBN(unit.planes, out_channels, 1, relu=False, **conv)
            self.downsample = (ConvBN(in_channels, out_channels, 1, stride=unit.stride, relu=False, **conv)
                               if self.projection else None)

    def hybrid_forward(self, F, x):
        shortcut = self.downsample(x) if self.projection else x
        return F.Activation(self.conv3(self.conv2(self.conv1(x))) + shortcut, act_type='relu')


class TorchResNet(nn.HybridBlock):
    """torchvision's ResNet-50/101 features, as the PyTorch DeepLabs build them.

    Input: NCHW float32 normalised as torchvision's ImageNet models ((RGB / 255 - mean) / std), any size.
    Output: a tuple, the decoder taps of `taps` (strides among 4, 8, 16: the output of layer1, 2, 3), then
    the features at `output_stride`. relu_slope: the stem's and the blocks' inner activations (0: ReLU).
    Attributes: `channels` (2048), `tap_channels`. Children: `stem`, then `layer1_0`, ..., `layer4_2`.
    """

    def __init__(self, depth=101, output_stride=16, taps=(), first_unit_dilated=False, relu_slope=0.0,
                 norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        if depth not in TORCH_RESNET:
            raise ValueError('ResNet depth %r: use one of %s' % (depth, sorted(TORCH_RESNET)))
        unknown = [stride for stride in taps if stride not in TAP_LAYERS]
        if unknown:
            raise ValueError('ResNet has no decoder tap at stride %s (it has 4, 8, 16)' % unknown)
        self.taps, self.relu_slope = tuple(taps), relu_slope
        tapped = {TAP_LAYERS[stride] for stride in taps}
        self.units, self.tap_channels = [], {}
        with self.name_scope():
            self.stem = ConvBN(3, STEM_CHANNELS, 7, stride=2, bn_epsilon=BN_EPSILON, norm_layer=norm_layer,
                               relu_slope=relu_slope)
            channels = STEM_CHANNELS
            plan = unit_plan(TORCH_RESNET[depth], output_stride, first_unit_dilated)
            for position, unit in enumerate(plan):
                block = Bottleneck(channels, unit, relu_slope, norm_layer=norm_layer)
                self.register_child(block, unit.name)
                last_of_layer = position + 1 == len(plan) or plan[position + 1].layer != unit.layer
                self.units.append((block, unit.layer if last_of_layer and unit.layer in tapped else None))
                channels = unit.planes * EXPANSION
        for stride, layer in TAP_LAYERS.items():
            self.tap_channels[stride] = next(layer_.planes for layer_ in TORCH_RESNET[depth]
                                             if layer_.name == layer) * EXPANSION
        self.channels = channels

    def hybrid_forward(self, F, x):
        x = self.stem(x)  # torchvision: maxpool 3x3, stride 2, padding 1 (the padding never wins a max)
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='max')
        outputs = {}
        for block, layer in self.units:
            x = block(x)
            if layer is not None:
                outputs[layer] = x
        return tuple(outputs[TAP_LAYERS[stride]] for stride in self.taps) + (x,)
