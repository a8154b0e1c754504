"""The one mapping from official TF DeepLab / Xception-65 variable names to Gluon parameter names.

Everything here is plain Python and numpy: the table, the layout changes, the rule that tells
optimizer slots from model variables, and the recognition of what a checkpoint holds.
`python -m converters.mapping [deeplab|imagenet]` prints the whole table.

Gluon names are those of `save_parameters` / `load_parameters` for `mylib.DeepLabV3Plus` and
`mylib.Xception65`. Each layer of the official graph is one row (TF scope, Gluon block, layer kind);
`LAYER_TENSORS` expands a row into its tensors. Parameters are never matched by order.
"""
import re
import sys
from collections import OrderedDict, namedtuple

from mylib.errors import ConversionError
from mylib.models.xception import XCEPTION_65

# --- the tensors of each kind of layer: (TF suffix, Gluon suffix, layout) -------------------------
_BATCH_NORM = (
    ('BatchNorm/gamma', 'bn.gamma', 'vector'),
    ('BatchNorm/beta', 'bn.beta', 'vector'),
    ('BatchNorm/moving_mean', 'bn.running_mean', 'vector'),
    ('BatchNorm/moving_variance', 'bn.running_var', 'vector'),
)
LAYER_TENSORS = {
    # slim.conv2d + batch norm, no bias -> mylib ConvBN
    'conv_bn': (('weights', 'conv.weight', 'conv'),) + _BATCH_NORM,
    # the depthwise half of a separable conv + batch norm -> mylib ConvBN with groups
    'depthwise_bn': (('depthwise_weights', 'conv.weight', 'depthwise'),) + _BATCH_NORM,
    # slim.conv2d with bias, no normalizer (the logits) -> nn.Conv2D
    'conv_bias': (('weights', 'weight', 'conv'), ('biases', 'bias', 'vector')),
}

# --- Xception-65 blocks: mylib block name -> official scope ---------------------------------------
BACKBONE_SCOPE = 'xception_65'
BACKBONE_BLOCKS = OrderedDict([
    ('entry_block1', 'entry_flow/block1'),
    ('entry_block2', 'entry_flow/block2'),
    ('entry_block3', 'entry_flow/block3'),
    ('middle_block1', 'middle_flow/block1'),
    ('exit_block1', 'exit_flow/block1'),
    ('exit_block2', 'exit_flow/block2'),
])


def _separable(tf_scope, gluon_block):
    """The two rows of a separable conv: official `<scope>_depthwise` and `<scope>_pointwise`."""
    return [(tf_scope + '_depthwise', gluon_block + '.depthwise', 'depthwise_bn'),
            (tf_scope + '_pointwise', gluon_block + '.pointwise', 'conv_bn')]


def backbone_layers():
    """Rows of the Xception-65 backbone (same in the DeepLab and the ImageNet checkpoints)."""
    rows = [('xception_65/entry_flow/conv1_1', 'backbone.conv1_1', 'conv_bn'),
            ('xception_65/entry_flow/conv1_2', 'backbone.conv1_2', 'conv_bn')]
    for spec in XCEPTION_65:
        for unit in range(1, spec.units + 1):
            tf_unit = '%s/%s/unit_%d/xception_module' % (BACKBONE_SCOPE, BACKBONE_BLOCKS[spec.name], unit)
            gluon_unit = 'backbone.%s_unit%d' % (spec.name, unit)
            for conv in (1, 2, 3):
                rows += _separable('%s/separable_conv%d' % (tf_unit, conv),
                                   '%s.separable_conv%d' % (gluon_unit, conv))
            if spec.shortcut == 'conv':
                rows.append((tf_unit + '/shortcut', gluon_unit + '.shortcut', 'conv_bn'))
    return rows


def deeplab_layers(num_atrous=3, decoder=True):
    """Rows of DeepLab v3+: backbone, ASPP, decoder, logits (official model.py scopes)."""
    rows = backbone_layers()
    rows += [('image_pooling', 'aspp.image_pooling', 'conv_bn'),
             ('aspp0', 'aspp.aspp0', 'conv_bn')]
    for branch in range(1, num_atrous + 1):
        rows += _separable('aspp%d' % branch, 'aspp.aspp%d' % branch)
    rows += [('concat_projection', 'aspp.projection', 'conv_bn')]
    if decoder:
        rows += [('decoder/feature_projection0', 'decoder.feature_projection', 'conv_bn')]
        rows += _separable('decoder/decoder_conv0', 'decoder.conv0')
        rows += _separable('decoder/decoder_conv1', 'decoder.conv1')
    rows += [('logits/semantic', 'logits', 'conv_bias')]
    return rows


def imagenet_layers():
    """Rows of the ImageNet `xception_65` classifier: backbone and `xception_65/logits`."""
    return backbone_layers() + [('xception_65/logits', 'logits', 'conv_bias')]


