"""Official TF names of the DeepLab MobileNets (mobilenet_v2, mobilenet_v3_large_seg, mobilenet_v3_small_seg,
mobilenet_edgetpu) and of the slim MobileNet-v2 and EdgeTPU ImageNet classifiers, with their Gluon blocks.

Rows are (TF scope, Gluon block, kind) as in `converters.mapping` (kinds of `mapping.LAYER_TENSORS`:
'conv_bn' = weights + BatchNorm/{gamma, beta, moving_mean, moving_variance}; 'depthwise_bn' =
depthwise_weights + BatchNorm; 'conv_bias' = weights + biases: the squeeze-excite convs and the logits),
generated from the model's own layer plan (`mylib.models.mobilenet_spec.plan_layers`), so that a layer
added to a table is a row here. Gluon blocks are the official end points (`layer_<i>`), with the official
sub-scopes `expand`, `depthwise`, `project`, `squeeze_excite.squeeze` (official `Conv`) and
`squeeze_excite.excite` (`Conv_1`).

The table module itself is plain Python; importing it imports MXNet only through `mylib/models/__init__.py`,
which imports the networks.
"""
from mylib.errors import ConversionError
from mylib.models.mobilenet_spec import CLASSIFIER_VARIANTS, VARIANTS, plan_layers

# official feature_extractor.name_scope; the slim classifiers use 'MobilenetV2' and 'MobilenetEdgeTPU' too
SCOPES = {'mobilenet_v2': 'MobilenetV2', 'mobilenet_v3_large_seg': 'MobilenetV3',
          'mobilenet_v3_small_seg': 'MobilenetV3', 'mobilenet_edgetpu': 'MobilenetEdgeTPU'}
# slim's default variable scopes, numbered in order of creation: Conv, Conv_1, ...; expanded_conv, expanded_conv_1,
# ... (official mbv3_fused is an expanded_conv too, and counts with them)
OP_SCOPES = {'conv': 'Conv', 'expanded_conv': 'expanded_conv', 'fused_conv': 'expanded_conv'}
LOGITS = 'Logits/Conv2d_1c_1x1'  # official mobilenet.mobilenet: the legacy scope of the logits
PUBLISHED_MULTIPLIERS = (1.0, 0.75, 0.5, 0.35, 1.3, 1.4)  # of the slim and DeepLab MobileNet checkpoints
CLASSIFIER_ROUNDING = (8, 8)  # the slim classifier: depth_multiplier's defaults divisible_by=8, min_depth=8


def layer_scopes(planned, scope):
    """{layer name: TF scope} of planned layers: `<scope>/<op scope>[_<n>]`, n counting that scope's layers."""
    counts, scopes = {}, {}
    for layer in planned:
        op_scope = OP_SCOPES[layer.op]
        index = counts.get(op_scope, 0)
        counts[op_scope] = index + 1
        scopes[layer.name] = '%s/%s%s' % (scope, op_scope, '_%d' % index if index else '')
    return scopes


def entries(planned, scope):
    """[(TF scope, Gluon block, kind, TF shape of its weights)] of planned layers (blocks relative to the backbone)."""
    found = []
    for layer, tf_layer in zip(planned, layer_scopes(planned, scope).values()):
        k, cin, inner, cout = layer.kernel, layer.in_channels, layer.expanded or layer.in_channels, layer.channels
        if layer.op == 'conv':
            found.append((tf_layer, layer.name, 'conv_bn', (k, k, cin, cout)))
            continue
        fused = layer.op == 'fused_conv'  # official mbv3_fused: a k x k expand conv, no depthwise conv
        if layer.expanded:
            expand_kernel = k if fused else 1
            found.append((tf_layer + '/expand', layer.name + '.expand', 'conv_bn',
                          (expand_kernel, expand_kernel, cin, inner)))
        if not fused:
            found.append((tf_layer + '/depthwise', layer.name + '.depthwise', 'depthwise_bn', (k, k, inner, 1)))
        if layer.squeeze:  # official conv_blocks.squeeze_excite: two slim.conv2d with biases, Conv and Conv_1
            found += [(tf_layer + '/squeeze_excite/Conv', layer.name + '.squeeze_excite.squeeze', 'conv_bias',
                       (1, 1, inner, layer.squeeze)),
                      (tf_layer + '/squeeze_excite/Conv_1', layer.name + '.squeeze_excite.excite', 'conv_bias',
                       (1, 1, layer.squeeze, inner))]
        found.append((tf_layer + '/project', layer.name + '.project', 'conv_bn', (1, 1, inner, cout)))
    return found


def backbone_rows(variant='mobilenet_v2', depth_multiplier=1.0, divisible_by=None):
    """Rows of `MobileNetBackbone(variant, depth_multiplier)` (no 'backbone.' prefix); the same at any stride."""
    planned = plan_layers(variant, depth_multiplier, 32, divisible_by)
    return [entry[:3] for entry in entries(planned, SCOPES[variant])]


