"""The mapping from official TF DeepLab variable names to Gluon parameter names, for every family.

Here: the kinds of layer and their tensors, the layout changes, the rule that tells optimizer slots
from model variables, and the recognition of what a checkpoint holds (`detect_model`). Each family's
rows (TF scope, Gluon block, layer kind) are in `converters/tables/<family>.py`, generated from the
model's own block tables; the head's in `converters/tables/heads.py`. `LAYER_TENSORS` expands a row
into its tensors. Parameters are never matched by order.
`python -m converters.mapping [deeplab|imagenet]` prints the Xception-65 table.

Gluon names are those of `save_parameters` / `load_parameters` of `mylib.models.build_network(spec)`.
"""
import re
import sys
from collections import OrderedDict, namedtuple

from converters.tables import mobilenet, resnet, xception
from converters.tables.heads import detect_head, flag_text, head_rows
from mylib.errors import ConversionError
from mylib.models.spec import CLASSIFICATION, FAMILIES, RELEASE_FLAGS, ModelSpec, default_rates, xception65_spec

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

# --- the rows of each network: (official scope, Gluon block, kind) -----------------------------------
def deeplab_rows(spec):
    """Rows of a DeepLab checkpoint: the family's backbone (under `backbone.`), then the head's."""
    backbone = [(tf, 'backbone.' + gluon, kind) for tf, gluon, kind in FAMILY_TABLES[spec.family].rows(spec)]
    return backbone + head_rows(spec)


def classifier_rows(spec):
    """Rows of an ImageNet checkpoint of the family of `spec`."""
    return FAMILY_TABLES[spec.family].classifier_rows(spec)


def rows_for(spec):
    return classifier_rows(spec) if spec.task == CLASSIFICATION else deeplab_rows(spec)


def deeplab_layers(num_atrous=3, decoder=True):
    """Rows of the Xception-65 DeepLab v3+ releases (DeepLab v3 with decoder=False)."""
    return deeplab_rows(xception65_spec(decoder=decoder, atrous_rates=default_rates(16)[:num_atrous]))


def imagenet_layers():
    """Rows of the ImageNet `xception_65` classifier: backbone and `xception_65/logits`."""
    return xception.classifier_rows('xception_65')


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


# The 8-bit quantization-aware releases (tf.contrib.quantize) keep the ranges of their fake-quantization
# ops as `<layer>/weights_quant/{min,max}` and `<layer>/act_quant/{min,max}`: the float weights beside
# them are the model, and the network runs them in float32.
QUANTIZATION_RANGE = re.compile(r'(^|/)\w*_quant/(min|max)$')


def skip_reason(name):
    """'optimizer slot', 'training state' or 'quantization range' for tensors a converter skips by rule,
    else None."""
    if name.rsplit('/', 1)[-1] in OPTIMIZER_SLOTS and '/' in name:
        return 'optimizer slot'
    if name in TRAINING_STATE:
        return 'training state'
    if QUANTIZATION_RANGE.search(name):
        return 'quantization range'
    return None


# --- what a checkpoint holds -----------------------------------------------------------------------
FamilyTable = namedtuple('FamilyTable', ['detect', 'rows', 'classifier_rows'])
FamilyTable.__doc__ = """A family's part of the mapping. detect(shapes) -> (ModelSpec fields, ImageNet classes or
None) or None when the checkpoint is not of the family; rows(spec) -> backbone rows; classifier_rows(spec)."""


def _xception_detect(shapes):
    found = xception.detect(shapes)
    if found is None:
        return None
    logits = shapes.get(found['model_variant'] + '/logits/weights')
    return found, None if logits is None else int(logits[-1])


def _resnet_detect(shapes):
    found = resnet.detect(shapes)
    if found is None:
        return None
    return {'model_variant': 'resnet_v1_%d_beta' % found['depth']}, found['imagenet_classes']


