"""ResNet-v1-beta, the ResNets of DeepLab (`research/deeplab/core/resnet_v1_beta.py`), as Gluon blocks.

"Beta": ResNet-v1 with its 7x7 root convolution replaced by three 3x3 convolutions, fed images
normalised to [-1, 1]. The networks are declared as data (`RESNET_V1_BETA`, the decoder taps in
`DECODER_END_POINTS`); `unit_plan` turns an output stride and a multi-grid into each unit's stride and
atrous rate in one place, as slim's `stack_blocks_dense` does.
"""
import math
from collections import namedtuple
from functools import partial

import mxnet as mx
from mxnet.gluon import nn

from .init import TruncatedNormal
from .layers import ConvBN, batch_norm, biased_conv, normalize_pixels
from .tf_same import same_max_pool

ResNetBlock = namedtuple('ResNetBlock', ['name', 'base_depth', 'units', 'stride'])
ResNetBlock.__doc__ = """One block of ResNet-v1-beta: `units` bottleneck units.

name: the Gluon name of the block; its units are `<name>_unit<i>`, from 1.
base_depth: the channels of the unit's 1x1 and 3x3 convolutions; the unit outputs EXPANSION times that.
stride: the stride of the block's LAST unit (on its 3x3 conv and its shortcut); the others have 1.
"""

EXPANSION = 4  # official resnet_v1_beta_block: 'depth': base_depth * 4

RESNET_V1_BETA = {
    # official resnet_v1_50_beta / resnet_v1_101_beta: blocks 1-3 are resnet_v1_beta_block(scope, base_depth,
    # num_units, stride); block4 has one unit per multi-grid rate (3), depth 2048, bottleneck 512, stride 1
    50: (ResNetBlock('block1', 64, 3, 2), ResNetBlock('block2', 128, 4, 2),
         ResNetBlock('block3', 256, 6, 2), ResNetBlock('block4', 512, 3, 1)),
    101: (ResNetBlock('block1', 64, 3, 2), ResNetBlock('block2', 128, 4, 2),
          ResNetBlock('block3', 256, 23, 2), ResNetBlock('block4', 512, 3, 1)),
}
VARIANTS = {'resnet_v1_50_beta': 50, 'resnet_v1_101_beta': 101}  # official model_variant -> depth

# The decoder taps {nominal stride: (block, unit)}: the unit's conv3 after its BN, before the shortcut sum
# and the ReLU (slim collects each conv2d's output under its scope; conv3 has activation_fn=None).
# Official feature_extractor.networks_to_feature_maps[...][DECODER_END_POINTS], '<block>/unit_<i>/bottleneck_v1/conv3'.
DECODER_END_POINTS = {
    50: {4: ('block1', 2), 8: ('block2', 3), 16: ('block3', 5)},  # resnet_v1_50_beta
    101: {4: ('block1', 2), 8: ('block2', 3), 16: ('block3', 22)},  # resnet_v1_101_beta
}

# official root_block_fn_for_beta_variant: conv2d_same(net, depth, 3, stride) x3, as (name, depth, stride)
ROOT_CONVS = (('conv1_1', 64, 2), ('conv1_2', 64, 1), ('conv1_3', 128, 1))
ROOT_POOL = 3  # official resnet_v1_beta: slim.max_pool2d(net, 3, stride=2, padding='SAME', scope='pool1')
ROOT_STRIDE = 4  # conv1_1 and pool1 (official resnet_v1_beta: output_stride //= 4 before stack_blocks_dense)
DEFAULT_MULTI_GRID = (1, 1, 1)  # official _DEFAULT_MULTI_GRID

# official feature_extractor.extract_features: resnet_arg_scope(batch_norm_decay=0.95, batch_norm_epsilon=1e-5,
# batch_norm_scale=True); MXNet's momentum is TF's decay
BN_EPSILON = 1e-5
BN_MOMENTUM = 0.95
RESNET_BATCH_NORM = partial(batch_norm, momentum=BN_MOMENTUM)


