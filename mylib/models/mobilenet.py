"""MobileNet-v2, MobileNet-v3 (large_seg, small_seg) and EdgeTPU-MobileNet as DeepLab uses them, and the
slim MobileNet-v2 and EdgeTPU ImageNet classifiers, as Gluon blocks.

The layers are data (`mobilenet_spec.py`, official slim `mobilenet_v2.V2_DEF` / `mobilenet_v3.V3_LARGE`,
`V3_SMALL` with DeepLab's `_seg` changes, `V3_EDGETPU`); `plan_layers` resolves channels, strides and
rates, and the blocks here only build what it says. Children are named after the official end points:
`layer_1` (the stem conv) ... `layer_18` (v2; EdgeTPU: `layer_24`); an expanded conv has `expand` (absent
where the expansion adds no channels), `depthwise` (absent in EdgeTPU's fused convs), `squeeze_excite`
(v3 only, with `squeeze` and `excite`) and `project`, as the official scopes.
"""
import functools

from mxnet.gluon import nn

from .init import TruncatedNormal
from .layers import BACKBONE_BN_EPSILON, ConvBN, activation, batch_norm, biased_conv, normalize_pixels
from .mobilenet_spec import plan_layers, variant_of
from .tf_same import SameStride2Conv2D, every_second_from_end

WEIGHT_INIT = TruncatedNormal(0.09)  # official mobilenet.training_scope / mobilenet_v2_arg_scope: stddev=0.09
BN_DECAY = 0.997  # official training_scope(bn_decay=0.997), also DeepLab's mobilenet_v2_arg_scope for v3
BN_EPSILON = BACKBONE_BN_EPSILON  # 1e-3: neither scope sets it, slim.batch_norm's default epsilon=0.001
mobilenet_batch_norm = functools.partial(batch_norm, momentum=BN_DECAY)
HARD_SWISH_SCALE = 1.0 / 6.0  # official mobilenet_v3.hard_swish: x * relu6(x + 3) * np.float32(1. / 6.)
HARD_SIGMOID_SCALE = 0.16667  # official mobilenet_v3.squeeze_excite gating_fn: relu6(x + 3) * 0.16667
DROPOUT_KEEP = 0.8  # official mobilenet.training_scope: dropout_keep_prob=0.8 before the logits


def activate(F, x, kind):
    """The official activations by name: 'relu', 'relu6', 'hard_swish', or None (linear). ReLU is the
    `Activation` operator, which oneDNN fuses into the conv before it (`F.relu` is not fused: on
    EdgeTPU-DeepLab, all ReLU, that was a quarter of the time)."""
    if kind == 'relu':
        return activation(F, x)
    if kind == 'relu6':
        return F.clip(x, 0.0, 6.0)
    if kind == 'hard_swish':
        return x * F.clip(x + 3.0, 0.0, 6.0) * HARD_SWISH_SCALE
    return x


class MobileConv(ConvBN):
    """Bias-free conv with TF 'SAME' padding at any stride, batch norm, activation (NCHW in, NCHW out).

    A stride-2 depthwise conv runs at stride 1 (symmetric padding) and keeps every second row and column
    counted from the end, before its batch norm; a dense one (its work would grow 4x) runs at stride 2 on
    the reversed input (`tf_same.SameStride2Conv2D`): both exactly TF's 'SAME' for odd and even sizes alike.
    Stride-1 convs pad k_eff // 2 on each side, which is 'SAME' for odd kernels at any rate.
    symmetric=True is PyTorch's padding instead (torchvision's MobileNet-v3): k_eff // 2 on each side at
    every stride, the conv itself strided.
    """

    def __init__(self, in_channels, channels, kernel_size=1, stride=1, rate=1, groups=1, activation=None,
                 norm_layer=mobilenet_batch_norm, symmetric=False, **kwargs):
        if not symmetric and (stride not in (1, 2) or (stride == 2 and (kernel_size < 3 or kernel_size % 2 == 0
                                                                        or rate != 1))):
            raise ValueError('stride %r with kernel %r at rate %r: only stride 1, or stride 2 with an undilated odd '
                             'kernel of 3 or more' % (stride, kernel_size, rate))
        reversed_stride2 = not symmetric and stride == 2 and groups == 1
        super().__init__(in_channels, channels, kernel_size, stride=stride if symmetric or reversed_stride2 else 1,
                         rate=rate, groups=groups, relu=False, bn_epsilon=BN_EPSILON, norm_layer=norm_layer,
                         weight_init=WEIGHT_INIT, conv_class=SameStride2Conv2D if reversed_stride2 else nn.Conv2D,
                         **kwargs)
        self.subsample, self.activation = stride == 2 and not (symmetric or reversed_stride2), activation

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        x = self.bn(every_second_from_end(F, x) if self.subsample else x)
        return activate(F, x, self.activation)


