"""MobileNet-v2, MobileNet-v3 (large_seg, small_seg) and EdgeTPU-MobileNet as DeepLab builds them, as plain data.

Plain Python (no mxnet): the network (`mobilenet.py`) and the converter's table
(`converters/tables/mobilenet.py`) are both generated from what is here.

A table lists the layers of the official conv defs (slim `mobilenet_v2.V2_DEF`, `mobilenet_v3.V3_LARGE`,
`V3_SMALL`, `V3_EDGETPU`) in order; layer i (from 1) is the official end point `layer_<i>`. `plan_layers` turns a
table, a depth multiplier and an output stride into the concrete layers: channels after the official
rounding, stride and atrous rate of each layer, squeeze-excite width, residual or not.
"""
from collections import namedtuple

Layer = namedtuple('Layer', ['op', 'channels', 'kernel', 'stride', 'activation', 'expansion', 'expansion_divisor',
                             'squeeze_excite', 'residual'], defaults=(True,))
Layer.__doc__ = """One layer of a MobileNet conv def.

op: 'conv' (slim.conv2d + batch norm + activation), 'expanded_conv' (official `conv_blocks.expanded_conv`:
    expand 1x1 -> depthwise kernel x kernel -> optional squeeze-excite -> project 1x1, linear) or
    'fused_conv' (official `mobilenet_v3.mbv3_fused`: an expanded_conv without depthwise conv whose expand
    conv is kernel x kernel and carries the stride -> project 1x1, linear).
channels: output channels before the depth multiplier. kernel: the conv's, the depthwise conv's, or the
    fused expand conv's. stride: the conv's, the depthwise conv's, or the fused expand conv's.
activation: 'relu6', 'relu' or 'hard_swish' (of the conv, or of the block's expand and depthwise convs; the
    projection has none).
expansion: expanded_conv and fused_conv, the factor of official `expand_input_by_factor(expansion, expansion_divisor)`:
    the expand conv has make_divisible(in_channels * expansion, expansion_divisor) channels, and exists
    only if that is more than in_channels.
squeeze_excite: expanded_conv only, the official v3 `_se4` on the depthwise output.
residual: False where the official conv def says residual=False; otherwise a block adds its input at stride 1
    with equal channels (official `expanded_conv`).
"""


def conv(channels, kernel, stride, activation):
    return Layer('conv', channels, kernel, stride, activation, None, None, False)


def expanded_conv(expansion, channels, kernel, stride, activation, squeeze_excite=False, expansion_divisor=8,
                  residual=True):
    return Layer('expanded_conv', channels, kernel, stride, activation, expansion, expansion_divisor, squeeze_excite,
                 residual)


def fused_conv(expansion, channels, kernel, stride, activation):
    return Layer('fused_conv', channels, kernel, stride, activation, expansion, 8, False)


# official mobilenet_v2.V2_DEF: ReLU6 everywhere, expansion 6, 3x3 depthwise
MOBILENET_V2 = (
    conv(32, 3, 2, 'relu6'),                                                  # layer_1  Conv
    expanded_conv(1, 16, 3, 1, 'relu6', expansion_divisor=1),                 # layer_2  expand_input(1, divisible_by=1)
    expanded_conv(6, 24, 3, 2, 'relu6'),                                      # layer_3
    expanded_conv(6, 24, 3, 1, 'relu6'),
    expanded_conv(6, 32, 3, 2, 'relu6'),                                      # layer_5
    expanded_conv(6, 32, 3, 1, 'relu6'),
    expanded_conv(6, 32, 3, 1, 'relu6'),
    expanded_conv(6, 64, 3, 2, 'relu6'),                                      # layer_8
    expanded_conv(6, 64, 3, 1, 'relu6'),
    expanded_conv(6, 64, 3, 1, 'relu6'),
    expanded_conv(6, 64, 3, 1, 'relu6'),
    expanded_conv(6, 96, 3, 1, 'relu6'),                                      # layer_12
    expanded_conv(6, 96, 3, 1, 'relu6'),
    expanded_conv(6, 96, 3, 1, 'relu6'),
    expanded_conv(6, 160, 3, 2, 'relu6'),                                     # layer_15
    expanded_conv(6, 160, 3, 1, 'relu6'),
    expanded_conv(6, 160, 3, 1, 'relu6'),
    expanded_conv(6, 320, 3, 1, 'relu6'),                                     # layer_18: DeepLab's final end point
    conv(1280, 1, 1, 'relu6'),                                                # layer_19  Conv_1: the classifier's
)

