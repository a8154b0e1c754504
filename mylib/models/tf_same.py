"""TF 'SAME' padding for stride-2 operators, exact at both input parities and free of shape branches.

TF's 'SAME' with stride 2 and an odd kernel k >= 3 pads asymmetrically when the input is even:
total padding (out - 1) * 2 + k - H with out = ceil(H / 2), the smaller half before. Odd H: (k - 1) / 2
on each side. Even H: one less before than after (3x3: 0 before, 1 after). MXNet pads symmetrically, and
a hybridized graph cannot look at H to choose. In both cases, though, the windows TF keeps are centred on
rows H - 1, H - 3, ... (every second row counted from the END), so the exact result is the operator at
stride 1 with symmetric padding (k - 1) / 2, then every second row and column taken from the end.
It costs the operator at full resolution (the ResNet root's pool at a 513x513 input: about 60 ms of CPU
more than a plain stride-2 pool; reversing the full-resolution map instead would cost twice that); use it
only where the official graph uses 'SAME' with a stride (slim's `conv2d_same` avoids it with explicit padding).

A dense convolution is too costly to run at full resolution (EdgeTPU-MobileNet's 3x3 stride-2 expand convs:
four times their work). Counted from the end, TF's windows are those of a symmetric stride-2 convolution
counted from the start, so `SameStride2Conv2D` runs the convolution at stride 2 on the input with its rows
and columns reversed, with the kernel reversed too (a convolution of reversed data is the reversed
convolution with the reversed kernel), and reverses the result: three cheap slices instead of 4x the work.
"""
from mxnet.gluon import nn

ALL = (None, None, None, None)


def every_second_from_end(F, x):
    """Rows and columns H - 1, H - 3, ... (and W - 1, W - 3, ...) of NCHW `x`, in increasing order.

    A slice with step -2 from the last row and column, then one with step -1 to restore the order (as
    two slices take about a quarter of the time of slice + `F.reverse` in MXNet 1.9). mxnet 1.9's ONNX
    exporter translates no negative step: at a fixed size this is the slice with step 2 from (H - 1) % 2 and
    (W - 1) % 2, which an export can put in its place.
    """
    backwards = F.slice(x, begin=ALL, end=ALL, step=(1, 1, -2, -2))
    return F.slice(backwards, begin=ALL, end=ALL, step=(1, 1, -1, -1))


def same_max_pool(F, x, kernel_size=3):
    """TF `max_pool(x, kernel_size, stride=2, padding='SAME')` on NCHW `x`, for any H and W.

    TF pads max pooling with -inf; MXNet's max pooling ignores its padding, which is the same thing.
    Output: ceil(H / 2) x ceil(W / 2), as TF's.
    """
    if kernel_size % 2 == 0 or kernel_size < 3:
        raise ValueError('same_max_pool is exact for odd kernels of 3 or more, not %r' % (kernel_size,))
    pad = kernel_size // 2
    pooled = F.Pooling(x, kernel=(kernel_size, kernel_size), stride=(1, 1), pad=(pad, pad), pool_type='max')
    return every_second_from_end(F, pooled)


def reversed_rows_and_columns(F, x):
    """NCHW (or OIHW) `x` with its rows and columns in reverse order: a slice with step -1."""
    return F.slice(x, begin=ALL, end=ALL, step=(1, 1, -1, -1))


class SameStride2Conv2D(nn.Conv2D):
    """TF conv2d(stride 2, padding 'SAME') with an odd undilated kernel, exact at both input parities.

    Build it as nn.Conv2D with strides=2 and padding kernel // 2 (its parameters are Conv2D's). Output
    ceil(H / 2) x ceil(W / 2), the windows centred on rows H - 1, H - 3, ... as TF's: the stride-2
    convolution of the reversed input with the reversed kernel, reversed (see the module's docstring).
    `mylib.export.fixed_size_graph` turns the three reversing slices into TF's explicit padding at a
    known size, which ONNX takes.
    """

    def __init__(self, channels, kernel_size, strides=2, padding=None, dilation=1, **kwargs):
        if strides not in (2, (2, 2)) or dilation not in (1, (1, 1)) or kernel_size % 2 == 0 or padding not in (
                kernel_size // 2, (kernel_size // 2,) * 2):
            raise ValueError('SameStride2Conv2D is TF \'SAME\' for stride 2, an odd undilated kernel and padding '
                             'kernel // 2, not strides=%r kernel_size=%r padding=%r dilation=%r'
                             % (strides, kernel_size, padding, dilation))
        super().__init__(channels, kernel_size, strides=strides, padding=padding, dilation=dilation, **kwargs)

    def hybrid_forward(self, F, x, weight, bias=None):
        flipped = reversed_rows_and_columns
        args = (flipped(F, x), flipped(F, weight)) + (() if bias is None else (bias,))
        return flipped(F, F.Convolution(*args, name='fwd', **self._kwargs))