class SqueezeExcite(nn.HybridBlock):
    """Official v3 `squeeze_excite` (factor 4): x * hard_sigmoid(excite(relu(squeeze(mean over H, W of x)))).

    squeeze and excite are 1x1 convs with bias and no batch norm (official `Conv`, `Conv_1`). The hard
    sigmoid is relu6(x + 3) * gate_scale (official 0.16667; torchvision's F.hardsigmoid: 1 / 6).
    """

    def __init__(self, channels, squeeze_channels, gate_scale=HARD_SIGMOID_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.gate_scale = gate_scale
        with self.name_scope():
            self.squeeze = biased_conv(channels, squeeze_channels, weight_init=WEIGHT_INIT)
            self.excite = biased_conv(squeeze_channels, channels, weight_init=WEIGHT_INIT)

    def hybrid_forward(self, F, x):
        # the mean over H, W as a global average pool: the same value, and an operator ONNX export translates
        pooled = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg')
        squeezed = activation(F, self.squeeze(pooled))
        gate = F.clip(self.excite(squeezed) + 3.0, 0.0, 6.0) * self.gate_scale
        return F.broadcast_mul(x, gate)


class ExpandedConv(nn.HybridBlock):
    """Official `expanded_conv`: expand 1x1 -> depthwise -> (squeeze-excite) -> project 1x1 (linear), + input.

    `layer` is a `mobilenet_spec.Planned`. A 'fused_conv' layer (official `mbv3_fused`) has no depthwise
    conv: its expand conv is kernel x kernel and carries the stride. With `returns_depthwise` the block
    returns (output, depthwise output), the latter after the depthwise conv's batch norm and activation
    and before squeeze-excite (official `depthwise_output`, DeepLab's decoder end points).
    symmetric, gate_scale: see `MobileConv`, `SqueezeExcite` (torchvision's MobileNet-v3).
    """

    def __init__(self, layer, returns_depthwise=False, norm_layer=mobilenet_batch_norm, symmetric=False,
                 gate_scale=HARD_SIGMOID_SCALE, **kwargs):
        super().__init__(**kwargs)
        self.residual, self.returns_depthwise = layer.residual, returns_depthwise
        inner = layer.expanded or layer.in_channels
        fused = layer.op == 'fused_conv'
        conv = dict(norm_layer=norm_layer, symmetric=symmetric)
        expand_shape = (layer.kernel, layer.stride) if fused else (1, 1)
        with self.name_scope():
            self.expand = MobileConv(layer.in_channels, inner, *expand_shape, activation=layer.activation,
                                     **conv) if layer.expanded else None
            self.depthwise = None if fused else MobileConv(inner, inner, layer.kernel, layer.stride, layer.rate,
                                                           groups=inner, activation=layer.activation, **conv)
            self.squeeze_excite = (SqueezeExcite(inner, layer.squeeze, gate_scale=gate_scale) if layer.squeeze
                                   else None)
            self.project = MobileConv(inner, layer.channels, **conv)

    def hybrid_forward(self, F, x):
        expanded = self.expand(x) if self.expand is not None else x
        depthwise = self.depthwise(expanded) if self.depthwise is not None else expanded
        y = self.squeeze_excite(depthwise) if self.squeeze_excite is not None else depthwise
        y = self.project(y)
        y = y + x if self.residual else y
        return (y, depthwise) if self.returns_depthwise else y


def build_layer(layer, returns_depthwise=False, norm_layer=mobilenet_batch_norm, symmetric=False,
                gate_scale=HARD_SIGMOID_SCALE):
    """The block of a planned layer: `ExpandedConv` (also for a fused conv), or `MobileConv` for a plain conv."""
    if layer.op != 'conv':
        return ExpandedConv(layer, returns_depthwise, norm_layer=norm_layer, symmetric=symmetric,
                            gate_scale=gate_scale)
    return MobileConv(layer.in_channels, layer.channels, layer.kernel, layer.stride, layer.rate,
                      activation=layer.activation, norm_layer=norm_layer, symmetric=symmetric)


class MobileNetBackbone(nn.HybridBlock):
    """A DeepLab MobileNet backbone: input NCHW float32 normalised to [-1, 1]; returns a tuple.

    variant: official model_variant, 'mobilenet_v2', 'mobilenet_v3_large_seg', 'mobilenet_v3_small_seg' or
    'mobilenet_edgetpu'.
    depth_multiplier, divisible_by, min_depth: the official channel rounding (`mobilenet_spec.channel_rounding`;
    None: DeepLab's). output_stride: 8, 16 or 32.
    taps: decoder strides (4, 8, 16); the output is the depthwise output of the official DECODER_END_POINTS
    layer of each, in the order of `taps`, then the final features (the official final end point: v2
    layer_18, 320 channels; v3-large layer_17 (Conv_1), 480; v3-small layer_13 (Conv_1), 288; EdgeTPU
    layer_24 (Conv_1), 1280, at 1.0).
    A tap's layer keeps its place in the network, so at an output stride below the tap's stride its
    features are at the output stride (as the official end point is).
    Attributes: `channels` (final), `tap_channels` ({stride: channels} of `taps`), `layers` (the blocks).
    norm_layer: `norm_layer(in_channels=..., epsilon=...)`; the default has the official decay 0.997.
    finegrain: an ImageNet classifier's backbone in slim's finegrain mode (`plan_layers`; EdgeTPU's Conv_1).
    """

    def __init__(self, variant='mobilenet_v2', depth_multiplier=1.0, output_stride=16, taps=(), divisible_by=None,
                 min_depth=None, norm_layer=mobilenet_batch_norm, finegrain=False, **kwargs):
        super().__init__(**kwargs)
        decoder_layers = variant_of(variant).decoder_layers
        unknown = [stride for stride in taps if stride not in decoder_layers]
        if unknown:
            raise ValueError('%s has decoder end points at strides %s, not %s'
                             % (variant, sorted(decoder_layers), unknown))
        self.variant, self.output_stride, self.taps = variant, output_stride, tuple(taps)
        self.tap_layers = {stride: 'layer_%d' % decoder_layers[stride] for stride in self.taps}
        self.plan = plan_layers(variant, depth_multiplier, output_stride, divisible_by, min_depth, finegrain=finegrain)
        self.layers = []
        with self.name_scope():
            for layer in self.plan:
                block = build_layer(layer, layer.name in self.tap_layers.values(), norm_layer)
                self.register_child(block, layer.name)
                self.layers.append((layer.name, block))
        inner = {layer.name: layer.expanded or layer.in_channels for layer in self.plan}
        self.tap_channels = {stride: inner[name] for stride, name in self.tap_layers.items()}
        self.channels = self.plan[-1].channels

    def hybrid_forward(self, F, x):
        found = {}
        for name, block in self.layers:
            if getattr(block, 'returns_depthwise', False):
                x, found[name] = block(x)
            else:
                x = block(x)
        return tuple(found[self.tap_layers[stride]] for stride in self.taps) + (x,)


class MobileNetClassifier(nn.HybridBlock):
    """A slim MobileNet ImageNet classifier (official `mobilenet_v2.mobilenet`, scope MobilenetV2;
    `mobilenet_v3.edge_tpu`, scope MobilenetEdgeTPU).

    Input: NCHW float32 RGB pixel values in [0, 255] (normalised inside to [-1, 1]). Output: N x
    num_classes logits (class 0 is background in the official 1001-class checkpoints). The backbone at
    output stride 32 (its parameters are DeepLab's), the conv def's layers after DeepLab's final end point
    (MobileNet-v2: `layer_19`, official Conv_1, 1x1 to 1280 + BN + ReLU6; EdgeTPU: none, DeepLab's
    backbone ends with its Conv_1), global mean, dropout (keep 0.8, training only), `logits` (official
    Logits/Conv2d_1c_1x1, 1x1 with bias). Channels are rounded as slim's classifier does (divisible by 8,
    at least 8); finegrain: Conv_1 keeps 1280 channels below multiplier 1 (`plan_layers`).
    """

    def __init__(self, num_classes=1001, depth_multiplier=1.0, variant='mobilenet_v2', norm_layer=mobilenet_batch_norm,
                 finegrain=False, **kwargs):
        super().__init__(**kwargs)
        whole = plan_layers(variant, depth_multiplier, 32, 8, 8, last=len(variant_of(variant).layers),
                            finegrain=finegrain)
        self.head_layers = []
        with self.name_scope():
            self.backbone = MobileNetBackbone(variant, depth_multiplier, 32, divisible_by=8, min_depth=8,
                                              norm_layer=norm_layer, finegrain=finegrain)
            for layer in whole[variant_of(variant).final_layer:]:
                block = build_layer(layer, norm_layer=norm_layer)
                self.register_child(block, layer.name)
                self.head_layers.append(block)
            self.dropout = nn.Dropout(1.0 - DROPOUT_KEEP)
            self.logits = biased_conv(whole[-1].channels, num_classes, weight_init=WEIGHT_INIT)

    def hybrid_forward(self, F, x):
        features = self.backbone(normalize_pixels(F, x))[-1]
        for block in self.head_layers:
            features = block(features)
        pooled = F.mean(features, axis=(2, 3), keepdims=True)  # official global_pool: a full-size avg_pool
        return F.flatten(self.logits(self.dropout(pooled)))
