"""PyTorch names of the backbones of the PyTorch DeepLabs (VoVNet-39/57, torchvision's ResNet-50/101) and
their Gluon blocks, generated from the models' own tables (`mylib.models.vovnet.VOVNET`,
`mylib.models.torch_resnet.TORCH_RESNET`), so that a module added to a model is a row here.

Rows are `Row`s: (PyTorch conv module, PyTorch batch-norm module, Gluon block,
conv bias, input regrouping), Gluon blocks relative to the backbone.
"""
import re
from collections import namedtuple

from mylib.errors import ConversionError
from mylib.models.densenet import DENSENET
from mylib.models.torch_mobilenet import plan_layers as mobilenet_plan
from mylib.models.torch_resnet import TORCH_RESNET, unit_plan
from mylib.models.vovnet import LAYERS_PER_MODULE, STEM, VOVNET

Row = namedtuple('Row', ['conv', 'bn', 'block', 'bias', 'inputs'])
Row.__doc__ = """One PyTorch conv module (and the batch norm after it, or None) -> one Gluon block: a ConvBN
(`.conv`, `.bn`), or a plain Conv2D when bn is None. bias: the conv has one. inputs: None, or (sizes,
order): the conv's input channels come in groups of `sizes` that the Gluon block takes in `order`."""


def row(conv, bn, block, bias=False, inputs=None):
    """One conv (+ its batch norm) -> one Gluon block (a `Row`)."""
    return Row(conv, bn, block, bias, inputs)


def vovnet_rows(depth):
    """VoVNet-DeepLabV3's VoVNet (deeplab.py: `stem.stem_<i>/conv`,
    `stage<s>.OSA<s>_<m>.layers.<i>.OSA<s>_<m>_<i>/conv`, `... .concat.OSA<s>_<m>_concat/conv`, each with
    its `/norm`)."""
    rows = [row('stem.stem_%d/conv' % (index + 1), 'stem.stem_%d/norm' % (index + 1), name)
            for index, (name, _, _) in enumerate(STEM)]
    for stage_number, stage in enumerate(VOVNET[depth], 2):
        for module in range(1, stage.modules + 1):
            scope = 'stage%d.OSA%d_%d' % (stage_number, stage_number, module)
            original = 'OSA%d_%d' % (stage_number, module)
            block = '%s_%d' % (stage.name, module)
            for index in range(LAYERS_PER_MODULE):
                layer = '%s.layers.%d.%s_%d' % (scope, index, original, index)
                rows.append(row(layer + '/conv', layer + '/norm', '%s.conv%d' % (block, index)))
            layer = '%s.concat.%s_concat' % (scope, original)
            rows.append(row(layer + '/conv', layer + '/norm', block + '.concat'))
    return rows


def vovnet_depth(shapes):
    """39 or 57 from a VoVNet state dict's stage-4 modules (2 or 4); None if it has no VoVNet stem."""
    if 'stem.stem_1/conv.weight' not in shapes:
        return None
    modules = {match.group(1) for match in map(re.compile(r'stage4\.OSA4_(\d+)\.').match, shapes) if match}
    return _known_depth(VOVNET, lambda stages: stages[2].modules == len(modules),
                        'VoVNet with %d stage-4 modules' % len(modules))


def _known_depth(table, matches, found):
    """The depth of `table` whose config `matches`; ConversionError naming what was `found` if none does."""
    depth = next((depth for depth, config in table.items() if matches(config)), None)
    if depth is None:
        raise ConversionError('%s: not one of the depths built (%s)' % (found, ', '.join(map(str, sorted(table)))))
    return depth


def resnet_rows(depth, prefix=''):
    """torchvision's ResNet (`conv1`, `bn1`, `layer<l>.<b>.conv<i>` / `.bn<i>`, `.downsample.0` / `.1`) under
    `prefix` ('backbone.' in torchvision's DeepLabV3 and DeepLab-v3-plus-cityscapes, '' in VoVNet-DeepLabV3)."""
    rows = [row(prefix + 'conv1', prefix + 'bn1', 'stem')]
    for unit in unit_plan(TORCH_RESNET[depth]):
        scope = prefix + unit.name.replace('_', '.')  # layer1_0 -> layer1.0
        rows += [row('%s.conv%d' % (scope, index), '%s.bn%d' % (scope, index), '%s.conv%d' % (unit.name, index))
                 for index in (1, 2, 3)]
        if unit.name.endswith('_0'):  # every layer's first block projects (in_channels != planes * 4)
            rows.append(row(scope + '.downsample.0', scope + '.downsample.1', unit.name + '.downsample'))
    return rows


