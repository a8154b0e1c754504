"""DeepLab v3+ head: ASPP with image pooling, the stride-4 decoder, and the full model.

Follows the official `research/deeplab/model.py` (`extract_features`, `refine_by_decoder`,
`get_branch_logits`) with the flags of the Xception-65 releases: aspp_with_batch_norm,
aspp_with_separable_conv, decoder_use_separable_conv, add_image_level_feature.
"""
from mxnet.gluon import nn

from .init import TruncatedNormal
from .layers import ConvBN, SeparableConv, batch_norm, normalize_pixels, resize_like
from .xception import XceptionBackbone

HEAD_DEPTH = 256  # official model.py: depth = 256 (ASPP, projection, decoder)
SKIP_PROJECTION = 48  # official refine_by_decoder: 1x1 conv of the skip to 48 channels
DEFAULT_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}  # official DeepLab v3+ train/eval flags
# official split_separable_conv2d: depthwise and pointwise truncated normal, stddev 0.33 and 0.06;
# get_branch_logits: truncated normal 0.01. The head's other convolutions keep slim's Xavier.
SEPARABLE_INITS = (TruncatedNormal(0.33), TruncatedNormal(0.06))
LOGITS_INIT = TruncatedNormal(0.01)
DROPOUT_KEEP = 0.9  # official concat_projection_dropout keep_prob (training only)
BIAS_GRADIENT_MULTIPLIER = 2.0  # official get_model_gradient_multipliers: every variable named `biases`


class ASPP(nn.HybridBlock):
    """Atrous spatial pyramid pooling: [image pooling, 1x1, one separable 3x3 per rate] -> 1x1 to 256.

    Image pooling is the mean over the whole feature map, 1x1 conv + BN + ReLU, spread back over the
    map (a corner-aligned bilinear resize of a 1x1 map is a copy). Dropout (keep 0.9) in training.
    """

    def __init__(self, in_channels, rates, norm_layer=batch_norm, dropout_keep=DROPOUT_KEEP, **kwargs):
        super().__init__(**kwargs)
        self.atrous_branches = []
        with self.name_scope():
            self.image_pooling = ConvBN(in_channels, HEAD_DEPTH, norm_layer=norm_layer)
            self.aspp0 = ConvBN(in_channels, HEAD_DEPTH, norm_layer=norm_layer)
            for index, rate in enumerate(rates, 1):
                branch = SeparableConv(in_channels, HEAD_DEPTH, rate=rate, norm_layer=norm_layer,
                                       weight_inits=SEPARABLE_INITS)
                self.register_child(branch, 'aspp%d' % index)
                self.atrous_branches.append(branch)
            self.projection = ConvBN(HEAD_DEPTH * (2 + len(rates)), HEAD_DEPTH, norm_layer=norm_layer)
            self.dropout = nn.Dropout(1.0 - dropout_keep)  # identity at keep 1.0

    def hybrid_forward(self, F, x):
        pooled = self.image_pooling(F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg'))
        branches = [F.broadcast_like(pooled, x, lhs_axes=(2, 3), rhs_axes=(2, 3)), self.aspp0(x)]
        branches += [branch(x) for branch in self.atrous_branches]
        return self.dropout(self.projection(F.concat(*branches, dim=1)))


class Decoder(nn.HybridBlock):
    """Refines the ASPP output with the stride-4 skip: [ASPP resized to the skip, skip 1x1 to 48] ->
    two separable 3x3 convs to 256."""

    def __init__(self, in_channels, skip_channels, norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.feature_projection = ConvBN(skip_channels, SKIP_PROJECTION, norm_layer=norm_layer)
            self.conv0 = SeparableConv(in_channels + SKIP_PROJECTION, HEAD_DEPTH, norm_layer=norm_layer,
                                       weight_inits=SEPARABLE_INITS)
            self.conv1 = SeparableConv(HEAD_DEPTH, HEAD_DEPTH, norm_layer=norm_layer, weight_inits=SEPARABLE_INITS)

    def hybrid_forward(self, F, x, skip):
        skip = self.feature_projection(skip)
        x = F.concat(resize_like(F, x, skip), skip, dim=1)
        return self.conv1(self.conv0(x))


class DeepLabV3Plus(nn.HybridBlock):
    """DeepLab v3+ with the Xception-65 backbone.

    Input: NCHW float32 RGB pixel values in [0, 255], any height and width (normalised inside, as the
    official graph). Output: logits NCHW at the input's size (bilinear, corners aligned).
    `DecoderLogits(net)` gives them before that final upsampling (stride 4; the output stride when
    `decoder=False`, which is DeepLab v3).

    output_stride: 8 or 16 (the same weights serve both). atrous_rates: the ASPP rates; by default
    (6, 12, 18) at OS16 and (12, 24, 36) at OS8. norm_layer: a batch-norm factory (default
    `layers.batch_norm`: BatchNorm with the official decay), e.g.
    `functools.partial(batch_norm, layer=SyncBatchNorm, num_devices=4)` to train on several devices.
    dropout_keep: the keep probability of the ASPP dropout in training (official 0.9; 1.0 turns it off).
    """

    def __init__(self, num_classes=21, output_stride=16, atrous_rates=None, decoder=True,
                 norm_layer=batch_norm, dropout_keep=DROPOUT_KEEP, **kwargs):
        super().__init__(**kwargs)
        if atrous_rates is None:
            if output_stride not in DEFAULT_RATES:
                raise ValueError('no default atrous_rates for output_stride %r; pass atrous_rates'
                                 % (output_stride,))
            atrous_rates = DEFAULT_RATES[output_stride]
        self.num_classes = num_classes
        self.output_stride = output_stride
        self.atrous_rates = tuple(atrous_rates)
        with self.name_scope():
            self.backbone = XceptionBackbone(output_stride, norm_layer=norm_layer)
            self.aspp = ASPP(self.backbone.channels, self.atrous_rates, norm_layer=norm_layer,
                             dropout_keep=dropout_keep)
            self.decoder = Decoder(HEAD_DEPTH, self.backbone.skip_channels, norm_layer=norm_layer) if decoder else None
            self.logits = nn.Conv2D(num_classes, 1, in_channels=HEAD_DEPTH, weight_initializer=LOGITS_INIT)
        self.logits.bias.wd_mult = 0.0  # official: l2 on convolution weights only
        self.logits.bias.grad_mult = BIAS_GRADIENT_MULTIPLIER  # read by the deeplab_momentum optimizer

    def hybrid_forward(self, F, x):
        return resize_like(F, self.logits_graph(F, x), x)

    def logits_graph(self, F, x):
        """The network up to its logits, before the final upsampling (`F`: mx.nd or mx.sym)."""
        skip, features = self.backbone(normalize_pixels(x))
        x = self.aspp(features)
        if self.decoder is not None:
            x = self.decoder(x, skip)
        return self.logits(x)


class DecoderLogits(nn.HybridBlock):
    """A view of a DeepLabV3Plus that outputs its logits before the final upsampling.

    Same input as the model; output NCHW at stride 4 (at the output stride without a decoder), as the
    official `merged_logits`. It shares the model's parameters, and can be hybridized on its own.
    """

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        return self.net.logits_graph(F, x)