def tensor_table(layers):
    """OrderedDict: TF tensor name -> (Gluon parameter name, layout), for the given layer rows."""
    table = OrderedDict()
    for tf_scope, gluon_block, kind in layers:
        for tf_suffix, gluon_suffix, layout in LAYER_TENSORS[kind]:
            table[tf_scope + '/' + tf_suffix] = (gluon_block + '.' + gluon_suffix, layout)
    return table


# --- layouts ---------------------------------------------------------------------------------------
def to_gluon_layout(array, layout):
    """One TF array in the layout of its Gluon parameter.

    conv:      (kh, kw, in, out)         -> (out, in, kh, kw)
    depthwise: (kh, kw, in, multiplier)  -> (in * multiplier, 1, kh, kw)
    vector:    unchanged (BN gamma/beta/mean/variance, biases)
    """
    if layout == 'conv':
        return array.transpose(3, 2, 0, 1)
    if layout == 'depthwise':
        kh, kw, channels, multiplier = array.shape
        return array.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
    if layout == 'vector':
        return array
    raise ValueError('unknown layout %r' % (layout,))


# --- what is not a model variable ------------------------------------------------------------------
# Optimizer slots, kept by TF beside each trained variable as `<variable>/<slot>`.
OPTIMIZER_SLOTS = ('Momentum', 'RMSProp', 'RMSProp_1', 'Adam', 'Adam_1', 'Adagrad', 'Ftrl', 'Ftrl_1',
                   'ExponentialMovingAverage')
# Training bookkeeping saved at the top level.
TRAINING_STATE = ('global_step', 'beta1_power', 'beta2_power')


# --optimizer-state keeps the official optimizer's slots (tf.train.MomentumOptimizer: `<variable>/Momentum`)
# in the stage-1 .h5 under this group; they are still optimizer slots, never model tensors.
MOMENTUM_SLOT = 'Momentum'
SLOT_GROUP = 'optimizer_slots'


def skip_reason(name):
    """'optimizer slot' or 'training state' for tensors a converter skips by rule, else None."""
    if name.rsplit('/', 1)[-1] in OPTIMIZER_SLOTS and '/' in name:
        return 'optimizer slot'
    if name in TRAINING_STATE:
        return 'training state'
    return None


# --- what a checkpoint holds -----------------------------------------------------------------------
Architecture = namedtuple('Architecture', ['kind', 'num_classes', 'decoder', 'num_atrous'])
Architecture.__doc__ = """What a checkpoint is. kind: 'deeplabv3plus' (DeepLab v3+ or, with decoder=False,
DeepLab v3) or 'xception65_imagenet'; num_classes: size of the logits; num_atrous: ASPP rate branches."""


def detect_architecture(shapes):
    """The Architecture of a checkpoint from its model tensors' {name: shape}.

    Raises ConversionError, naming what was found, for anything that is not an official Xception-65
    DeepLab or ImageNet checkpoint.
    """
    names = list(shapes)
    if not any(name.startswith(BACKBONE_SCOPE + '/') for name in names):
        scopes = sorted({name.split('/', 1)[0] for name in names})
        raise ConversionError('not an Xception-65 checkpoint: no %s/ variables (its scopes: %s); this converter '
                           'reads the DeepLab v3+ Xception-65 and ImageNet xception_65 checkpoints'
                           % (BACKBONE_SCOPE, ', '.join(scopes[:8]) + (', ...' if len(scopes) > 8 else '')))
    if 'logits/semantic/weights' in shapes:
        atrous = [int(m.group(1)) for m in (re.match(r'aspp(\d+)_depthwise/depthwise_weights$', n)
                                            for n in names) if m]
        return Architecture('deeplabv3plus', int(shapes['logits/semantic/weights'][-1]),
                            any(name.startswith('decoder/') for name in names), len(atrous))
    if BACKBONE_SCOPE + '/logits/weights' in shapes:
        return Architecture('xception65_imagenet', int(shapes[BACKBONE_SCOPE + '/logits/weights'][-1]),
                            False, 0)
    raise ConversionError('Xception-65 checkpoint without logits: neither logits/semantic/weights (DeepLab) '
                       'nor %s/logits/weights (ImageNet) is in it' % BACKBONE_SCOPE)


def table_for(architecture):
    """The tensor table of an Architecture."""
    if architecture.kind == 'deeplabv3plus':
        return tensor_table(deeplab_layers(architecture.num_atrous, architecture.decoder))
    return tensor_table(imagenet_layers())


def main(argv):
    kind = argv[1] if len(argv) > 1 else 'deeplab'
    layers = {'deeplab': deeplab_layers, 'imagenet': imagenet_layers}[kind]()
    for tf_name, (gluon_name, layout) in tensor_table(layers).items():
        print('%-100s %-75s %s' % (tf_name, gluon_name, layout))


if __name__ == '__main__':
    main(sys.argv)
