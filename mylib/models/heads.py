"""The DeepLab heads: ASPP (with image pooling), the dense prediction cell, the decoders.

They follow the official `research/deeplab/model.py` (`extract_features`, `refine_by_decoder`,
`_decoder_with_concat_merge`, `_decoder_with_sum_merge`) and `core/dense_prediction_cell.py`. A head
sees only named features (the backbone's output, its decoder skips) and takes every size from them.
Batch norm here is the official head's: decay 0.9997, epsilon 1e-5 (`HEAD_BN_EPSILON`).

`style` is what the PyTorch DeepLabs do otherwise with the same heads: the keyword arguments of every
non-separable `ConvBN` (bias, relu_slope, bn_epsilon; {} is the official head). `align_corners` is their
resizes'. Where they concatenate in another order, the converter reorders the weights' input channels.
"""
from mxnet.gluon import nn

from .init import TruncatedNormal
from .layers import (
    HEAD_BN_EPSILON,
    ConvBN,
    SeparableConv,
    activation,
    batch_norm,
    biased_conv,
    normalization,
    resize_like,
)

SKIP_PROJECTION = 48  # official refine_by_decoder: projected_filters = 48 (concat merge)
# official split_separable_conv2d: depthwise and pointwise truncated normal, stddev 0.33 and 0.06.
# The head's other convolutions keep slim's Xavier.
SEPARABLE_INITS = (TruncatedNormal(0.33), TruncatedNormal(0.06))
DROPOUT_KEEP = 0.9  # official concat_projection_dropout and dense prediction cell keep_prob (training only)


def q_sigmoid(F, x):
    """The official `utils.q_sigmoid`, a hard sigmoid: relu6(x + 3) * 0.16667 (the constant as written)."""
    return F.clip(x + 3.0, 0.0, 6.0) * 0.16667


