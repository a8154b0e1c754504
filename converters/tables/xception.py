"""The Xception-41/65/71 rows of the mapping: official `xception_<n>/...` scopes -> Gluon blocks.

Generated from the block tables of `mylib.models.xception` (the model's own data), never by order.
"""
import re

from mylib.models.xception import VARIANTS

FLOWS = {'entry': 'entry_flow', 'middle': 'middle_flow', 'exit': 'exit_flow'}  # Gluon block name -> official flow


def detect(shapes):
    """{'model_variant': 'xception_65'} (or _41, _71) when the checkpoint's {name: shape} is an Xception,
    else None: the official scope `xception_<n>/` of feature_extractor.name_scope."""
    scopes = {name.split('/', 1)[0] for name in shapes}
    found = sorted(scope for scope in scopes if scope in VARIANTS)
    return {'model_variant': found[0]} if len(found) == 1 else None


def official_block(gluon_block):
    """'entry_block2' -> 'entry_flow/block2'."""
    flow, index = re.match(r'(entry|middle|exit)_block(\d+)$', gluon_block).groups()
    return '%s/block%s' % (FLOWS[flow], index)


def separable_rows(tf_scope, gluon_block):
    """The two rows of a split separable conv: official `<scope>_depthwise` and `<scope>_pointwise`."""
    return [(tf_scope + '_depthwise', gluon_block + '.depthwise', 'depthwise_bn'),
            (tf_scope + '_pointwise', gluon_block + '.pointwise', 'conv_bn')]


def backbone_rows(model_variant='xception_65'):
    """Rows (official scope, Gluon block relative to the backbone, kind) of an Xception backbone."""
    scope = model_variant
    rows = [(scope + '/entry_flow/conv1_1', 'conv1_1', 'conv_bn'),
            (scope + '/entry_flow/conv1_2', 'conv1_2', 'conv_bn')]
    for spec in VARIANTS[model_variant].blocks:
        for unit in range(1, spec.units + 1):
            tf_unit = '%s/%s/unit_%d/xception_module' % (scope, official_block(spec.name), unit)
            gluon_unit = '%s_unit%d' % (spec.name, unit)
            for conv in (1, 2, 3):
                rows += separable_rows('%s/separable_conv%d' % (tf_unit, conv),
                                       '%s.separable_conv%d' % (gluon_unit, conv))
            if spec.shortcut == 'conv':
                rows.append((tf_unit + '/shortcut', gluon_unit + '.shortcut', 'conv_bn'))
    return rows


def classifier_rows(model_variant='xception_65'):
    """Rows of the ImageNet classifier: the backbone (under `backbone.`) and `<scope>/logits`."""
    return ([(tf, 'backbone.' + gluon, kind) for tf, gluon, kind in backbone_rows(model_variant)]
            + [(model_variant + '/logits', 'logits', 'conv_bias')])
