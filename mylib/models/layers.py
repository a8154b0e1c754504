"""Building blocks shared by the Xception backbone and the DeepLab head.

Every convolution of DeepLab v3+ (Xception-65) is a bias-free convolution followed by batch norm
(slim's `conv2d` / `separable_conv2d` under a batch-norm arg scope), except the two logits layers.
A separable convolution is a depthwise 3x3 + BN, then a pointwise 1x1 + BN, as two layers with their
own BN (the official `_split_separable_conv2d`).
"""
from mxnet.gluon import nn

# Official batch-norm settings. The backbone uses `xception_arg_scope` (decay 0.9997, epsilon 1e-3);
# image pooling, ASPP, projection and decoder use model.py's (decay 0.9997, epsilon 1e-5).
BN_MOMENTUM = 0.9997
BACKBONE_BN_EPSILON = 1e-3
HEAD_BN_EPSILON = 1e-5


def batch_norm(in_channels, epsilon, momentum=BN_MOMENTUM, layer=nn.BatchNorm, **kwargs):
    """The default `norm_layer`: `layer` (nn.BatchNorm, or contrib SyncBatchNorm) with the official decay.

    Other factories take (in_channels, epsilon) the same way, e.g. for four devices with fixed statistics:
    `functools.partial(batch_norm, layer=SyncBatchNorm, num_devices=4)`, `partial(batch_norm,
    use_global_stats=True)`. `momentum` is MXNet's (the weight of the old running value).
    """
    return layer(in_channels=in_channels, epsilon=epsilon, momentum=momentum, **kwargs)


def same_padding(kernel_size, rate=1):
    """Padding (on each side) that the official graph applies to a `kernel_size` conv at `rate`.

    Stride-1 convolutions use TF 'SAME': total padding k_eff - 1 with k_eff = k + (k - 1)(rate - 1).
    Strided convolutions use the official `fixed_padding` instead of 'SAME': (k_eff - 1) // 2 before
    and the rest after, then 'VALID'. For the odd kernels of this network (1 and 3) both are
    k_eff // 2 on each side, which is MXNet's symmetric `pad`. (TF's own 'SAME' with stride 2 would pad
    (0, 1) on even inputs; the official code avoids it and so do we.) `rate` may be (height, width), as
    in the dense prediction cell; the padding then is a pair too.
    """
    if isinstance(rate, (tuple, list)):
        return tuple(same_padding(kernel_size, axis_rate) for axis_rate in rate)
    effective = kernel_size + (kernel_size - 1) * (rate - 1)
    if effective % 2 == 0:
        raise ValueError('even kernels pad asymmetrically; this network has none (kernel %d, rate %d)'
                         % (kernel_size, rate))
    return effective // 2


BIAS_GRADIENT_MULTIPLIER = 2.0  # official train_utils.get_model_gradient_multipliers: every variable named `biases`


def biased_conv(in_channels, channels, kernel_size=1, weight_init=None):
    """A convolution with bias and neither batch norm nor activation (slim.conv2d with normalizer_fn=None):
    the logits, and the image-pooling gate of the MobileNet-v3 head. As the official training treats every
    `biases`: no weight decay on the bias (slim's l2 regularizer is on weights only) and its gradient x2
    (read by the deeplab_momentum optimizer)."""
    conv = nn.Conv2D(channels, kernel_size, padding=same_padding(kernel_size), in_channels=in_channels,
                     weight_initializer=weight_init)
    conv.bias.wd_mult = 0.0
    conv.bias.grad_mult = BIAS_GRADIENT_MULTIPLIER
    return conv


def normalization(channels, norm_layer=batch_norm, epsilon=HEAD_BN_EPSILON):
    """`norm_layer(in_channels=channels, epsilon=epsilon)`, without weight decay on any of its parameters
    (gamma, beta, the running statistics), as the official training (no l2 on batch norm)."""
    bn = norm_layer(in_channels=channels, epsilon=epsilon)
    for param in bn.collect_params().values():
        param.wd_mult = 0.0
    return bn


class ConvBN(nn.HybridBlock):
    """Convolution, batch norm, and optionally ReLU (NCHW in, NCHW out).

    `groups=in_channels` (with `channels=in_channels`) makes it the depthwise half of a separable
    convolution. `norm_layer(in_channels=..., epsilon=...)` builds the batch norm (see `batch_norm`).
    weight_init: the convolution's initializer (None: the network's default, slim's Xavier).
    bias: the convolution has a bias (the official graph's have none; DeepLab-v3-plus-cityscapes' head
    has them). relu_slope: the ReLU's negative slope (0: ReLU; 0.01: InPlaceABN's leaky ReLU).
    padding: zeros on each side (None: the official graph's, `same_padding`). conv_class: nn.Conv2D or a
    subclass taking its arguments (`tf_same.SameStride2Conv2D`).

    Weight decay as the official training applies it (`wd_mult`): on the convolution weights, except
    depthwise ones (official regularize_depthwise=False); never on batch norm.
    """

    def __init__(self, in_channels, channels, kernel_size=1, stride=1, rate=1, groups=1, relu=True,
                 bn_epsilon=HEAD_BN_EPSILON, norm_layer=batch_norm, weight_init=None, bias=False, relu_slope=0.0,
                 padding=None, conv_class=nn.Conv2D, **kwargs):
        super().__init__(**kwargs)
        self.relu, self.relu_slope = relu, relu_slope
        with self.name_scope():
            self.conv = conv_class(channels, kernel_size, strides=stride,
                                   padding=same_padding(kernel_size, rate) if padding is None else padding,
                                   dilation=rate, groups=groups, use_bias=bias, in_channels=in_channels,
                                   weight_initializer=weight_init)
            self.bn = normalization(channels, norm_layer, bn_epsilon)
        self.conv.weight.wd_mult = 0.0 if groups > 1 else 1.0
        if bias:
            self.conv.bias.wd_mult = 0.0

    def hybrid_forward(self, F, x):
        x = self.bn(self.conv(x))
        return activation(F, x, self.relu_slope) if self.relu else x


