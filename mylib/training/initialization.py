"""Initial weights for training: a converted checkpoint, the ImageNet backbone, or the official initializers."""
import os

import mxnet as mx

from ..errors import WeightsError
from ..weights import momentum_path, read_metadata, read_params


def initialize_for_training(net, init_path, ctxs, seed=0):
    """Initialise `net` on `ctxs` with the official initializers, then load what `init_path` offers.

    The initializers are those the layers were built with (`mylib.models.init`; slim's Xavier where a
    layer names none); the random values depend only on `seed`.

    init_path: converted DeepLab v3+ parameters (everything is loaded; the logits only if the number
    of classes matches), or the converted ImageNet xception_65 (its `backbone.*`), or None.
    Returns a short description of what was loaded.
    """
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier(), ctx=ctxs, force_reinit=True)
    if init_path is None:
        return 'random initialization (no --init)'
    named = net._collect_params_with_prefix()
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


def initial_momentum(net, init_path):
    """The optimizer state that --init offers: {Parameter: array} of the official `/Momentum` slots written
    beside converted weights by `extract_weights.py --optimizer-state` (for the parameters they fit: not
    the logits of another class count), or None when there are none."""
    if init_path is None or 'optimizer_state' not in read_metadata(init_path):
        return None
    path = momentum_path(init_path)
    if not os.path.isfile(path):
        raise WeightsError('%s: its JSON lists an optimizer state, but %s is missing' % (init_path, path))
    named = net._collect_params_with_prefix()
    slots = read_params(path)
    return {named[name]: value.asnumpy() for name, value in slots.items()
            if name in named and value.shape == named[name].shape}