class ImagePooling(nn.HybridBlock):
    """The image-level feature: average pool, 1x1 conv, spread back over the feature map.

    window None: the mean of the whole map (the official graph at crop size = input size). window (h, w)
    with `stride`: a fixed average pool ('VALID'), as `image_pooling_crop_size` makes it; its output is
    resized to the map bilinearly with corners aligned. gate None: conv + BN + ReLU (the ASPP branch);
    'sigmoid' or 'q_sigmoid': conv with bias and that activation (the squeeze-and-excitation gate).
    Parameters are `conv.*` (and `bn.*`), as a ConvBN's.
    """

    def __init__(self, in_channels, channels, window=None, stride=(1, 1), gate=None, norm_layer=batch_norm,
                 style=None, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.window, self.stride, self.gate = window, tuple(stride), gate
        style = style or {}
        self.relu_slope, self.align_corners = style.get('relu_slope', 0.0), align_corners
        with self.name_scope():
            if gate is None:
                self.conv = nn.Conv2D(channels, 1, use_bias=style.get('bias', False), in_channels=in_channels)
                self.bn = normalization(channels, norm_layer, style.get('bn_epsilon', HEAD_BN_EPSILON))
            else:
                self.conv = biased_conv(in_channels, channels)
                self.bn = None

    def hybrid_forward(self, F, x):
        if self.window is None:
            pooled = F.Pooling(x, kernel=(1, 1), global_pool=True, pool_type='avg')
        else:
            pooled = F.Pooling(x, kernel=self.window, stride=self.stride, pool_type='avg', pooling_convention='valid')
        y = self.conv(pooled)
        if self.gate is None:
            y = activation(F, self.bn(y), self.relu_slope)
        else:
            y = q_sigmoid(F, y) if self.gate == 'q_sigmoid' else F.sigmoid(y)
        if self.window is None:
            return F.broadcast_like(y, x, lhs_axes=(2, 3), rhs_axes=(2, 3))  # resizing 1x1 is a copy
        return resize_like(F, y, x, self.align_corners)


class ASPP(nn.HybridBlock):
    """Atrous spatial pyramid pooling: [image pooling, 1x1, one 3x3 per rate] -> 1x1 projection.

    The official `extract_features` with aspp_with_batch_norm: every branch conv + BN + ReLU to
    `filters` channels; separable 3x3s (aspp_with_separable_conv) or plain ones; the concat projection
    with dropout (keep 0.9) in training. With `squeeze_excite` (the MobileNet-v3 head) the image feature
    is not a branch but a gate that multiplies the result.
    image_pooling: None (no image-level feature), or dict(window=..., stride=..., gate=...) for ImagePooling.
    style, align_corners: see the module's docstring. projection_padding: zeros around the projection's
    input (DeepLab-v3-plus-cityscapes: 1, see `ModelSpec.aspp_projection_padding`).
    """

    def __init__(self, in_channels, rates=(), filters=256, separable=True, image_pooling=None,
                 squeeze_excite=False, concat_projection=True, norm_layer=batch_norm, dropout_keep=DROPOUT_KEEP,
                 style=None, align_corners=True, projection_padding=0, **kwargs):
        super().__init__(**kwargs)
        self.squeeze_excite = squeeze_excite
        self.atrous_branches = []
        conv = dict(style or {}, norm_layer=norm_layer)
        with self.name_scope():
            self.image_pooling = (ImagePooling(in_channels, filters, norm_layer=norm_layer, style=style,
                                               align_corners=align_corners, **image_pooling)
                                  if image_pooling is not None else None)
            self.aspp0 = ConvBN(in_channels, filters, **conv)
            for index, rate in enumerate(rates or (), 1):
                branch = (SeparableConv(in_channels, filters, rate=rate, norm_layer=norm_layer,
                                        weight_inits=SEPARABLE_INITS) if separable else
                          ConvBN(in_channels, filters, 3, rate=rate, **conv))
                self.register_child(branch, 'aspp%d' % index)
                self.atrous_branches.append(branch)
            branches = 1 + len(self.atrous_branches) + (self.image_pooling is not None and not squeeze_excite)
            self.projection = (ConvBN(filters * branches, filters, padding=projection_padding, **conv)
                               if concat_projection else None)
            self.dropout = nn.Dropout(1.0 - dropout_keep) if concat_projection else None  # identity at keep 1.0
        self.channels = filters

    def hybrid_forward(self, F, x):
        image = self.image_pooling(x) if self.image_pooling is not None else None
        branches = [] if image is None or self.squeeze_excite else [image]
        branches += [self.aspp0(x)] + [branch(x) for branch in self.atrous_branches]
        y = F.concat(*branches, dim=1) if len(branches) > 1 else branches[0]
        if self.projection is not None:
            y = self.dropout(self.projection(y))
        return y * image if self.squeeze_excite else y


class DensePredictionCell(nn.HybridBlock):
    """The dense prediction cell (`core/dense_prediction_cell.py`) that replaces ASPP in the Xception-71
    Cityscapes releases: separable 3x3 branches, each on the features or on an earlier branch, with
    (height, width) rates multiplied by 16 / output_stride; concat, dropout (keep 0.9, training only,
    before the projection: dropout_on_concat_features), 1x1 projection + BN + ReLU to 256.
    config: the branches, e.g. `spec.DPC_BRANCH5_TOP1_CITYSCAPES`.
    """

    def __init__(self, in_channels, config, output_stride=16, filters=256, norm_layer=batch_norm,
                 dropout_keep=DROPOUT_KEEP, **kwargs):
        super().__init__(**kwargs)
        multiplier = 16 // output_stride  # official: hparams conv_rate_multiplier = 16 // output_stride
        self.inputs, self.branches = [], []
        with self.name_scope():
            for index, branch in enumerate(config):
                rate = tuple(r * multiplier for r in branch['rate'])
                conv = SeparableConv(in_channels if branch['input'] < 0 else filters, filters, rate=rate,
                                     norm_layer=norm_layer, weight_inits=SEPARABLE_INITS)
                self.register_child(conv, 'branch%d' % index)
                self.branches.append(conv)
                self.inputs.append(branch['input'])
            self.dropout = nn.Dropout(1.0 - dropout_keep)
            self.projection = ConvBN(filters * len(self.branches), filters, norm_layer=norm_layer)
        self.channels = filters

    def hybrid_forward(self, F, x):
        outputs = []
        for source, branch in zip(self.inputs, self.branches):
            outputs.append(branch(x if source < 0 else outputs[source]))
        return self.projection(self.dropout(F.concat(*outputs, dim=1)))


class Decoder(nn.HybridBlock):
    """The DeepLab v3+ decoder (concat merge): [features resized to the skip, skip 1x1 to 48] -> two 3x3
    convs (separable, or plain with decoder_use_separable_conv=False) to `filters`. style, align_corners:
    see the module's docstring."""

    def __init__(self, in_channels, skip_channels, filters=256, separable=True, norm_layer=batch_norm, style=None,
                 align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = align_corners
        conv = dict(style or {}, norm_layer=norm_layer)
        with self.name_scope():
            self.feature_projection = ConvBN(skip_channels, SKIP_PROJECTION, **conv)
            if separable:
                self.conv0 = SeparableConv(in_channels + SKIP_PROJECTION, filters, norm_layer=norm_layer,
                                           weight_inits=SEPARABLE_INITS)
                self.conv1 = SeparableConv(filters, filters, norm_layer=norm_layer, weight_inits=SEPARABLE_INITS)
            else:
                self.conv0 = ConvBN(in_channels + SKIP_PROJECTION, filters, 3, **conv)
                self.conv1 = ConvBN(filters, filters, 3, **conv)
        self.channels = filters

    def hybrid_forward(self, F, x, skip):
        skip = self.feature_projection(skip)
        x = F.concat(resize_like(F, x, skip, self.align_corners), skip, dim=1)
        return self.conv1(self.conv0(x))


class SumMergeDecoder(nn.HybridBlock):
    """The decoder with sum merge (`_decoder_with_sum_merge`): one conv of the features resized to the
    skip, plus the skip projected to the same `filters`.

    output_is_logits (the MobileNet-v3 releases): both are 1x1 convs with bias and nothing after them,
    and their sum is the logits. Otherwise the projection is 1x1 + BN + ReLU and the conv a 3x3
    (separable: `split_sep_conv0`, or plain: `conv0`) + BN + ReLU.
    """

    def __init__(self, in_channels, skip_channels, filters, output_is_logits=False, separable=True,
                 norm_layer=batch_norm, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            if output_is_logits:
                self.feature_projection = biased_conv(skip_channels, filters)
                self.conv0 = biased_conv(in_channels, filters)
            else:
                self.feature_projection = ConvBN(skip_channels, filters, norm_layer=norm_layer)
                if separable:
                    self.split_sep_conv0 = SeparableConv(in_channels, filters, norm_layer=norm_layer,
                                                         weight_inits=SEPARABLE_INITS)
                else:
                    self.conv0 = ConvBN(in_channels, filters, 3, norm_layer=norm_layer)
        self.merge_name = 'conv0' if output_is_logits or not separable else 'split_sep_conv0'
        self.channels = filters

    def hybrid_forward(self, F, x, skip):
        skip = self.feature_projection(skip)
        return getattr(self, self.merge_name)(resize_like(F, x, skip)) + skip