def pooled_stage_plan(output_stride, stages=3, stem_stride=4):
    """[(pooled, rate)] of a backbone whose first stage runs at `stem_stride` and whose `stages` later
    stages each start by pooling by 2 (VoVNet, DenseNet): a stage pools while the stride stays within
    `output_stride`, else it runs at twice the previous rate instead."""
    if output_stride not in (8, 16, 32):
        raise ValueError('output stride %r: use 8, 16 or 32' % (output_stride,))
    plan, stride, rate = [(False, 1)], stem_stride, 1
    for _ in range(stages):
        stride, rate, step = stride_or_dilation(stride, rate, 2, output_stride)
        plan.append((step == 2, rate))
    return plan


def stride_or_dilation(stride, rate, step, output_stride):
    """(stride, rate, step taken) after a layer that would subsample by `step` (the PyTorch backbones' rule:
    torchvision's replace_stride_with_dilation): past `output_stride` it keeps stride 1 and multiplies the
    rate by `step` instead."""
    if stride * step > output_stride:
        return stride, rate * step, 1
    return stride * step, rate, step


def smallest_side(fits, limit=4096):
    """The smallest input side for which `fits(side)` (the sizes through a backbone's pools stay valid)."""
    return next(side for side in range(1, limit) if fits(side))


def activation(F, x, relu_slope=0.0):
    """ReLU, or the leaky ReLU of that negative slope."""
    if relu_slope:
        return F.LeakyReLU(x, act_type='leaky', slope=relu_slope)
    return F.Activation(x, act_type='relu')


class SeparableConv(nn.HybridBlock):
    """Depthwise 3x3 conv + BN, then pointwise 1x1 conv + BN, each optionally followed by ReLU.

    `relu=True` is the head's form and Xception's exit block 2 (ReLU after each BN); `relu=False`
    is the other Xception units, which apply ReLU to the input instead (see `XceptionUnit`).
    The stride and the atrous rate are the depthwise convolution's. weight_inits: the initializers of
    the (depthwise, pointwise) weights (None: the network's default).
    """

    def __init__(self, in_channels, channels, stride=1, rate=1, relu=True, bn_epsilon=HEAD_BN_EPSILON,
                 norm_layer=batch_norm, weight_inits=(None, None), **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.depthwise = ConvBN(in_channels, in_channels, 3, stride=stride, rate=rate,
                                    groups=in_channels, relu=relu, bn_epsilon=bn_epsilon,
                                    norm_layer=norm_layer, weight_init=weight_inits[0])
            self.pointwise = ConvBN(in_channels, channels, 1, relu=relu, bn_epsilon=bn_epsilon,
                                    norm_layer=norm_layer, weight_init=weight_inits[1])

    def hybrid_forward(self, F, x):
        return self.pointwise(self.depthwise(x))


def resize_like(F, x, reference, align_corners=True):
    """Bilinear resize of `x` (NCHW) to the height and width of `reference`, corners aligned by default.

    This is the official `_resize_bilinear` (tf.image.resize_bilinear, align_corners=True). The
    official targets `int((size - 1) * scale + 1)` equal the sizes the strided convolutions produce,
    so taking the size from the tensor that `x` is combined with is the same thing for any input.
    align_corners=False is PyTorch's F.interpolate(..., align_corners=False) (half-pixel centres).
    """
    return F.contrib.BilinearResize2D(x, like=reference, mode='like', align_corners=align_corners)


MEAN_PIXEL = 127.5  # official: the padding value of evaluation and augmentation; 0 after `normalize_pixels`


IMAGENET_MEAN = (0.485, 0.456, 0.406)  # torchvision's Normalize of ImageNet models, on RGB / 255
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_pixels(F, x, normalization='unit_range'):
    """RGB pixel values in [0, 255] (NCHW) to the network's input (`F`: mx.nd or mx.sym).

    'unit_range': to [-1, 1], as the official `_preprocess_zero_mean_unit_range`; the padding value of the
    official evaluation, the mean pixel 127.5, becomes 0. 'imagenet': (x / 255 - mean) / std per channel, as
    the PyTorch originals' ToTensor + Normalize; their mean colour (`mean_pixel`) becomes 0.
    """
    if normalization == 'unit_range':
        return x * (2.0 / 255.0) - 1.0
    if normalization == 'imagenet':
        channels = F.split(x, num_outputs=3, axis=1)
        return F.concat(*[(channels[index] / 255.0 - mean) / std
                          for index, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))], dim=1)
    raise ValueError('unknown input normalization %r' % (normalization,))


def mean_pixel(normalization='unit_range'):
    """The RGB 0-255 value that `normalize_pixels` makes 0, per channel (r, g, b): what evaluation pads with."""
    if normalization == 'imagenet':
        return tuple(255.0 * mean for mean in IMAGENET_MEAN)
    return (MEAN_PIXEL,) * 3
