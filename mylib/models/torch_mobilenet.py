"""torchvision's MobileNet-v3-large (`torchvision/models/mobilenetv3.py`), as deeplabv3_mobilenet_v3_large
builds it, from the MobileNet blocks of `mobilenet.py` with PyTorch's symmetric padding.

It is not the official DeepLab's MobileNet-v3 (`mobilenet_spec.MOBILENET_V3_LARGE_SEG`): the full channels of
the last stage (160, 960), no TF 'SAME' subsampling, the exact hard sigmoid relu6(x + 3) / 6, and its own
dilation rule: the segmentation models build it with `dilated=True`, where the last stage's first block gives
up its stride and runs at rate 2 like the two after it (output stride 16). The table is data (`MOBILENET_V3_LARGE`,
torchvision's `bneck_conf` rows); `plan_layers` resolves strides, rates and squeeze widths into the
`mobilenet_spec.Planned` layers the blocks are built from.
"""
from collections import namedtuple

from mxnet.gluon import nn

from .layers import batch_norm, stride_or_dilation
from .mobilenet import build_layer
from .mobilenet_spec import Planned, make_divisible

Block = namedtuple('Block', ['kernel', 'expanded', 'channels', 'squeeze_excite', 'activation', 'stride'])
Block.__doc__ = """One torchvision InvertedResidual (its `bneck_conf` without the input channels, which are the
previous block's): depthwise kernel, expanded channels (no expand conv when equal to the input), output
channels, squeeze-excite, activation ('relu' or 'hard_swish') and stride."""

MOBILENET_V3_LARGE = (  # torchvision _mobilenet_v3_conf('mobilenet_v3_large'): bneck_conf rows, reduced_tail=False
    Block(3, 16, 16, False, 'relu', 1),
    Block(3, 64, 24, False, 'relu', 2),          # C1
    Block(3, 72, 24, False, 'relu', 1),
    Block(5, 72, 40, True, 'relu', 2),           # C2
    Block(5, 120, 40, True, 'relu', 1),
    Block(5, 120, 40, True, 'relu', 1),
    Block(3, 240, 80, False, 'hard_swish', 2),   # C3
    Block(3, 200, 80, False, 'hard_swish', 1),
    Block(3, 184, 80, False, 'hard_swish', 1),
    Block(3, 184, 80, False, 'hard_swish', 1),
    Block(3, 480, 112, True, 'hard_swish', 1),
    Block(3, 672, 112, True, 'hard_swish', 1),
    Block(5, 672, 160, True, 'hard_swish', 2),   # C4: dilated in the segmentation models
    Block(5, 960, 160, True, 'hard_swish', 1),
    Block(5, 960, 160, True, 'hard_swish', 1),
)
VARIANTS = {'mobilenet_v3_large': MOBILENET_V3_LARGE}
STEM = 16          # features[0]: 3x3 stride-2 conv + BN + hardswish
LAST_CHANNELS = 960  # features[16]: 1x1 conv + BN + hardswish, 6 x the last block's channels
SQUEEZE_FACTOR, SQUEEZE_DIVISOR = 4, 8  # InvertedResidual: _make_divisible(expanded_channels // 4, 8)
BN_MOMENTUM = 0.99  # torchvision mobilenet_v3: BatchNorm2d(eps=0.001, momentum=0.01); MXNet's momentum 0.99
GATE_SCALE = 1.0 / 6.0  # F.hardsigmoid: relu6(x + 3) / 6


def plan_layers(blocks=MOBILENET_V3_LARGE, output_stride=16):
    """[Planned] of the stem, the blocks and the last conv at `output_stride` (8, 16 or 32), named layer_1..

    A block whose stride would pass the output stride keeps stride 1 and doubles the rate, and runs at that
    new rate itself (torchvision: `dilation` set on the whole stage, stride 1 where dilation > 1).
    """
    if output_stride not in (8, 16, 32):
        raise ValueError('MobileNet-v3 output stride %r: use 8, 16 or 32' % (output_stride,))
    planned = [Planned('layer_1', 'conv', 3, None, STEM, 3, 2, 1, 'hard_swish', None, False)]
    stride, rate, in_channels = 2, 1, STEM
    for index, block in enumerate(blocks, 2):
        stride, rate, block_stride = stride_or_dilation(stride, rate, block.stride, output_stride)
        squeeze = (make_divisible(block.expanded // SQUEEZE_FACTOR, SQUEEZE_DIVISOR) if block.squeeze_excite
                   else None)
        planned.append(Planned('layer_%d' % index, 'expanded_conv', in_channels,
                               block.expanded if block.expanded != in_channels else None, block.channels,
                               block.kernel, block_stride, rate, block.activation, squeeze,
                               block.stride == 1 and in_channels == block.channels))
        in_channels = block.channels
    planned.append(Planned('layer_%d' % (len(blocks) + 2), 'conv', in_channels, None, LAST_CHANNELS, 1, 1, 1,
                           'hard_swish', None, False))
    return planned


class TorchMobileNetV3(nn.HybridBlock):
    """torchvision's MobileNet-v3-large features (`features`, 17 layers), as its DeepLabV3 runs them.

    Input: NCHW float32 normalised as torchvision's ImageNet models, any size. Output: a 1-tuple, the features
    (960 channels) at `output_stride` (torchvision's segmentation models: 16). Children `layer_1` (stem) ..
    `layer_17` (the last 1x1 conv); the blocks are `mobilenet.ExpandedConv` with symmetric padding.
    """

    def __init__(self, variant='mobilenet_v3_large', output_stride=16, taps=(), norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        if taps:
            raise ValueError('torchvision MobileNet-v3 is built without decoder taps (its DeepLabV3 has none)')
        self.layers, self.tap_channels = [], {}
        with self.name_scope():
            for layer in plan_layers(VARIANTS[variant], output_stride):
                block = build_layer(layer, norm_layer=norm_layer, symmetric=True, gate_scale=GATE_SCALE)
                self.register_child(block, layer.name)
                self.layers.append(block)
        self.channels = LAST_CHANNELS

    def hybrid_forward(self, F, x):
        for layer in self.layers:
            x = layer(x)
        return (x,)

