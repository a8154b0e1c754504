"""DeepLab: a backbone, a context head (ASPP or the dense prediction cell), a decoder, the logits.

`DeepLab(spec)` builds any official release from its `ModelSpec` (official `model.py`: `_get_logits`
= `extract_features` + `refine_by_decoder` + `get_branch_logits`); `DeepLabV3Plus` is the Xception-65
DeepLab v3+ of earlier versions, with the same parameter names.
"""
import functools

from mxnet.gluon import nn

from .backbones import build_backbone
from .heads import ASPP, DROPOUT_KEEP, Decoder, DensePredictionCell, SumMergeDecoder
from .init import TruncatedNormal
from .layers import ConvBN, batch_norm, biased_conv, normalize_pixels, resize_like
from .spec import default_rates, xception65_spec

HEAD_DEPTH = 256  # official model.py: aspp_convs_filters and decoder_filters default to 256
DEFAULT_RATES = {8: default_rates(8), 16: default_rates(16)}
LOGITS_INIT = TruncatedNormal(0.01)  # official get_branch_logits: truncated normal, stddev 0.01


def head_style(spec):
    """The keyword arguments of the head's non-separable ConvBNs (see `heads`): the official graph's
    (no bias, ReLU, epsilon 1e-5), or a PyTorch DeepLab's conv biases, leaky ReLU and batch-norm epsilon."""
    return {'bias': spec.head_conv_bias, 'relu_slope': spec.relu_slope, 'bn_epsilon': spec.head_bn_epsilon}


def context_head(spec, in_channels, norm_layer, dropout_keep):
    """ASPP, or the dense prediction cell, as the spec says (official `extract_features`)."""
    if spec.dense_prediction_cell_config:
        return 'dpc', DensePredictionCell(in_channels, spec.dense_prediction_cell_config, spec.output_stride,
                                          norm_layer=norm_layer, dropout_keep=dropout_keep)
    image_pooling = None
    if spec.add_image_level_feature:
        window = None
        if spec.image_pooling_crop_size is not None:  # official: pool = scale_dimension(crop, 1 / output_stride)
            window = tuple(int((size - 1) / spec.output_stride + 1) for size in spec.image_pooling_crop_size)
        gate = ('q_sigmoid' if spec.image_se_uses_qsigmoid else 'sigmoid') if spec.aspp_with_squeeze_and_excitation \
            else None
        image_pooling = dict(window=window, stride=spec.image_pooling_stride, gate=gate)
    return 'aspp', ASPP(in_channels, spec.atrous_rates, spec.aspp_convs_filters, spec.aspp_with_separable_conv,
                        image_pooling, spec.aspp_with_squeeze_and_excitation, spec.aspp_with_concat_projection,
                        norm_layer=norm_layer, dropout_keep=dropout_keep, style=head_style(spec),
                        align_corners=spec.align_corners, projection_padding=spec.aspp_projection_padding)


def decoder_head(spec, in_channels, skip_channels, norm_layer):
    """The decoder of the spec (concat merge, or sum merge), or None for DeepLab v3."""
    if not spec.decoder_output_stride:
        return None
    if spec.decoder_use_sum_merge:
        return SumMergeDecoder(in_channels, skip_channels, spec.decoder_filters, spec.decoder_output_is_logits,
                               spec.decoder_use_separable_conv, norm_layer=norm_layer)
    return Decoder(in_channels, skip_channels, spec.decoder_filters, spec.decoder_use_separable_conv,
                   norm_layer=norm_layer, style=head_style(spec), align_corners=spec.align_corners)