# official mobilenet_v3.V3_LARGE with feature_extractor.mobilenet_v3_large_seg's change: layers 14-17 at half
# the channels (160 -> 80, 960 -> 480), expansions 336, 480, 480 given as factors of their inputs (112, 80, 80)
MOBILENET_V3_LARGE_SEG = (
    conv(16, 3, 2, 'hard_swish'),                                             # layer_1  Conv
    expanded_conv(1, 16, 3, 1, 'relu'),                                       # layer_2  no expand conv
    expanded_conv(4, 24, 3, 2, 'relu'),
    expanded_conv(3, 24, 3, 1, 'relu'),
    expanded_conv(3, 40, 5, 2, 'relu', squeeze_excite=True),                  # layer_5
    expanded_conv(3, 40, 5, 1, 'relu', squeeze_excite=True),
    expanded_conv(3, 40, 5, 1, 'relu', squeeze_excite=True),
    expanded_conv(6, 80, 3, 2, 'hard_swish'),                                 # layer_8
    expanded_conv(2.5, 80, 3, 1, 'hard_swish'),
    expanded_conv(184 / 80., 80, 3, 1, 'hard_swish'),
    expanded_conv(184 / 80., 80, 3, 1, 'hard_swish'),
    expanded_conv(6, 112, 3, 1, 'hard_swish', squeeze_excite=True),           # layer_12
    expanded_conv(6, 112, 3, 1, 'hard_swish', squeeze_excite=True),
    expanded_conv(336 / 112, 80, 5, 2, 'hard_swish', squeeze_excite=True),    # layer_14  _seg: 160 -> 80
    expanded_conv(480 / 80, 80, 5, 1, 'hard_swish', squeeze_excite=True),     # _seg: 160 -> 80
    expanded_conv(480 / 80, 80, 5, 1, 'hard_swish', squeeze_excite=True),     # _seg: 160 -> 80
    conv(480, 1, 1, 'hard_swish'),                                            # layer_17  Conv_1, _seg: 960 -> 480
)

# official mobilenet_v3.V3_SMALL with mobilenet_v3_small_seg's change: layers 10-13 at half the channels
# (96 -> 48, 576 -> 288), expansions 144, 288, 288 given as factors of their inputs (48, 48, 48)
MOBILENET_V3_SMALL_SEG = (
    conv(16, 3, 2, 'hard_swish'),                                             # layer_1  Conv
    expanded_conv(1, 16, 3, 2, 'relu', squeeze_excite=True),                  # layer_2  no expand conv
    expanded_conv(72 / 16., 24, 3, 2, 'relu'),
    expanded_conv(88 / 24., 24, 3, 1, 'relu'),
    expanded_conv(4, 40, 5, 2, 'hard_swish', squeeze_excite=True),            # layer_5
    expanded_conv(6, 40, 5, 1, 'hard_swish', squeeze_excite=True),
    expanded_conv(6, 40, 5, 1, 'hard_swish', squeeze_excite=True),
    expanded_conv(3, 48, 5, 1, 'hard_swish', squeeze_excite=True),            # layer_8
    expanded_conv(3, 48, 5, 1, 'hard_swish', squeeze_excite=True),
    expanded_conv(144 / 48, 48, 5, 2, 'hard_swish', squeeze_excite=True),     # layer_10  _seg: 96 -> 48
    expanded_conv(288 / 48, 48, 5, 1, 'hard_swish', squeeze_excite=True),     # _seg: 96 -> 48
    expanded_conv(288 / 48, 48, 5, 1, 'hard_swish', squeeze_excite=True),     # _seg: 96 -> 48
    conv(288, 1, 1, 'hard_swish'),                                            # layer_13  Conv_1, _seg: 576 -> 288
)

