"""Xception-41, -65 and -71, the aligned Xception of DeepLab (`research/deeplab/core/xception.py`).

The networks are declared as data (`XCEPTION_41`, `XCEPTION_65`, `XCEPTION_71`, and the decoder taps of
each in `VARIANTS`); `unit_plan` turns a requested output stride into each unit's stride and atrous
rate in one place, as the official `stack_blocks_dense` does.
"""
from collections import namedtuple

from mxnet.gluon import nn

from .init import TruncatedNormal
from .layers import BACKBONE_BN_EPSILON, ConvBN, SeparableConv, batch_norm, biased_conv, normalize_pixels

BlockSpec = namedtuple('BlockSpec', ['name', 'units', 'depths', 'stride', 'shortcut', 'relu_inside'])
BlockSpec.__doc__ = """One block of Xception: `units` identical units of three separable convolutions.

name: the Gluon name of the block; its units are `<name>_unit<i>`, from 1.
depths: output channels of the three separable convolutions.
stride: the stride of the block's last unit (on its third separable conv and its shortcut).
shortcut: 'conv' (1x1 conv + BN, strided like the unit), 'sum' (identity) or 'none'.
relu_inside: False -> ReLU on the input of each separable conv, none inside it;
             True  -> ReLU after each of its batch norms and none before.
"""

# The exit flow of every variant (official xception_41/65/71).
EXIT_FLOW = (
    BlockSpec('exit_block1', 1, (728, 1024, 1024), 2, 'conv', False),
    BlockSpec('exit_block2', 1, (1536, 1536, 2048), 1, 'none', True),
)

XCEPTION_41 = (
    # entry flow (after the stem: conv1_1 3x3/2 to 32, conv1_2 3x3 to 64)
    BlockSpec('entry_block1', 1, (128, 128, 128), 2, 'conv', False),
    BlockSpec('entry_block2', 1, (256, 256, 256), 2, 'conv', False),
    BlockSpec('entry_block3', 1, (728, 728, 728), 2, 'conv', False),
    # middle flow
    BlockSpec('middle_block1', 8, (728, 728, 728), 1, 'sum', False),
) + EXIT_FLOW

XCEPTION_65 = (
    # entry flow
    BlockSpec('entry_block1', 1, (128, 128, 128), 2, 'conv', False),
    BlockSpec('entry_block2', 1, (256, 256, 256), 2, 'conv', False),
    BlockSpec('entry_block3', 1, (728, 728, 728), 2, 'conv', False),
    # middle flow
    BlockSpec('middle_block1', 16, (728, 728, 728), 1, 'sum', False),
) + EXIT_FLOW

XCEPTION_71 = (
    # entry flow: five blocks, every other one without stride
    BlockSpec('entry_block1', 1, (128, 128, 128), 2, 'conv', False),
    BlockSpec('entry_block2', 1, (256, 256, 256), 1, 'conv', False),
    BlockSpec('entry_block3', 1, (256, 256, 256), 2, 'conv', False),
    BlockSpec('entry_block4', 1, (728, 728, 728), 1, 'conv', False),
    BlockSpec('entry_block5', 1, (728, 728, 728), 2, 'conv', False),
    # middle flow
    BlockSpec('middle_block1', 16, (728, 728, 728), 1, 'sum', False),
) + EXIT_FLOW

Variant = namedtuple('Variant', ['blocks', 'taps'])
Variant.__doc__ = """An Xception network: its block table and its decoder taps {stride: unit}.

A tap is the second separable conv of the unit, after its BN and before its (strided) third conv,
without ReLU: the official feature_extractor DECODER_END_POINTS,
'<flow>/<block>/unit_1/xception_module/separable_conv2_pointwise'.
"""
VARIANTS = {
    'xception_41': Variant(XCEPTION_41, {4: 'entry_block2_unit1', 8: 'entry_block3_unit1', 16: 'exit_block1_unit1'}),
    'xception_65': Variant(XCEPTION_65, {4: 'entry_block2_unit1', 8: 'entry_block3_unit1', 16: 'exit_block1_unit1'}),
    'xception_71': Variant(XCEPTION_71, {4: 'entry_block3_unit1', 8: 'entry_block5_unit1', 16: 'exit_block1_unit1'}),
}

STEM_STRIDE = 2  # entry_flow/conv1_1
WEIGHT_INIT = TruncatedNormal(0.09)  # official xception_arg_scope: weights_initializer_stddev=0.09


def unit_plan(blocks, output_stride):
    """[(unit name, spec, stride, rate)] for every unit, reaching `output_stride` as the official code.

    Strides are applied until the requested output stride is reached; from then on each unit runs
    with stride 1 and the atrous rate grows by the stride it skipped (official `stack_blocks_dense`).
    OS16: exit block 1 at rate 1, exit block 2 at rate 2. OS8: entry block 3 loses its stride, the
    middle flow and exit block 1 run at rate 2, exit block 2 at rate 4. OS32: every stride, rate 1.
    """
    current_stride, rate, plan = STEM_STRIDE, 1, []
    for spec in blocks:
        for index in range(1, spec.units + 1):
            name = '%s_unit%d' % (spec.name, index)
            unit_stride = spec.stride if index == spec.units else 1
            if current_stride == output_stride:
                plan.append((name, spec, 1, rate))
                rate *= unit_stride
            else:
                plan.append((name, spec, unit_stride, 1))
                current_stride *= unit_stride
    if current_stride != output_stride:
        raise ValueError('output_stride %r cannot be reached by this Xception: use 4, 8, 16 or 32'
                         % (output_stride,))
    return plan