def resnet_depth(shapes, prefix=''):
    """50 or 101 from the number of layer3 blocks (6 or 23); None without `<prefix>conv1.weight` (7x7)."""
    stem = shapes.get(prefix + 'conv1.weight')
    if stem is None or tuple(stem[2:]) != (7, 7) or prefix + 'layer1.0.conv1.weight' not in shapes:
        return None
    blocks = {match.group(1) for match in map(re.compile(re.escape(prefix) + r'layer3\.(\d+)\.').match, shapes)
              if match}
    return _known_depth(TORCH_RESNET, lambda layers: layers[2].blocks == len(blocks),
                        'ResNet with %d layer3 blocks' % len(blocks))


def mobilenet_rows(variant, prefix='backbone.'):
    """torchvision's MobileNet-v3 `features` (`<prefix><i>.0` conv, `.1` BN for the stem and the last conv;
    `<prefix><i>.block.<j>` for an InvertedResidual: [expand], depthwise, [SE fc1, fc2], project)."""
    rows = []
    for index, layer in enumerate(mobilenet_plan(), 0):  # the layers are the same at any output stride
        scope, block = '%s%d' % (prefix, index), layer.name
        if layer.op == 'conv':
            rows.append(row(scope + '.0', scope + '.1', block))
            continue
        parts = (['expand'] if layer.expanded else []) + ['depthwise'] + (['squeeze_excite'] if layer.squeeze
                                                                           else []) + ['project']
        for position, part in enumerate(parts):
            sub = '%s.block.%d' % (scope, position)
            if part == 'squeeze_excite':
                rows += [row(sub + '.fc1', None, block + '.squeeze_excite.squeeze', bias=True),
                         row(sub + '.fc2', None, block + '.squeeze_excite.excite', bias=True)]
            else:
                rows.append(row(sub + '.0', sub + '.1', '%s.%s' % (block, part)))
    return rows


def densenet_rows(depth):
    """VoVNet-DeepLabV3's DenseNet (torchvision's names under `features.`: conv0, norm0,
    denseblock<b>.denselayer<l>.{norm1, conv1, norm2, conv2}, transition<t>.{norm, conv}, norm5): its
    pre-activation layers are BN-only and conv-only rows."""
    rows = [row('features.conv0', None, 'conv0'), row(None, 'features.norm0', 'norm0')]
    for block, layers in enumerate(DENSENET[depth].blocks, 1):
        if block > 1:
            scope = 'features.transition%d' % (block - 1)
            rows += [row(None, scope + '.norm', 'transition%d.norm' % (block - 1)),
                     row(scope + '.conv', None, 'transition%d.conv' % (block - 1))]
        for index in range(1, layers + 1):
            scope, name = 'features.denseblock%d.denselayer%d' % (block, index), 'block%d_layer%d' % (block, index)
            rows += [row(None, '%s.norm%d' % (scope, part), '%s.norm%d' % (name, part)) if kind == 'norm' else
                     row('%s.conv%d' % (scope, part), None, '%s.conv%d' % (name, part))
                     for part in (1, 2) for kind in ('norm', 'conv')]
    return rows + [row(None, 'features.norm5', 'norm5')]


def densenet_depth(shapes):
    """161 or 201 from a DenseNet state dict (its growth: conv2's 48 or 32 filters, and denseblock3's
    layers); None without `features.conv0.weight`."""
    if 'features.conv0.weight' not in shapes:
        return None
    growth = shapes.get('features.denseblock1.denselayer1.conv2.weight', (None,))[0]
    layers = {match.group(1) for match in map(re.compile(r'features\.denseblock3\.denselayer(\d+)\.').match,
                                              shapes) if match}
    return _known_depth(DENSENET, lambda config: config.growth == growth and config.blocks[2] == len(layers),
                        'DenseNet with growth %s and %d denseblock3 layers' % (growth, len(layers)))
