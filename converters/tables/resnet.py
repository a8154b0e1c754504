"""Official TF names of ResNet-v1-beta (resnet_v1_50_beta, resnet_v1_101_beta) and their Gluon blocks.

Rows are (TF scope, Gluon block, kind) as in `converters.mapping` (kinds in `mapping.LAYER_TENSORS`:
'conv_bn' = weights + BatchNorm/{gamma, beta, moving_mean, moving_variance}; 'conv_bias' = weights +
biases), generated from the model's own block table (`mylib.models.resnet.RESNET_V1_BETA` through its
`unit_plan`), so that a unit added to the model is a row here. The Gluon block names are the official
scopes' (`block1`..`block4`), with `_unit<i>` for `unit_<i>/bottleneck_v1`.

Importing this module imports MXNet (the table lives with the model, under `mylib.models`, whose package
imports the networks), as `converters.mapping` does for Xception-65.
"""
import re

from mylib.models.resnet import RESNET_V1_BETA, ROOT_CONVS, unit_plan

# official feature_extractor.name_scope: resnet_v1_50_beta -> 'resnet_v1_50', resnet_v1_101_beta -> 'resnet_v1_101'
SCOPES = {50: 'resnet_v1_50', 101: 'resnet_v1_101'}
UNIT_SCOPE = '%s/%s/unit_%d/bottleneck_v1'  # scope, block, unit: slim stack_blocks_dense + official bottleneck
LOGITS = 'logits'  # official resnet_v1_beta with num_classes: conv2d(..., normalizer_fn=None, scope='logits')


def detect(shapes):
    """{'depth', 'scope', 'imagenet_classes'} of a ResNet-v1-beta checkpoint, from its {TF name: shape}; else None.

    A ResNet-v1-beta has the beta root `<scope>/conv1_1/weights` (3x3) under an official scope (the plain
    ResNet-v1 has `<scope>/conv1/weights`, 7x7, instead). imagenet_classes: the size of the ImageNet
    classifier's `<scope>/logits` (None in DeepLab checkpoints, whose logits are `logits/semantic`).
    """
    for depth, scope in SCOPES.items():
        root = shapes.get(scope + '/conv1_1/weights')
        if root is None or tuple(root[:2]) != (3, 3):
            continue
        logits = shapes.get('%s/%s/weights' % (scope, LOGITS))
        return {'depth': depth, 'scope': scope, 'imagenet_classes': None if logits is None else int(logits[-1])}
    return None


def unit_count(shapes, scope, block):
    """How many `<scope>/<block>/unit_<i>` the checkpoint has (to tell a checkpoint's depth in messages)."""
    pattern = re.compile(r'%s/%s/unit_(\d+)/' % (re.escape(scope), re.escape(block)))
    return len({match.group(1) for match in map(pattern.match, shapes) if match})


def backbone_rows(depth=101, scope=None):
    """Rows of the backbone, Gluon blocks relative to `ResNetV1Beta` (no 'backbone.' prefix).

    scope: the TF scope of the backbone (default the official one of `depth`, SCOPES). Unit rows are, in
    the official order of creation: shortcut (first unit of each block, where the depth changes), conv1,
    conv2, conv3.
    """
    scope = SCOPES[depth] if scope is None else scope
    rows = [('%s/%s' % (scope, name), name, 'conv_bn') for name, _, _ in ROOT_CONVS]
    channels = ROOT_CONVS[-1][1]
    for unit in unit_plan(RESNET_V1_BETA[depth], output_stride=32):  # the layers are the same at any stride
        tf_unit = UNIT_SCOPE % (scope, unit.block, unit.index)
        if unit.depth != channels:
            rows.append((tf_unit + '/shortcut', unit.name + '.shortcut', 'conv_bn'))
        rows += [('%s/%s' % (tf_unit, conv), '%s.%s' % (unit.name, conv), 'conv_bn')
                 for conv in ('conv1', 'conv2', 'conv3')]
        channels = unit.depth
    return rows


def classifier_rows(depth=101, scope=None):
    """Rows of `ResNetV1BetaClassifier`: its backbone (under 'backbone.') and the ImageNet logits."""
    scope = SCOPES[depth] if scope is None else scope
    rows = [(tf_scope, 'backbone.' + block, kind) for tf_scope, block, kind in backbone_rows(depth, scope)]
    return rows + [('%s/%s' % (scope, LOGITS), 'logits', 'conv_bias')]