@mx.init.register  # exported symbols name it in their variables' __init__ attribute
class VarianceScaling(TruncatedNormal):
    """slim's `variance_scaling_initializer()`: truncated normal, stddev sqrt(1.3 * factor / fan_in).

    Defaults factor=2.0, mode FAN_IN, uniform=False; 1.3 makes the truncated draw's stddev about
    sqrt(factor / fan_in). fan_in of an MXNet (out, in, kh, kw) weight: in * kh * kw.
    """

    def __init__(self, factor=2.0):
        mx.init.Initializer.__init__(self, factor=factor)
        self.factor = factor
        self.stddev = None

    def _init_weight(self, name, array):
        self.stddev = math.sqrt(1.3 * self.factor / (array.size // array.shape[0]))
        super()._init_weight(name, array)


WEIGHT_INIT = VarianceScaling()  # official resnet_arg_scope: weights_initializer=slim.variance_scaling_initializer()

Unit = namedtuple('Unit', ['name', 'block', 'index', 'depth', 'bottleneck', 'stride', 'rate'])
Unit.__doc__ = """One bottleneck unit as built: Gluon `name` (`block3_unit22`), its `block` and 1-based `index`,
output `depth`, `bottleneck` channels, the `stride` and atrous `rate` of its 3x3 conv."""


def unit_plan(blocks, output_stride, multi_grid=None):
    """[Unit] for every unit, reaching `output_stride` (4, 8, 16 or 32) as the official code does.

    Strides apply until the output stride is reached (the root gives 4); from then on each unit runs at
    stride 1 and the atrous rate grows by the stride it skipped (slim's `stack_blocks_dense`). The last
    block's units multiply their rate by `multi_grid` (official `unit_rate`; default (1, 1, 1)), at any
    output stride. OS16: block3's last unit loses its stride, block4 runs at 2 x multi_grid.
    OS8: block2's last unit too, block3 at rate 2, block4 at 4 x multi_grid. OS32: every stride.
    """
    multi_grid = DEFAULT_MULTI_GRID if multi_grid is None else tuple(multi_grid)
    if len(multi_grid) != blocks[-1].units:
        raise ValueError('multi_grid needs %d rates, one per unit of %s, not %r'
                         % (blocks[-1].units, blocks[-1].name, multi_grid))
    current_stride, rate, plan = ROOT_STRIDE, 1, []
    for block in blocks:
        unit_rates = multi_grid if block is blocks[-1] else (1,) * block.units
        for index, unit_rate in enumerate(unit_rates, 1):
            unit = Unit('%s_unit%d' % (block.name, index), block.name, index, EXPANSION * block.base_depth,
                        block.base_depth, block.stride if index == block.units else 1, 1)
            if current_stride == output_stride:
                plan.append(unit._replace(stride=1, rate=rate * unit_rate))
                rate *= unit.stride
            else:
                plan.append(unit._replace(rate=unit_rate))
                current_stride *= unit.stride
    if current_stride != output_stride:
        raise ValueError('output_stride %r cannot be reached by ResNet-v1-beta: use 4, 8, 16 or 32' % (output_stride,))
    return plan


def subsample(F, x, factor):
    """slim's `subsample` (NCHW): `x` itself, or a 1x1 max pool with stride `factor`, i.e. rows and columns
    0, factor, 2 * factor, ... ('SAME' pads nothing for a 1x1 window, at either parity)."""
    if factor == 1:
        return x
    return F.Pooling(x, kernel=(1, 1), stride=(factor, factor), pool_type='max')


class Bottleneck(nn.HybridBlock):
    """The official `bottleneck` (scope bottleneck_v1): 1x1, 3x3 (stride, rate), 1x1 without ReLU, each with
    BN; plus the shortcut, sum, ReLU. NCHW in, NCHW out.

    Shortcut: a 1x1 conv + BN (strided like the unit, no ReLU) when the depth changes, else the input
    (subsampled when strided). The strided 3x3 conv is slim's `conv2d_same`: fixed padding 1 each side, then
    VALID, which is `ConvBN`'s symmetric padding. With `tap` (its nominal stride) it returns (output, conv3).
    """

    def __init__(self, in_channels, unit, tap=None, norm_layer=RESNET_BATCH_NORM, **kwargs):
        super().__init__(**kwargs)
        self.stride, self.tap = unit.stride, tap
        self.projection = in_channels != unit.depth
        conv = partial(ConvBN, bn_epsilon=BN_EPSILON, norm_layer=norm_layer, weight_init=WEIGHT_INIT)
        with self.name_scope():
            if self.projection:
                self.shortcut = conv(in_channels, unit.depth, 1, stride=unit.stride, relu=False)
            self.conv1 = conv(in_channels, unit.bottleneck, 1)
            self.conv2 = conv(unit.bottleneck, unit.bottleneck, 3, stride=unit.stride, rate=unit.rate)
            self.conv3 = conv(unit.bottleneck, unit.depth, 1, relu=False)

    def hybrid_forward(self, F, x):
        shortcut = self.shortcut(x) if self.projection else subsample(F, x, self.stride)
        residual = self.conv3(self.conv2(self.conv1(x)))
        output = F.Activation(shortcut + residual, act_type='relu')
        return (output, residual) if self.tap else output


class ResNetV1Beta(nn.HybridBlock):
    """ResNet-v1-beta features, as the official DeepLab feature extractor of resnet_v1_{50,101}_beta.

    Input: NCHW float32 normalised to [-1, 1] (x * 2 / 255 - 1, `normalize_pixels`), any height and width.
    Output: a tuple (a list from a hybridized call), the decoder taps of `taps` (nominal strides among 4, 8,
    16; in that order; each at that stride, or at `output_stride` if smaller), then the features at
    `output_stride` (4, 8, 16 or 32).
    A tap is the official DECODER_END_POINTS tensor (see `DECODER_END_POINTS`).
    depth: 50 or 101. multi_grid: block4's three rate multipliers (default (1, 1, 1)).
    norm_layer: a batch-norm factory (see `layers.batch_norm`); the default has the official decay 0.95.
    Attributes: `channels` (2048), `tap_channels` {tap stride: channels}. Children: `conv1_1`, `conv1_2`,
    `conv1_3`, then the units `block1_unit1`, ..., `block4_unit3`, each with `conv1`, `conv2`, `conv3`
    (and `shortcut` in the first unit of each block).
    """

    def __init__(self, depth=101, output_stride=16, multi_grid=None, taps=(), norm_layer=RESNET_BATCH_NORM,
                 **kwargs):
        super().__init__(**kwargs)
        if depth not in RESNET_V1_BETA:
            raise ValueError('ResNet-v1-beta depth %r: use one of %s' % (depth, sorted(RESNET_V1_BETA)))
        end_points = DECODER_END_POINTS[depth]
        unknown = [stride for stride in taps if stride not in end_points]
        if unknown:
            raise ValueError('ResNet-v1-%d-beta has no decoder tap at stride %s (it has %s)'
                             % (depth, unknown, sorted(end_points)))
        tapped = {'%s_unit%d' % end_points[stride]: stride for stride in taps}
        self.depth, self.output_stride, self.taps = depth, output_stride, tuple(taps)
        self.root, self.units, self.tap_channels = [], [], {}
        with self.name_scope():
            channels = 3
            for name, root_depth, stride in ROOT_CONVS:
                conv = ConvBN(channels, root_depth, 3, stride=stride, bn_epsilon=BN_EPSILON, norm_layer=norm_layer,
                              weight_init=WEIGHT_INIT)
                self.register_child(conv, name)
                self.root.append(conv)
                channels = root_depth
            for unit in unit_plan(RESNET_V1_BETA[depth], output_stride, multi_grid):
                block = Bottleneck(channels, unit, tapped.get(unit.name), norm_layer=norm_layer)
                self.register_child(block, unit.name)
                self.units.append(block)
                if block.tap:
                    self.tap_channels[block.tap] = unit.depth
                channels = unit.depth
        self.channels = channels

    def hybrid_forward(self, F, x):
        for conv in self.root:
            x = conv(x)
        x, taps = same_max_pool(F, x, ROOT_POOL), {}
        for unit in self.units:
            x = unit(x)
            if unit.tap:
                x, taps[unit.tap] = x
        return tuple(taps[stride] for stride in self.taps) + (x,)


class ResNetV1BetaClassifier(nn.HybridBlock):
    """The ImageNet classifier of the official resnet_v1_50_beta / resnet_v1_101_beta checkpoints.

    Input: NCHW float32 RGB pixel values in [0, 255] (normalised inside). Output: N x num_classes logits.
    The official resnet_v1_beta with num_classes and global_pool: the backbone at its nominal stride 32
    (multi-grid (1, 1, 1)), global mean ('pool5'), then 'logits', a 1x1 conv with bias and neither batch
    norm nor activation; no dropout. Its `backbone` initialises DeepLab's.
    """

    def __init__(self, depth=101, num_classes=1000, norm_layer=RESNET_BATCH_NORM, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.backbone = ResNetV1Beta(depth, output_stride=32, norm_layer=norm_layer)
            self.logits = biased_conv(self.backbone.channels, num_classes, weight_init=WEIGHT_INIT)

    def hybrid_forward(self, F, x):
        features = self.backbone(normalize_pixels(F, x))[-1]
        pooled = F.mean(features, axis=(2, 3), keepdims=True)
        return F.flatten(self.logits(pooled))