# official mobilenet_v3.V3_EDGETPU (feature_extractor.mobilenet_edgetpu, scope MobilenetEdgeTPU): fused convs
# (mbv3_fused) in the early layers, expanded convs (mbv3_op) after, ReLU everywhere (the conv def's defaults
# set activation_fn=tf.nn.relu for slim.conv2d inside DeepLab's ReLU6 arg scope; mbv3_op's act=tf.nn.relu).
# Layer 2 (expansion 1 of 32 channels) has no expand conv: a linear 1x1 projection. Layer 15: residual=False.
MOBILENET_EDGETPU = (
    conv(32, 3, 2, 'relu'),                                                   # layer_1  Conv
    fused_conv(1, 16, 3, 1, 'relu'),                                          # layer_2  no expand conv
    fused_conv(8, 32, 3, 2, 'relu'),                                          # layer_3
    fused_conv(4, 32, 3, 1, 'relu'),
    fused_conv(4, 32, 3, 1, 'relu'),
    fused_conv(4, 32, 3, 1, 'relu'),
    fused_conv(8, 48, 3, 2, 'relu'),                                          # layer_7
    fused_conv(4, 48, 3, 1, 'relu'),
    fused_conv(4, 48, 3, 1, 'relu'),
    fused_conv(4, 48, 3, 1, 'relu'),
    expanded_conv(8, 96, 3, 2, 'relu'),                                       # layer_11
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(8, 96, 3, 1, 'relu', residual=False),                       # layer_15
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(4, 96, 3, 1, 'relu'),
    expanded_conv(8, 160, 5, 2, 'relu'),                                      # layer_19
    expanded_conv(4, 160, 5, 1, 'relu'),
    expanded_conv(4, 160, 5, 1, 'relu'),
    expanded_conv(4, 160, 5, 1, 'relu'),
    expanded_conv(8, 192, 3, 1, 'relu'),                                      # layer_23
    conv(1280, 1, 1, 'relu'),                                                 # layer_24 Conv_1: DeepLab's final
)

Variant = namedtuple('Variant', ['layers', 'final_layer', 'decoder_layers'])
Variant.__doc__ = """A DeepLab MobileNet backbone (official `feature_extractor.py`).

final_layer: the official final end point (`_MOBILENET_V2_FINAL_ENDPOINT` 'layer_18',
    `_MOBILENET_V3_LARGE_FINAL_ENDPOINT` 'layer_17', `_MOBILENET_V3_SMALL_FINAL_ENDPOINT` 'layer_13',
    `_MOBILENET_EDGETPU` 'layer_24').
decoder_layers: {stride: i}, official DECODER_END_POINTS 'layer_<i>/depthwise_output': the output of the
    depthwise conv of that block, after its batch norm and activation, before squeeze-excite.
"""

VARIANTS = {  # by official model_variant
    'mobilenet_v2': Variant(MOBILENET_V2, 18, {4: 4, 8: 7, 16: 14}),
    'mobilenet_v3_large_seg': Variant(MOBILENET_V3_LARGE_SEG, 17, {4: 4, 8: 7, 16: 13}),
    'mobilenet_v3_small_seg': Variant(MOBILENET_V3_SMALL_SEG, 13, {4: 2, 8: 4, 16: 9}),
    'mobilenet_edgetpu': Variant(MOBILENET_EDGETPU, 24, {}),  # _MOBILENET_EDGETPU 'layer_24'; no decoder end points
}

# the variants whose slim ImageNet classifiers were published (mobilenet_v2.mobilenet, mobilenet_v3.edge_tpu)
CLASSIFIER_VARIANTS = ('mobilenet_v2', 'mobilenet_edgetpu')

SQUEEZE_FACTOR = 4  # official mobilenet_v3.squeeze_excite: squeeze_factor=4, channels divisible by 8
SQUEEZE_DIVISOR = 8


def variant_of(name):
    if name not in VARIANTS:
        raise ValueError('unknown MobileNet variant %r: use one of %s' % (name, ', '.join(VARIANTS)))
    return VARIANTS[name]


def make_divisible(value, divisor, min_value=None):
    """The official `_make_divisible`: nearest multiple of `divisor`, at least `min_value` (default
    `divisor`), and never more than 10 % below `value`."""
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * value else rounded)


def channel_rounding(variant, depth_multiplier=1.0, divisible_by=None, min_depth=None):
    """(divisible_by, min_depth) of the depth multiplier (official slim `depth_multiplier`).

    MobileNet-v2 in DeepLab's feature extractor (official `_mobilenet_v2`): divisible_by (DeepLab's flag)
    defaults to 8 at depth multiplier 1.0 and to 1 below or above it; min_depth is 8 at 1.0 and 1
    otherwise. The slim ImageNet classifier passes neither: slim's defaults 8 and 8. MobileNet-v3
    (`_mobilenet_v3` drops divisible_by): slim's defaults, 8 and 8, whatever is asked.
    """
    if variant != 'mobilenet_v2':
        return 8, 8
    at_one = depth_multiplier == 1.0
    return divisible_by or (8 if at_one else 1), min_depth or (8 if at_one else 1)