def classifier_entries(depth_multiplier=1.0, num_classes=1001, variant='mobilenet_v2', finegrain=False):
    """`entries` of `MobileNetClassifier`: backbone (under 'backbone.'), the conv def's layers after DeepLab's
    final end point (MobileNet-v2's `layer_19`, official Conv_1), `logits`."""
    final = VARIANTS[variant].final_layer
    planned = plan_layers(variant, depth_multiplier, 32, *CLASSIFIER_ROUNDING, last=len(VARIANTS[variant].layers),
                          finegrain=finegrain)
    found = entries(planned, SCOPES[variant])
    in_backbone = len(entries(planned[:final], SCOPES[variant]))
    found = [(tf_scope, 'backbone.' + block if index < in_backbone else block, kind, shape)
             for index, (tf_scope, block, kind, shape) in enumerate(found)]
    logits = ('%s/%s' % (SCOPES[variant], LOGITS), 'logits', 'conv_bias', (1, 1, found[-1][3][-1], num_classes))
    return found + [logits]


def classifier_rows(depth_multiplier=1.0, variant='mobilenet_v2', finegrain=False):
    """Rows of `MobileNetClassifier`: backbone (under 'backbone.'), the layers after it, and the logits."""
    return [entry[:3] for entry in classifier_entries(depth_multiplier, variant=variant, finegrain=finegrain)]


def _variant_in(shapes):
    """The official model_variant whose scope and blocks the checkpoint has, or None."""
    if any(name.startswith('MobilenetV2/') for name in shapes):
        return 'mobilenet_v2'
    if any(name.startswith('MobilenetEdgeTPU/') for name in shapes):
        return 'mobilenet_edgetpu'
    if any(name.startswith('MobilenetV3/') for name in shapes):
        large = layer_scopes(plan_layers('mobilenet_v3_large_seg', 1.0, 32), 'MobilenetV3')['layer_16']
        return 'mobilenet_v3_large_seg' if large + '/project/weights' in shapes else 'mobilenet_v3_small_seg'
    return None


def weight_shapes(found):
    """{TF weights name: shape} of `entries` (what a checkpoint of them holds)."""
    return {'%s/%s' % (tf_scope, 'depthwise_weights' if kind == 'depthwise_bn' else 'weights'): shape
            for tf_scope, _, kind, shape in found}


def detect(shapes):
    """{'variant', 'depth_multiplier', 'classifier', 'num_classes', 'finegrain'} of a MobileNet checkpoint,
    else None.

    shapes: {TF name: shape} of its model tensors. variant: official model_variant. classifier: a slim
    ImageNet classifier (`<scope>/Logits/...`; num_classes its size) rather than a DeepLab backbone;
    finegrain: its Conv_1 keeps 1280 channels below multiplier 1 (slim's finegrain_classification_mode).
    The depth multiplier is read from the width of DeepLab's final layer, else one of the published ones
    (`PUBLISHED_MULTIPLIERS`), and checked against the shape of every weight; a MobileNet whose shapes fit
    none (another conv def, a v3 classifier) raises ConversionError naming a tensor.
    """
    variant = _variant_in(shapes)
    if variant is None:
        return None
    spec, scope = VARIANTS[variant], SCOPES[variant]
    logits = shapes.get('%s/%s/weights' % (scope, LOGITS))
    classifier = variant in CLASSIFIER_VARIANTS and logits is not None
    final = entries(plan_layers(variant, 1.0, 32), scope)[-1]  # the final layer's last conv (v2: a projection)
    width = shapes.get(final[0] + '/weights', (None,))[-1]
    read = [width / final[3][-1], round(width / final[3][-1], 2)] if width else []
    candidates = [(multiplier, finegrain) for multiplier in dict.fromkeys(read + list(PUBLISHED_MULTIPLIERS))
                  for finegrain in ((False, True) if classifier and multiplier < 1 else (False,))]
    first_mismatch = None
    for multiplier, finegrain in candidates:
        expected = weight_shapes(classifier_entries(multiplier, int(logits[-1]), variant, finegrain) if classifier
                                  else entries(plan_layers(variant, multiplier, 32), scope))
        mismatch = next((name for name, shape in expected.items() if tuple(shapes.get(name, ())) != shape), None)
        if mismatch is None:
            return {'variant': variant, 'depth_multiplier': multiplier, 'classifier': classifier,
                    'num_classes': int(logits[-1]) if classifier else None, 'finegrain': finegrain}
        first_mismatch = first_mismatch or (mismatch, expected[mismatch])
    mismatch, wanted = first_mismatch
    raise ConversionError('%s checkpoint that is not %s (%d layers) at any depth multiplier: %s is %s, expected %s'
                          % (scope, variant, spec.final_layer, mismatch, tuple(shapes.get(mismatch, ())) or 'missing',
                             wanted))