class XceptionUnit(nn.HybridBlock):
    """Three separable convolutions (the last one carries the stride) plus the shortcut."""

    def __init__(self, in_channels, spec, stride, rate, returns_skip=False, norm_layer=batch_norm,
                 **kwargs):
        super().__init__(**kwargs)
        self.relu_before = not spec.relu_inside
        self.shortcut_type = spec.shortcut
        self.returns_skip = returns_skip
        self.separable_convs = []
        with self.name_scope():
            channels = in_channels
            for index, depth in enumerate(spec.depths, 1):
                separable_conv = SeparableConv(
                    channels, depth, stride=stride if index == 3 else 1, rate=rate,
                    relu=spec.relu_inside, bn_epsilon=BACKBONE_BN_EPSILON, norm_layer=norm_layer,
                    weight_inits=(WEIGHT_INIT, WEIGHT_INIT))
                self.register_child(separable_conv, 'separable_conv%d' % index)
                self.separable_convs.append(separable_conv)
                channels = depth
            if spec.shortcut == 'conv':
                self.shortcut = ConvBN(in_channels, spec.depths[-1], 1, stride=stride, relu=False,
                                       bn_epsilon=BACKBONE_BN_EPSILON, norm_layer=norm_layer, weight_init=WEIGHT_INIT)

    def hybrid_forward(self, F, x):
        residual, skip = x, None
        for index, separable_conv in enumerate(self.separable_convs):
            residual = separable_conv(F.Activation(residual, act_type='relu') if self.relu_before else residual)
            skip = residual if index == 1 else skip
        if self.shortcut_type == 'conv':
            residual = residual + self.shortcut(x)
        elif self.shortcut_type == 'sum':
            residual = residual + x
        return (residual, skip) if self.returns_skip else residual


class XceptionBackbone(nn.HybridBlock):
    """Xception features: input NCHW normalised to [-1, 1]; returns (features at each tap..., features).

    variant: 'xception_41', 'xception_65' or 'xception_71'. taps: the decoder strides whose skips to
    return, in this order (official DECODER_END_POINTS; 4 -> 256 channels); default (4,), the skip of
    DeepLab v3+. The last output is at `output_stride` (8, 16 or 32), 2048 channels.
    Units are registered under their names (`entry_block1_unit1`, ..., `middle_block1_unit16`, ...).
    """

    def __init__(self, output_stride=16, variant='xception_65', taps=(4,), norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        if variant not in VARIANTS:
            raise ValueError('unknown Xception variant %r: use one of %s' % (variant, ', '.join(VARIANTS)))
        blocks, tap_units = VARIANTS[variant]
        unknown = [stride for stride in taps if stride not in tap_units]
        if unknown:
            raise ValueError('%s has no decoder tap at stride %s (it has %s)' % (variant, unknown, sorted(tap_units)))
        self.output_stride = output_stride
        self.taps = tuple(taps)
        self.tap_channels = {}
        self.units, self.tap_order = [], []
        with self.name_scope():
            self.conv1_1 = ConvBN(3, 32, 3, stride=STEM_STRIDE, bn_epsilon=BACKBONE_BN_EPSILON,
                                  norm_layer=norm_layer, weight_init=WEIGHT_INIT)
            self.conv1_2 = ConvBN(32, 64, 3, bn_epsilon=BACKBONE_BN_EPSILON, norm_layer=norm_layer,
                                  weight_init=WEIGHT_INIT)
            channels = 64
            tapped = {tap_units[stride]: stride for stride in self.taps}
            for name, spec, stride, rate in unit_plan(blocks, output_stride):
                unit = XceptionUnit(channels, spec, stride, rate, returns_skip=name in tapped, norm_layer=norm_layer)
                self.register_child(unit, name)
                self.units.append(unit)
                if unit.returns_skip:
                    self.tap_channels[tapped[name]] = spec.depths[1]
                    self.tap_order.append(tapped[name])
                channels = spec.depths[-1]
        self.channels = channels

    def hybrid_forward(self, F, x):
        x, skips = self.conv1_2(self.conv1_1(x)), []
        for unit in self.units:
            if unit.returns_skip:
                x, skip = unit(x)
                skips.append(skip)
            else:
                x = unit(x)
        by_stride = dict(zip(self.tap_order, skips))
        return tuple(by_stride[stride] for stride in self.taps) + (x,)


class XceptionClassifier(nn.HybridBlock):
    """The ImageNet classifier of the official `xception_41/65/71` checkpoints.

    Input: NCHW float32 RGB pixel values in [0, 255]. Output: N x num_classes logits (class 0 is
    background in the official 1001-class checkpoints). Output stride 32, global mean, dropout
    (keep 0.5, training only), 1x1 conv with bias. Its `backbone` initialises DeepLab's.
    """

    def __init__(self, num_classes=1001, variant='xception_65', norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.backbone = XceptionBackbone(output_stride=32, variant=variant, taps=(), norm_layer=norm_layer)
            self.dropout = nn.Dropout(0.5)  # official xception(): keep_prob=0.5
            self.logits = biased_conv(self.backbone.channels, num_classes, weight_init=WEIGHT_INIT)

    def hybrid_forward(self, F, x):
        features = self.backbone(normalize_pixels(F, x))[-1]
        pooled = F.mean(features, axis=(2, 3), keepdims=True)
        return F.flatten(self.logits(self.dropout(pooled)))


Xception65 = XceptionClassifier  # the name of earlier versions: XceptionClassifier(num_classes) is Xception-65
