"""The official batch-norm update of the moving variance, on top of MXNet's.

The official graph's fused batch norm normalises a training batch with its biased variance, but feeds
the moving average the Bessel-corrected one, `var * n / (n - 1)` (n: the values per channel it saw,
N * H * W; for image pooling, whose input is one pooled vector per image, n = N). MXNet 1.9's
`BatchNorm` (and `SyncBatchNorm`) feed the biased variance:

    MXNet:     moving' = m * moving + (1 - m) * var
    official:  moving' = m * moving + (1 - m) * var * n / (n - 1)
             = MXNet's moving' + (MXNet's moving' - m * moving) / (n - 1)

so `MovingVarianceCorrection` keeps each moving variance from before the step's forward pass and adds
that difference after it. n comes from the shapes of the network's graph for the per-device batch
(the whole batch under SyncBatchNorm, whose statistics are those of every device together).
"""
import json

import mxnet as mx
import numpy as np

BATCH_NORM_OPS = ('BatchNorm', '_contrib_SyncBatchNorm')


def values_per_channel(net, input_shape):
    """{full name of a moving-variance Parameter: (values per channel that its batch norm normalises, its
    momentum)}.

    input_shape: the NCHW shape of one device's input. Read from the network's symbolic graph (each batch
    norm keeps its own momentum: the official decays differ between backbones, e.g. 0.95 in ResNet).
    """
    symbol = net(mx.sym.var('data'))
    internals = symbol.get_internals()
    _, shapes, _ = internals.infer_shape(data=tuple(input_shape))
    shape_of = dict(zip(internals.list_outputs(), shapes))
    nodes = json.loads(symbol.tojson())['nodes']
    counts = {}
    for node in nodes:
        if node['op'] not in BATCH_NORM_OPS:
            continue
        source, index, _ = node['inputs'][0]
        producer = nodes[source]
        outputs = [name for name in internals.list_outputs() if name.startswith(producer['name'] + '_output')]
        shape = shape_of[outputs[index] if len(outputs) > 1 else outputs[0]]
        moving_variance = nodes[node['inputs'][4][0]]['name']
        momentum = float(node.get('attrs', {}).get('momentum', 0.9))  # (0.9: MXNet's default, not written)
        counts[moving_variance] = (int(np.prod(shape) // shape[1]), momentum)
    return counts


class MovingVarianceCorrection:
    """Makes MXNet's moving-variance update the official one (see the module docstring).

        correction = MovingVarianceCorrection(net, ctxs, per_device_shape, sync=len(ctxs) > 1)
        with correction:      # around the training forward and backward passes (MXNet updates the
            ...               # moving statistics in the backward pass)
    """

    def __init__(self, net, ctxs, input_shape, sync=False):
        counts = values_per_channel(net, input_shape)
        devices = len(ctxs) if sync else 1  # SyncBatchNorm's statistics are over every device's values
        params = net.collect_params()
        self.ctxs = list(ctxs)
        missing = [name for name in counts if name not in params]
        if missing or not counts:
            raise ValueError('the moving variances of the graph of %s are not its parameters: %s'
                             % (type(net).__name__, ', '.join(missing) or 'none found'))
        # (the momentum as the operator holds it: float32)
        self.layers = [(params[name], devices * count, float(np.float32(momentum)))
                       for name, (count, momentum) in sorted(counts.items())]
        self.before = None

    def __enter__(self):
        self.before = [[param.data(ctx).copy() for ctx in self.ctxs] for param, _, _ in self.layers]
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            return False
        for (param, count, momentum), before in zip(self.layers, self.before):
            if count < 2:  # one value per channel has no variance to correct (and TF gives it none)
                continue
            for ctx, old in zip(self.ctxs, before):
                new = param.data(ctx)
                new += (new - momentum * old) / (count - 1)
        self.before = None
        return False


class AccurateBatchNorm(mx.gluon.nn.BatchNorm):
    """BatchNorm whose training output uses an accurately summed batch variance (`--accurate-bn`).

    MXNet 1.9's CPU kernel sums each channel's batch variance value by value in float32. Its error is
    small (median 4e-7 relative per layer, at most 5e-5), but DeepLab magnifies it about 50-fold at the
    image-pooling batch norm, whose "batch" is two pooled vectors per channel: at step 1 of the reference
    (docs/training.md) every backbone update comes out about 7 % larger in norm than the official one.
    Here the op still runs (its backward and its moving statistics are MXNet's), and its output is
    replaced, value for value, by the batch normalised with a mean and variance summed by MXNet's
    (pairwise) reductions; the step is then within about 2 % of the official one, at about 2.5x the time
    of a CPU training step. For training only (it uses the batch's statistics): validation builds a plain
    copy.
    """

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        out = F.BatchNorm(x, gamma, beta, running_mean, running_var, name='fwd', **self._kwargs)
        axes = (0, 2, 3)  # every axis but the channels' (NCHW)
        mean = F.mean(x, axis=axes, keepdims=True)
        centred = F.broadcast_sub(x, mean)
        inverse_std = F.rsqrt(F.mean(F.square(centred), axis=axes, keepdims=True) + self._kwargs['eps'])
        exact = F.broadcast_add(F.broadcast_mul(F.broadcast_mul(centred, inverse_std), F.reshape(gamma, (1, -1, 1, 1))),
                                F.reshape(beta, (1, -1, 1, 1)))
        return out + F.BlockGrad(exact - out)  # the accurate values, the operator's gradient
