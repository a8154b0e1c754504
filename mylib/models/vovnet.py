"""VoVNet, the backbone of VoVNet-DeepLabV3 (stigma0617/VoVNet-DeepLabV3, `deeplab.py`), as Gluon blocks.

A VoVNet is a stem of three 3x3 convolutions and four stages of one-shot aggregation (OSA) modules. An
OSA module runs five 3x3 conv + BN + ReLU layers one after the other, concatenates its input with all five
outputs and aggregates them with a 1x1 conv + BN + ReLU; every module but the first of a stage adds its
input back (identity). Stages 3-5 start with a 3x3 max pool of stride 2 that rounds up (`ceil_mode`),
unless the output stride dilates them instead (the original runs stage 5 at rate 2: output stride 16).
The networks are data (`VOVNET`); `stage_plan` turns an output stride into each stage's pooling and rate.
"""
from collections import namedtuple

from mxnet.gluon import nn

from .layers import ConvBN, batch_norm, pooled_stage_plan, smallest_side

Stage = namedtuple('Stage', ['name', 'channels', 'concat_channels', 'modules'])
Stage.__doc__ = """One VoVNet stage: `modules` OSA modules, named `<name>_<i>` from 1 (the original's OSA<stage>_<i>).

channels: the five 3x3 layers' output channels; concat_channels: the module's output (its 1x1's).
"""

LAYERS_PER_MODULE = 5  # original vovnet39 / vovnet57: layer_per_block=5
# original VoVNet(...): config_stage_ch, config_concat_ch, block_per_stage of vovnet39 and vovnet57
VOVNET = {
    39: (Stage('osa2', 128, 256, 1), Stage('osa3', 160, 512, 1), Stage('osa4', 192, 768, 2),
         Stage('osa5', 224, 1024, 2)),
    57: (Stage('osa2', 128, 256, 1), Stage('osa3', 160, 512, 1), Stage('osa4', 192, 768, 4),
         Stage('osa5', 224, 1024, 3)),
}
VARIANTS = {'vovnet_39': 39, 'vovnet_57': 57}
# original stem: conv3x3(3, 64, stride=2), conv3x3(64, 64), conv3x3(64, 128, stride=2), as (name, channels, stride)
STEM = (('stem1', 64, 2), ('stem2', 64, 1), ('stem3', 128, 2))
STEM_STRIDE = 4
BN_EPSILON = 1e-5  # nn.BatchNorm2d's default
BN_MOMENTUM = 0.9  # nn.BatchNorm2d's default momentum 0.1 is MXNet's 0.9

POOL = 3  # original: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True), no padding


def stage_plan(output_stride=16):
    """[(pool, rate)] of the four stages: stage 2 at the stem's stride 4, each later one pooled by 2 while
    that stays within `output_stride`, else dilated by 2 more (the original at OS16: stage 5 at rate 2)."""
    return pooled_stage_plan(output_stride, stages=3, stem_stride=STEM_STRIDE)


class OSAModule(nn.HybridBlock):
    """One-shot aggregation: `conv0`..`conv4` (3x3 at `rate`, each on the previous one's output), then
    `concat`, a 1x1 over [input, conv0, ..., conv4]; plus the input if `identity`."""

    def __init__(self, in_channels, stage, rate=1, identity=False, norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        self.identity, self.layers = identity, []
        with self.name_scope():
            channels = in_channels
            for index in range(LAYERS_PER_MODULE):
                conv = ConvBN(channels, stage.channels, 3, rate=rate, bn_epsilon=BN_EPSILON, norm_layer=norm_layer)
                self.register_child(conv, 'conv%d' % index)
                self.layers.append(conv)
                channels = stage.channels
            self.concat = ConvBN(in_channels + LAYERS_PER_MODULE * stage.channels, stage.concat_channels,
                                 bn_epsilon=BN_EPSILON, norm_layer=norm_layer)

    def hybrid_forward(self, F, x):
        outputs = [x]
        for layer in self.layers:
            outputs.append(layer(outputs[-1]))
        y = self.concat(F.concat(*outputs, dim=1))
        return y + x if self.identity else y


class VoVNet(nn.HybridBlock):
    """VoVNet-39/57 features, as VoVNet-DeepLabV3's backbone.

    Input: NCHW float32 normalised as torchvision's ImageNet models ((RGB / 255 - mean) / std), any size.
    Output: a tuple, the decoder taps of `taps` (strides among 4, 8, 16: the output of stage 2, 3, 4), then
    the features at `output_stride` (8, 16 or 32; the original: 16). Attributes: `channels` (1024),
    `tap_channels`. Children: `stem1`..`stem3`, then the modules `osa2_1`, ..., `osa5_<n>`.
    """

    TAP_STAGES = {4: 0, 8: 1, 16: 2}  # tap stride -> the stage whose output it is

    def __init__(self, depth=39, output_stride=16, taps=(), norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        if depth not in VOVNET:
            raise ValueError('VoVNet depth %r: use one of %s' % (depth, sorted(VOVNET)))
        unknown = [stride for stride in taps if stride not in self.TAP_STAGES]
        if unknown:
            raise ValueError('VoVNet has no decoder tap at stride %s (it has 4, 8, 16)' % unknown)
        self.taps, self.plan = tuple(taps), stage_plan(output_stride)
        self.stem, self.stages, self.tap_channels = [], [], {}
        with self.name_scope():
            channels = 3
            for name, stem_channels, stride in STEM:
                conv = ConvBN(channels, stem_channels, 3, stride=stride, bn_epsilon=BN_EPSILON, norm_layer=norm_layer)
                self.register_child(conv, name)
                self.stem.append(conv)
                channels = stem_channels
            for stage, (pool, rate) in zip(VOVNET[depth], self.plan):
                modules = []
                for index in range(stage.modules):
                    module = OSAModule(channels, stage, rate, identity=index > 0, norm_layer=norm_layer)
                    self.register_child(module, '%s_%d' % (stage.name, index + 1))
                    modules.append(module)
                    channels = stage.concat_channels
                self.stages.append((pool, modules))
        for stride, stage in self.TAP_STAGES.items():
            self.tap_channels[stride] = VOVNET[depth][stage].concat_channels
        self.channels = channels

    @property
    def minimum_input(self):
        """The smallest (height, width) whose every pooled stage still holds a 3 x 3 window."""
        def fits(side):
            for _, _, stride in STEM:  # 3x3 convs, padding 1
                side = (side - 1) // stride + 1
            for pool, _ in self.plan:
                if pool:
                    if side < POOL:
                        return False
                    side = -(-(side - POOL) // 2) + 1  # rounding up
            return True
        side = smallest_side(fits)
        return side, side

    def hybrid_forward(self, F, x):
        for conv in self.stem:
            x = conv(x)
        outputs = []
        for pool, modules in self.stages:
            if pool:  # original: nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
                x = F.Pooling(x, kernel=(POOL, POOL), stride=(2, 2), pool_type='max', pooling_convention='full')
            for module in modules:
                x = module(x)
            outputs.append(x)
        return tuple(outputs[self.TAP_STAGES[stride]] for stride in self.taps) + (x,)
