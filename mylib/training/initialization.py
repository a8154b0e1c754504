"""Initial weights for training: a converted checkpoint, an ImageNet backbone, or the official initializers."""
import dataclasses
import os

import mxnet as mx

from ..errors import OptionError, WeightsError
from ..models.spec import CLASSIFICATION, release_spec
from ..weights import momentum_path, read_metadata, read_params, spec_of


def training_spec(init_path, backbone, num_classes, output_stride=None):
    """The ModelSpec a run trains: --init's network (a DeepLab checkpoint: the same network, `num_classes`;
    an ImageNet checkpoint: the official release head of its backbone, `release_spec`), else --backbone's
    release network (default xception_65). output_stride None: the network's own.
    OptionError when --backbone names another backbone than --init holds."""
    if init_path is None:
        spec = release_spec(backbone or 'xception_65', num_classes)
    else:
        found = spec_of(init_path)
        if backbone is not None and backbone != found.model_variant:
            raise OptionError('--backbone %s, but --init %s holds %s' % (backbone, init_path, found.model_variant))
        spec = (release_spec(found.model_variant, num_classes, found.depth_multiplier)
                if found.task == CLASSIFICATION else found.with_num_classes(num_classes))
        if found.task == CLASSIFICATION and found.family == 'mobilenet' and found.depth_multiplier != 1.0:
            # the slim classifiers round channels to multiples of 8; DeepLab's flag divisible_by=8 does too
            spec = dataclasses.replace(spec, divisible_by=8)
    try:
        return spec.with_output_stride(output_stride)
    except ValueError as error:
        raise OptionError('--os %s: %s' % (output_stride, error)) from None


def initialize_for_training(net, init_path, ctxs, seed=0):
    """Initialise `net` on `ctxs` with the official initializers, then load what `init_path` offers.

    The initializers are those the layers were built with (`mylib.models.init`; slim's Xavier where a
    layer names none); the random values depend only on `seed`.

    init_path: converted DeepLab parameters of `net`'s network (everything is loaded; the layers that
    predict the classes only if their number matches), or a converted ImageNet checkpoint of its
    backbone (its `backbone.*`), or None. Returns a short description of what was loaded.
    """
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier(), ctx=ctxs, force_reinit=True)
    if init_path is None:
        return 'random initialization (no --init)'
    named = net._collect_params_with_prefix()
    loaded = read_params(init_path)
    found = spec_of(init_path, loaded)
    is_deeplab = found.task != CLASSIFICATION
    wanted = [name for name in named if is_deeplab or name.startswith('backbone.')]
    per_class = set(net.class_parameters())
    skipped = []
    for name in wanted:
        if name not in loaded:
            raise WeightsError('%s: has no %s' % (init_path, name))
        if loaded[name].shape != named[name].shape:
            if name in per_class:
                skipped.append(name)
                continue
            raise WeightsError('%s: %s has shape %s, the model needs %s'
                               % (init_path, name, loaded[name].shape, named[name].shape))
        named[name].set_data(loaded[name])
    what = found.describe() if is_deeplab else 'ImageNet backbone (%s)' % found.model_variant
    note = (' (%s not loaded: %d classes there, %d here)' % (', '.join(sorted(skipped)), found.num_classes,
                                                             net.num_classes) if skipped else '')
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
