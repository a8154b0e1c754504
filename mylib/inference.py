"""Inference as the official DeepLab evaluation does it: padding, multi-scale + flip, `predict`.

The official `predict_labels_multi_scale` (research/deeplab/model.py):
  - the image is padded at the bottom and right to the crop (513 x 513) with the mean pixel 127.5;
  - for each scale s the padded crop is resized (bilinear, corners aligned) to int((513 - 1) * s + 1)
    per side, and the network's stride-4 logits are resized to int((513 - 1) * max(1, s) / 4 + 1),
    then to the crop;
  - the flip branch flips the padded crop left-right, and flips its logits back;
  - the softmax of every branch is averaged; the label is the argmax.
"""
import os

import mxnet as mx
import numpy as np

from .data.specs import DEFAULT_CROP
from .models import DecoderLogits
from .models.layers import MEAN_PIXEL, mean_pixel

# oneDNN 2.4 (inside MXNet 1.9.1) runs 1x1 convolutions with its AVX-512 "brgemm" kernels in NHWC and
# depthwise ones in a blocked layout, so every separable convolution pays two layout reorders (about 50 of
# 610 ms at OS16 on 2 cores, bench/inference.py). Capped at AVX512_MIC (its avx512_common kernels) every
# convolution keeps one blocked layout. A cap above the CPU's own ISA changes nothing.
FAST_ONEDNN_ISA = 'AVX512_MIC'
ONEDNN_ISA_VARIABLE = 'DNNL_MAX_CPU_ISA'  # oneDNN 2.4 reads this name only (ONEDNN_MAX_CPU_ISA came later)


def scale_dimension(size, scale):
    """The official `scale_dimension`: int((size - 1) * scale + 1)."""
    return int((float(size) - 1.0) * scale + 1.0)


def resize(x, size, align_corners=True):
    """Bilinear resize of NCHW `x` to `size` (height, width), corners aligned (tf resize_bilinear) by default."""
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return mx.nd.contrib.BilinearResize2D(x, height=int(size[0]), width=int(size[1]), align_corners=align_corners)


def cap_onednn_isa(isa=FAST_ONEDNN_ISA):
    """Limit oneDNN to `isa` kernels (DNNL_MAX_CPU_ISA) unless the user has set it; return the setting in
    force. oneDNN reads it when it creates its first primitive: call this before any oneDNN work in the
    process (the inference scripts call it first). Only changes speed, and round-off.
    """
    if not os.environ.get(ONEDNN_ISA_VARIABLE):
        os.environ[ONEDNN_ISA_VARIABLE] = isa
    return os.environ[ONEDNN_ISA_VARIABLE]


def uses_onednn(ctx):
    return ctx.device_type == 'cpu' and mx.runtime.Features().is_enabled('MKLDNN')


class LogitsRunner:
    """Runs a DeepLab network for inference and returns its logits before the final upsampling (NCHW NDArray,
    at `net.logits_stride`).

    The graph is built once on the first call: hybridized with static memory, and on a CPU with
    oneDNN also fused (convolution + batch norm + ReLU + sum, exact to about 1e-5 of the logits).
    The input may change size between calls. `fuse=False` keeps MXNet's plain operators.

    The fused graph folds the batch norms into the convolution weights when it is built: after the
    network's parameters change (training), build a new runner (the plain graph follows updates).
    """

    def __init__(self, net, fuse=True):
        self.view = DecoderLogits(net)
        self.fuse = fuse
        self.ready = False

    def __call__(self, x):
        if not self.ready:
            if self.fuse and uses_onednn(x.context):
                self.view.optimize_for(x, backend='MKLDNN', static_alloc=True, static_shape=True)
            else:
                self.view.hybridize(static_alloc=True, static_shape=True)
            self.ready = True
        return self.view(x)


OWN_SIZE = (1, 1)  # a crop that no image is smaller than: each image runs at its own size, unpadded
OWN_SIZE_LIMIT = 2048  # predict.py at OWN_SIZE shrinks a photo whose long side is larger (Cityscapes: 2048)


def pad_to_crop(image, crop_size=DEFAULT_CROP, value=MEAN_PIXEL):
    """H x W x 3 uint8 RGB -> 3 x Hc x Wc float32, padded at the bottom and right with `value` (one value,
    or one per channel: `layers.mean_pixel` of the network's normalisation).

    The crop grows to the image where the image is larger (then nothing is resized).
    """
    height, width = image.shape[:2]
    canvas = np.empty((3, max(crop_size[0], height), max(crop_size[1], width)), np.float32)
    canvas[:] = np.asarray(value, np.float32).reshape(-1, 1, 1)
    canvas[:, :height, :width] = np.asarray(image, np.float32).transpose(2, 0, 1)
    return canvas


def branch_sizes(canvas_size, scale, logits_stride=4, official=True):
    """(network input size, intermediate logits size) of one scale, as the official evaluation; with
    official=False as the PyTorch originals (DeepLab-v3-plus-cityscapes' evaluate.py): the input at
    int(size * scale), its logits resized to that input's size (the network's own final upsampling), then
    to the canvas."""
    if not official:
        scaled = tuple(int(side * scale) for side in canvas_size)
        return scaled, scaled
    scaled = tuple(scale_dimension(side, scale) for side in canvas_size)
    logits = tuple(scale_dimension(side, max(1.0, scale) / logits_stride) for side in canvas_size)
    return scaled, logits


def average_probabilities(runner, canvases, scales=(1.0,), flip=False):
    """Mean softmax over all scales and flips: N x C x Hc x Wc NDArray, for N x 3 x Hc x Wc canvases.

    `canvases` are padded images (pixel values 0-255) on the device the runner's network is on.
    A network converted from PyTorch follows its original: see `branch_sizes`; its resizes align corners
    as its spec says.
    """
    canvas_size = canvases.shape[2:]
    spec = runner.view.net.spec
    official, corners = not spec.from_pytorch, spec.align_corners
    total, branches = None, 0
    for scale in scales:
        scaled_size, logits_size = branch_sizes(canvas_size, scale, runner.view.net.logits_stride, official)
        scaled = resize(canvases, scaled_size, corners) if scale != 1.0 else canvases
        for flipped in ((False, True) if flip else (False,)):
            inputs = mx.nd.flip(scaled, axis=3) if flipped else scaled
            logits = resize(runner(inputs), logits_size, corners if not official else True)
            if flipped:
                logits = mx.nd.flip(logits, axis=3)
            probabilities = mx.nd.softmax(resize(logits, canvas_size, corners), axis=1)
            total = probabilities if total is None else total + probabilities
            branches += 1
    return total / branches


def predict(net, image, scales=(1.0,), flip=False, crop_size=DEFAULT_CROP, runner=None):
    """Segment one image as the official evaluation does.

    image: H x W x 3 uint8 RGB (no larger than `crop_size`, or the crop grows to it).
    Returns (labels H x W int64, probabilities C x H x W float32 averaged over scales and flips).
    Pass a `LogitsRunner(net)` as `runner` to reuse its built graph over many calls.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError('predict takes an H x W x 3 RGB image, not an array of shape %s' % (image.shape,))
    runner = runner or LogitsRunner(net)
    ctx = next(iter(net.collect_params().values())).list_ctx()[0]
    canvas = mx.nd.array(pad_to_crop(image, crop_size, mean_pixel(net.spec.input_normalization))[None], ctx=ctx)
    probabilities = average_probabilities(runner, canvas, scales, flip)[0].asnumpy()
    probabilities = probabilities[:, :image.shape[0], :image.shape[1]]
    return probabilities.argmax(axis=0), probabilities
