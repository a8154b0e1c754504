"""The official initializers, for the layers that set them where they are built.

slim's defaults, which the official graph keeps unless a scope overrides them: convolution weights
Xavier (glorot uniform; MXNet's `mx.init.Xavier()`, the network's default initializer), biases and
batch-norm beta zero, gamma one. The overrides are `TruncatedNormal` with the stddev each layer names.
"""
import mxnet as mx
import numpy as np

TRUNCATION = 2.0  # tf.truncated_normal_initializer: values beyond two standard deviations are drawn again


@mx.init.register  # exported symbols name it in their variables' __init__ attribute
class TruncatedNormal(mx.init.Initializer):
    """Normal(0, stddev) redrawn outside two standard deviations (tf.truncated_normal_initializer).

    Each array draws from its own numpy generator whose seed comes from MXNet's generator, so the
    values depend only on `mx.random.seed(...)` and the order in which parameters are initialized.
    """

    def __init__(self, stddev):
        super().__init__(stddev=stddev)
        self.stddev = stddev

    def _init_weight(self, _, array):
        seed = int(mx.nd.random.randint(0, 2 ** 31 - 1, shape=(1,), ctx=mx.cpu(), dtype='int32').asscalar())
        rng = np.random.default_rng(seed)
        values = rng.normal(0.0, self.stddev, array.shape)
        outside = np.abs(values) > TRUNCATION * self.stddev
        while outside.any():
            values[outside] = rng.normal(0.0, self.stddev, outside.sum())
            outside = np.abs(values) > TRUNCATION * self.stddev
        array[:] = values.astype(np.float32)
