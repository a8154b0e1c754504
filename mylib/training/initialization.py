"""Initial weights for training: a converted checkpoint, the ImageNet backbone, or the official initializers."""
import zlib

import mxnet as mx
import numpy as np

from ..weights import WeightsError, read_params


class TruncatedNormal(mx.init.Initializer):
    """Normal(0, stddev) redrawn outside two standard deviations (tf.truncated_normal_initializer).

    Draws from its own generator, seeded by `seed` (a number or a sequence of numbers).
    """

    def __init__(self, stddev, seed):
        super().__init__(stddev=stddev)
        self.stddev, self.seed = stddev, seed

    def _init_weight(self, _, array):
        rng = np.random.default_rng(self.seed)
        values = rng.normal(0.0, self.stddev, array.shape)
        outside = np.abs(values) > 2 * self.stddev
        while outside.any():
            values[outside] = rng.normal(0.0, self.stddev, outside.sum())
            outside = np.abs(values) > 2 * self.stddev
        array[:] = values.astype(np.float32)


def official_stddev(name):
    """The official truncated-normal stddev of a conv weight by its Gluon name, or None for Xavier.

    Backbone convolutions: truncated normal 0.09 (xception_arg_scope). Head separable convolutions:
    depthwise 0.33, pointwise 0.06 (split_separable_conv2d). Logits: truncated normal 0.01
    (get_branch_logits). Other head 1x1 convolutions: slim's default, Xavier.
    """
    if not name.endswith('.weight'):
        return None
    if name.startswith('backbone.'):
        return 0.09
    if name.startswith('logits.'):
        return 0.01
    if '.depthwise.' in name and ('.aspp' in name or name.startswith('decoder.')):
        return 0.33
    if '.pointwise.' in name and ('.aspp' in name or name.startswith('decoder.')):
        return 0.06
    return None


def initialize_for_training(net, init_path, ctxs, seed=0):
    """Initialise `net` on `ctxs` with the official initializers, then load what `init_path` offers.

    The random values depend only on `seed` (and each parameter's name).

    init_path: converted DeepLab v3+ parameters (everything is loaded; the logits only if the number
    of classes matches), or the converted ImageNet xception_65 (its `backbone.*`), or None.
    Returns a short description of what was loaded.
    """
    named = net._collect_params_with_prefix()
    for name, param in named.items():
        stddev = official_stddev(name)
        if stddev is not None:
            param.init = TruncatedNormal(stddev, seed=[seed, zlib.crc32(name.encode())])
    mx.random.seed(seed)  # Xavier draws from MXNet's generator
    net.initialize(mx.init.Xavier(), ctx=ctxs, force_reinit=True)
    if init_path is None:
        return 'random initialization (no --init)'
    loaded = read_params(init_path)
    if not any(name.startswith('backbone.') for name in loaded):
        raise WeightsError('%s: neither DeepLab v3+ nor Xception-65 parameters (no backbone.*)' % init_path)
    is_deeplab = 'logits.weight' in loaded and any(name.startswith('aspp.') for name in loaded)
    wanted = [name for name in named if is_deeplab or name.startswith('backbone.')]
    skipped = []
    for name in wanted:
        if name not in loaded:
            raise WeightsError('%s: has no %s' % (init_path, name))
        if loaded[name].shape != named[name].shape:
            if name.startswith('logits.'):
                skipped.append(name)
                continue
            raise WeightsError('%s: %s has shape %s, the model needs %s'
                               % (init_path, name, loaded[name].shape, named[name].shape))
        named[name].set_data(loaded[name])
    what = 'DeepLab v3+' if is_deeplab else 'ImageNet backbone'
    note = (' (logits not loaded: %d classes there, %d here)' % (loaded['logits.weight'].shape[0], net.num_classes)
            if skipped else '')
    return 'initialised from %s %s: %d of %d parameters%s' % (what, init_path, len(wanted) - len(skipped),
                                                            len(named), note)