def strides_and_rates(layers, output_stride):
    """[(stride, rate)] of each layer at `output_stride` (official `mobilenet_base`).

    Strides apply until the running stride equals the output stride; from there every layer runs at
    stride 1, the layer that gave up its stride at the rate accumulated so far, and the rate grows by
    each stride given up. The rate is that of the layer's kernel (a block's depthwise conv); 1x1
    convolutions are never dilated. MobileNet-v2 at OS16: layer_15 runs at stride 1, layers 16-18 at
    rate 2; at OS8 layer_8 at stride 1, layers 9-15 at rate 2, 16-18 at rate 4.
    """
    current, rate, plan = 1, 1, []
    for layer in layers:
        if current == output_stride:
            stride, layer_rate = 1, rate
            rate *= layer.stride
        else:
            stride, layer_rate = layer.stride, 1
            current *= layer.stride
        plan.append((stride, layer_rate if layer.kernel > 1 else 1))
    if current != output_stride:
        raise ValueError('output_stride %r cannot be reached by this MobileNet: use 8, 16 or 32' % (output_stride,))
    return plan


Planned = namedtuple('Planned', ['name', 'op', 'in_channels', 'expanded', 'channels', 'kernel', 'stride', 'rate',
                                 'activation', 'squeeze', 'residual'])
Planned.__doc__ = """One concrete layer. name: the official end point, 'layer_<i>'. expanded: channels of the
expand conv, None without one (its depthwise conv then runs on the input). squeeze: channels of the
squeeze-excite bottleneck, or None. residual: input added to the output (official: stride 1 and equal channels).
"""


def plan_layers(variant, depth_multiplier=1.0, output_stride=16, divisible_by=None, min_depth=None, last=None,
                finegrain=False):
    """[Planned] of the layers of `variant` up to layer `last` (default: DeepLab's final end point).

    divisible_by / min_depth: see `channel_rounding` (None: DeepLab's feature extractor; the slim
    classifier passes 8, 8). Channels: official `depth_multiplier`, make_divisible(channels * multiplier,
    divisible_by, min_depth); expansions and squeeze-excite widths are rounded to 8 whatever the multiplier.
    finegrain: slim's finegrain_classification_mode below multiplier 1: the conv def's last layer keeps its
    channels (v2 divides them by the multiplier before it multiplies, v3 does not multiply them: the same).
    """
    spec = variant_of(variant)
    divisor, min_depth = channel_rounding(variant, depth_multiplier, divisible_by, min_depth)
    layers = spec.layers[:last or spec.final_layer]
    planned, in_channels = [], 3
    for index, (layer, (stride, rate)) in enumerate(zip(layers, strides_and_rates(layers, output_stride)), 1):
        kept = finegrain and depth_multiplier < 1 and index == len(spec.layers)
        channels = layer.channels if kept else make_divisible(layer.channels * depth_multiplier, divisor, min_depth)
        expanded = squeeze = None
        if layer.op != 'conv':
            inner = make_divisible(in_channels * layer.expansion, layer.expansion_divisor)
            expanded = inner if inner > in_channels else None
            if layer.squeeze_excite:  # on the depthwise output: the expansion, or the input
                squeeze = make_divisible(max(inner, in_channels) / SQUEEZE_FACTOR, SQUEEZE_DIVISOR)
        if layer.op == 'fused_conv' and ((stride, rate) != (layer.stride, 1) or (stride != 1 and not expanded)):
            # official mbv3_fused binds its stride into the expand conv and passes it no rate: only the
            # output strides that leave the fused layers alone (8, 16, 32 for V3_EDGETPU) are the official graph
            raise ValueError('output_stride %r would change the stride of %s, a fused conv: use 8, 16 or 32'
                             % (output_stride, 'layer_%d' % index))
        residual = layer.op != 'conv' and layer.residual and stride == 1 and channels == in_channels
        planned.append(Planned('layer_%d' % index, layer.op, in_channels, expanded, channels, layer.kernel, stride,
                               rate, layer.activation, squeeze, residual))
        in_channels = channels
    return planned