class DeepLab(nn.HybridBlock):
    """Any official DeepLab release, built from its `ModelSpec`.

    Input: NCHW float32 RGB pixel values in [0, 255], any height and width (normalised inside as the
    original: to [-1, 1] for the official graph, torchvision's ImageNet normalisation for the PyTorch
    DeepLabs). Output: logits NCHW at the input's size (bilinear; corners aligned unless the spec says not).
    `DecoderLogits(net)` gives them before that final upsampling (the official `merged_logits`).
    Children: `backbone`, `aspp` or `dpc`, `decoder` (or None), `output_conv` (torchvision's 3x3 before
    the logits, else None), `logits` (None when the decoder's output is the logits). norm_layer: a
    batch-norm factory (see `layers.batch_norm`). dropout_keep: the keep probability of the head's dropout
    in training (official 0.9; 1.0 turns it off). bn_momentum: MXNet's momentum of every batch norm (None:
    the official decays, 0.9997 in the head, the backbone's own).
    """

    def __init__(self, spec, norm_layer=batch_norm, dropout_keep=DROPOUT_KEEP, bn_momentum=None, **kwargs):
        super().__init__(**kwargs)
        if len(spec.decoder_output_stride or ()) > 1:
            raise ValueError('decoder_output_stride %s: one decoder stage is built (every official release has one)'
                             % (spec.decoder_output_stride,))
        self.spec = spec
        self.num_classes = spec.num_classes
        self.output_stride = spec.output_stride
        with self.name_scope():
            self.backbone = build_backbone(spec, spec.decoder_output_stride or (), norm_layer, bn_momentum)
            if bn_momentum is not None:
                norm_layer = functools.partial(norm_layer, momentum=bn_momentum)
            name, head = context_head(spec, self.backbone.channels, norm_layer, dropout_keep)
            self.aspp, self.dpc = (head, None) if name == 'aspp' else (None, head)
            skip_channels = [self.backbone.tap_channels[stride] for stride in spec.decoder_output_stride or ()]
            self.decoder = decoder_head(spec, head.channels, skip_channels[0] if skip_channels else None, norm_layer)
            channels = self.decoder.channels if self.decoder is not None else head.channels
            self.output_conv = (ConvBN(channels, HEAD_DEPTH, 3, norm_layer=norm_layer, **head_style(spec))
                                if spec.head_output_conv else None)
            channels = HEAD_DEPTH if spec.head_output_conv else channels
            self.logits = (None if spec.decoder_output_is_logits else
                           biased_conv(channels, spec.num_classes, weight_init=LOGITS_INIT) if spec.logits_bias else
                           nn.Conv2D(spec.num_classes, 1, use_bias=False, in_channels=channels,
                                     weight_initializer=LOGITS_INIT))

    def hybrid_forward(self, F, x):
        return resize_like(F, self.logits_graph(F, x), x, self.spec.align_corners)

    @property
    def minimum_input(self):
        """The smallest (height, width) the network takes: the image-pooling crop of a fixed pooling window
        (MobileNet-v3 releases: 769 x 769; the official graph's window is that crop at the output stride),
        else the backbone's own minimum (VoVNet's and DenseNet's pools need a few pixels), or (1, 1)."""
        crop = tuple(self.spec.image_pooling_crop_size or (1, 1)) if self.aspp is not None else (1, 1)
        own = getattr(self.backbone, 'minimum_input', (1, 1))
        return max(crop[0], own[0]), max(crop[1], own[1])

    @property
    def logits_stride(self):
        """The stride of the logits before the final upsampling (official multi_scale_logits: the smallest
        decoder output stride, or the output stride without a decoder)."""
        spec = self.spec
        return min(spec.decoder_output_stride) if spec.decoder_output_stride else spec.output_stride

    def class_parameters(self):
        """Names of the parameters whose shape depends on the number of classes: the logits, or the decoder
        when its output is the logits (they are not loaded from weights of another class count)."""
        layer = 'logits' if self.logits is not None else 'decoder'  # the child that predicts the classes
        return ['%s.%s' % (layer, name) for name in getattr(self, layer)._collect_params_with_prefix()]

    def logits_graph(self, F, x):
        """The network up to its logits, before the final upsampling (`F`: mx.nd or mx.sym)."""
        *skips, features = self.backbone(normalize_pixels(F, x, self.spec.input_normalization))
        x = (self.aspp if self.aspp is not None else self.dpc)(features)
        if self.decoder is not None:
            x = self.decoder(x, skips[0])
        if self.output_conv is not None:
            x = self.output_conv(x)
        return self.logits(x) if self.logits is not None else x


class DeepLabV3Plus(DeepLab):
    """DeepLab v3+ with the Xception-65 backbone, as the official Xception-65 releases.

    output_stride: 8 or 16 (the same weights serve both). atrous_rates: the ASPP rates; by default
    (6, 12, 18) at OS16 and (12, 24, 36) at OS8. decoder=False is DeepLab v3. See `DeepLab` for the
    input, output, norm_layer (e.g. `functools.partial(batch_norm, layer=SyncBatchNorm, num_devices=4)`
    to train on several devices) and dropout_keep.
    """

    def __init__(self, num_classes=21, output_stride=16, atrous_rates=None, decoder=True,
                 norm_layer=batch_norm, dropout_keep=DROPOUT_KEEP, **kwargs):
        super().__init__(xception65_spec(num_classes, output_stride, atrous_rates, decoder), norm_layer=norm_layer,
                         dropout_keep=dropout_keep, **kwargs)
        self.atrous_rates = self.spec.atrous_rates


class DecoderLogits(nn.HybridBlock):
    """A view of a DeepLab network that outputs its logits before the final upsampling.

    Same input as the model; output NCHW at the decoder's stride (at the output stride without a
    decoder), as the official `merged_logits`. It shares the model's parameters, and can be hybridized
    on its own.
    """

    def __init__(self, net, **kwargs):
        super().__init__(**kwargs)
        self.net = net

    def hybrid_forward(self, F, x):
        return self.net.logits_graph(F, x)