def _mobilenet_detect(shapes):
    found = mobilenet.detect(shapes)
    if found is None:
        return None
    fields = {'model_variant': found['variant'], 'depth_multiplier': found['depth_multiplier']}
    if found['finegrain']:
        fields['finegrain_classification_mode'] = True
    return fields, found['num_classes'] if found['classifier'] else None


def _depth(spec):
    return int(spec.model_variant.split('_')[2])  # resnet_v1_101_beta -> 101


FAMILY_TABLES = {
    'xception': FamilyTable(_xception_detect, lambda spec: xception.backbone_rows(spec.model_variant),
                            lambda spec: xception.classifier_rows(spec.model_variant)),
    'resnet': FamilyTable(_resnet_detect, lambda spec: resnet.backbone_rows(_depth(spec)),
                          lambda spec: resnet.classifier_rows(_depth(spec))),
    'mobilenet': FamilyTable(_mobilenet_detect,
                             lambda spec: mobilenet.backbone_rows(spec.model_variant, spec.depth_multiplier,
                                                                  spec.divisible_by),
                             lambda spec: mobilenet.classifier_rows(spec.depth_multiplier, spec.model_variant,
                                                                    spec.finegrain_classification_mode)),
}


def _scopes(names, limit=8):
    scopes = sorted({name.split('/', 1)[0] for name in names})
    return ', '.join(scopes[:limit]) + (', ...' if len(scopes) > limit else '')


def detect_model(shapes):
    """(ModelSpec, notes) of a checkpoint from its model tensors' {name: shape}.

    The family and variant come from the backbone's official scope and shapes; the head from the head's
    names and shapes; what a checkpoint does not record (output stride, atrous rates, ...) from the
    official release flags of the family (`mylib.models.spec.RELEASE_FLAGS`), said in `notes`.
    Raises ConversionError, naming what was found, for anything else.
    """
    found = [(family, result) for family, table in FAMILY_TABLES.items()
             for result in [table.detect(shapes)] if result is not None]
    if len(found) != 1:
        raise ConversionError('not an official DeepLab or ImageNet checkpoint of a known family (%s): %s; its '
                              'scopes: %s' % (', '.join(sorted(FAMILIES)),
                                              'several backbones' if found else 'no known backbone scope',
                                              _scopes(shapes)))
    family, (fields, imagenet_classes) = found[0]
    defaults = RELEASE_FLAGS[fields['model_variant']]
    segmentation = any(name.startswith(prefix) for name in shapes
                       for prefix in ('logits/semantic/', 'aspp0/', 'meta_architecture/', 'decoder/'))
    if not segmentation:
        if imagenet_classes is None:
            raise ConversionError('%s checkpoint without logits: neither logits/semantic (DeepLab) nor the '
                                  'ImageNet logits are in it' % fields['model_variant'])
        return ModelSpec(task=CLASSIFICATION, num_classes=imagenet_classes, output_stride=32, **fields), []
    try:
        head, notes = detect_head(shapes, defaults)
    except ValueError as error:
        raise ConversionError(str(error)) from None
    fields.update({name: value for name, value in defaults.items() if name in ('multi_grid',)})
    if 'multi_grid' in fields:
        notes.append('multi_grid=%s (the official flags of every ResNet release)' % flag_text(fields['multi_grid']))
    try:
        return ModelSpec(**fields, **head), notes
    except ValueError as error:
        raise ConversionError('unsupported head: %s' % error) from None


def table_for(spec):
    """The tensor table of a ModelSpec."""
    return tensor_table(rows_for(spec))


def main(argv):
    kind = argv[1] if len(argv) > 1 else 'deeplab'
    layers = {'deeplab': deeplab_layers, 'imagenet': imagenet_layers}[kind]()
    for tf_name, (gluon_name, layout) in tensor_table(layers).items():
        print('%-100s %-75s %s' % (tf_name, gluon_name, layout))


if __name__ == '__main__':
    main(sys.argv)
