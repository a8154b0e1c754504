"""DenseNet-161/201, as VoVNet-DeepLabV3's `deeplab.py` builds them for DeepLabV3, as Gluon blocks.

torchvision's DenseNet-BC with dilation: a 7x7 stride-2 stem + BN + ReLU + 3x3 stride-2 max pool (padding 1);
four dense blocks whose layers are pre-activation (BN, ReLU, 1x1 conv to 4 x growth, BN, ReLU, 3x3 conv to
growth) and concatenate their output to their input; between blocks a transition (BN, ReLU, 1x1 conv to
half the channels, then a 2x2 average pool unless the output stride dilates the next block instead); a
final BN, and the ReLU of the DeepLab forward. The original: transitions of strides 2, 2, 1 and the last
block at rate 2 (output stride 16). The networks are data (`DENSENET`); `block_plan` gives each block's
pooling and rate.
"""
from collections import namedtuple

from mxnet.gluon import nn

from .layers import activation, batch_norm, normalization, pooled_stage_plan, smallest_side

DenseNetConfig = namedtuple('DenseNetConfig', ['growth', 'blocks', 'stem_channels'])
DENSENET = {  # original densenet161 / densenet201: growth_rate, block_config, num_init_features
    161: DenseNetConfig(48, (6, 12, 36, 24), 96),
    201: DenseNetConfig(32, (6, 12, 48, 32), 64),
}
VARIANTS = {'densenet_161': 161, 'densenet_201': 201}
BOTTLENECK = 4   # original bn_size: the 1x1 conv gives 4 x growth channels
STEM_STRIDE = 4  # conv0 and pool0
BN_EPSILON = 1e-5  # nn.BatchNorm2d's default
BN_MOMENTUM = 0.9  # nn.BatchNorm2d's momentum 0.1 is MXNet's 0.9


def block_plan(output_stride=16):
    """[(pooled before, rate)] of the four dense blocks: block 1 at the stem's stride 4; each later one after
    a transition that pools by 2 while that stays within `output_stride`, else at twice the rate (the
    original at OS16: the last transition without pooling, the last block at rate 2)."""
    return pooled_stage_plan(output_stride, stages=3, stem_stride=STEM_STRIDE)


def _conv(in_channels, channels, kernel_size=1, rate=1, stride=1):
    """A bias-free conv with PyTorch's padding (rate x (kernel // 2) on each side)."""
    return nn.Conv2D(channels, kernel_size, strides=stride, padding=rate * (kernel_size // 2), dilation=rate,
                     use_bias=False, in_channels=in_channels)


class DenseLayer(nn.HybridBlock):
    """One dense layer: [x, conv2(relu(norm2(conv1(relu(norm1(x))))))] (children norm1, conv1, norm2, conv2)."""

    def __init__(self, in_channels, growth, rate=1, norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.norm1 = normalization(in_channels, norm_layer, BN_EPSILON)
            self.conv1 = _conv(in_channels, BOTTLENECK * growth)
            self.norm2 = normalization(BOTTLENECK * growth, norm_layer, BN_EPSILON)
            self.conv2 = _conv(BOTTLENECK * growth, growth, 3, rate)

    def hybrid_forward(self, F, x):
        y = self.conv1(F.relu(self.norm1(x)))
        return F.concat(x, self.conv2(F.relu(self.norm2(y))), dim=1)


class Transition(nn.HybridBlock):
    """BN, ReLU, 1x1 conv to half the channels, then a 2x2 average pool if `pool` (children norm, conv)."""

    def __init__(self, in_channels, pool=True, norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        self.pool = pool
        with self.name_scope():
            self.norm = normalization(in_channels, norm_layer, BN_EPSILON)
            self.conv = _conv(in_channels, in_channels // 2)

    def hybrid_forward(self, F, x):
        x = self.conv(F.relu(self.norm(x)))
        return F.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type='avg') if self.pool else x


class DenseNet(nn.HybridBlock):
    """DenseNet-161/201 features, as VoVNet-DeepLabV3's backbone (the final BN and ReLU included).

    Input: NCHW float32 normalised as torchvision's ImageNet models, any size. Output: a 1-tuple, the
    features at `output_stride`. Children: `conv0`, `norm0`, `block<b>_layer<l>`, `transition<t>`, `norm5`.
    """

    def __init__(self, depth=161, output_stride=16, taps=(), norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        if depth not in DENSENET:
            raise ValueError('DenseNet depth %r: use one of %s' % (depth, sorted(DENSENET)))
        if taps:
            raise ValueError('DenseNet is built without decoder taps (VoVNet-DeepLabV3 has no decoder)')
        config = DENSENET[depth]
        self.plan = block_plan(output_stride)
        self.stages, self.tap_channels = [], {}
        with self.name_scope():
            self.conv0 = _conv(3, config.stem_channels, 7, stride=2)
            self.norm0 = normalization(config.stem_channels, norm_layer, BN_EPSILON)
            channels = config.stem_channels
            for block, (layers, (pool, rate)) in enumerate(zip(config.blocks, self.plan), 1):
                stage = []
                if block > 1:
                    transition = Transition(channels, pool, norm_layer=norm_layer)
                    self.register_child(transition, 'transition%d' % (block - 1))
                    stage.append(transition)
                    channels //= 2
                for index in range(1, layers + 1):
                    layer = DenseLayer(channels, config.growth, rate, norm_layer=norm_layer)
                    self.register_child(layer, 'block%d_layer%d' % (block, index))
                    stage.append(layer)
                    channels += config.growth
                self.stages.append(stage)
            self.norm5 = normalization(channels, norm_layer, BN_EPSILON)
        self.channels = channels

    @property
    def minimum_input(self):
        """The smallest (height, width) whose every pooling transition still holds a 2 x 2 window."""
        def fits(side):
            side = (side - 1) // 2 + 1  # conv0: 7x7, stride 2, padding 3
            side = (side - 1) // 2 + 1  # pool0: 3x3, stride 2, padding 1
            for pooled, _ in self.plan[1:]:
                if pooled:
                    if side < 2:
                        return False
                    side //= 2
            return True
        side = smallest_side(fits)
        return side, side

    def hybrid_forward(self, F, x):
        x = activation(F, self.norm0(self.conv0(x)))
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type='max')
        for stage in self.stages:
            for layer in stage:
                x = layer(x)
        return (F.relu(self.norm5(x)),)
