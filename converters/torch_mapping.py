"""The mapping from PyTorch DeepLab state dicts to Gluon parameters: which project and network a `.pth`
holds (`detect_model`, from its tensors' names and shapes, never the file's name), one table per project
(rows in `converters/tables/torch_backbones.py` and `torch_heads.py`), the layout change, and the rule for
what is not converted. The PyTorch originals:
- vovnet_deeplabv3: stigma0617/VoVNet-DeepLabV3 (`deeplab.py`): VoVNet-39/57 or ResNet-50/101 + its ASPP;
- cityscapes_deeplabv3plus: CoinCheung/DeepLab-v3-plus-cityscapes (`models/deeplabv3plus.py`): ResNet-101
  with InPlaceABN, ASPP with conv biases, the decoder;
- torchvision: `torchvision.models.segmentation.deeplabv3_resnet50/101` (DeepLabHead).
`python -m converters.torch_mapping PROJECT [VARIANT]` prints a table.
"""
import sys
from collections import OrderedDict, namedtuple

import numpy as np

from converters.tables import torch_backbones, torch_heads
from converters.tables.torch_backbones import Row  # noqa: F401 (the rows' type, named here for readers)
from mylib.errors import ConversionError
from mylib.models.spec import ModelSpec

_BATCH_NORM = (('weight', 'gamma'), ('bias', 'beta'), ('running_mean', 'running_mean'),
               ('running_var', 'running_var'))


def tensor_table(rows):
    """OrderedDict: PyTorch tensor name -> (Gluon parameter name, layout), for the given rows: a conv and
    its BN go to a ConvBN's `.conv` and `.bn`; a conv alone (bn None) or a BN alone (conv None, DenseNet's
    pre-activation layers) to the Gluon block itself."""
    table = OrderedDict()
    for row in rows:
        both = row.conv is not None and row.bn is not None
        if row.conv is not None:
            conv = row.block + ('.conv' if both else '')
            table[row.conv + '.weight'] = (conv + '.weight',
                                           ('regroup_inputs',) + row.inputs if row.inputs else 'same')
            if row.bias:
                table[row.conv + '.bias'] = (conv + '.bias', 'same')
        if row.bn is not None:
            norm = row.block + ('.bn' if both else '')
            for torch_suffix, gluon_suffix in _BATCH_NORM:
                table['%s.%s' % (row.bn, torch_suffix)] = ('%s.%s' % (norm, gluon_suffix), 'same')
    return table


def to_gluon_layout(array, layout):
    """One PyTorch array in the layout of its Gluon parameter: PyTorch's (out, in, kh, kw) is MXNet's, so
    'same' keeps it; ('regroup_inputs', sizes, order) reorders groups of input channels (axis 1)."""
    if layout == 'same':
        return array
    if layout[0] == 'regroup_inputs':
        _, sizes, order = layout
        if array.ndim != 4 or array.shape[1] != sum(sizes):
            return array  # the shape check names the tensor
        bounds = [sum(sizes[:index]) for index in range(len(sizes) + 1)]
        groups = [array[:, bounds[index]:bounds[index + 1]] for index in range(len(sizes))]
        return np.concatenate([groups[index] for index in order], axis=1)
    raise ValueError('unknown layout %r' % (layout,))


# --- what is not converted -----------------------------------------------------------------------------------
AUXILIARY = ('aux_classifier.',)  # torchvision's training-only FCNHead on layer3 (aux_loss=True)


def skip_reason(name):
    """'batch-norm counter' (num_batches_tracked, PyTorch >= 0.4.1: not a parameter), 'auxiliary classifier'
    (torchvision's aux_classifier, used in training only), else None."""
    if name.endswith('.num_batches_tracked'):
        return 'batch-norm counter'
    if name.startswith(AUXILIARY):
        return 'auxiliary classifier (training only)'
    return None


# --- the projects ------------------------------------------------------------------------------------------
ORIGINAL_RATES = (6, 12, 18)  # VoVNet-DeepLabV3 ASPP (mult=1) and DeepLab-v3-plus-cityscapes ASPP: 6, 12, 18
TORCHVISION_RATES = (12, 24, 36)  # torchvision DeepLabHead: ASPP(in_channels, [12, 24, 36])


def _classes(shapes, name):
    return int(shapes[name][0])


def _vovnet_deeplabv3(shapes):
    """VoVNet-DeepLabV3: VoVNet at its root (`stem.stem_1/conv`), or its ResNet (`conv1`, no prefix); `aspp.aspp1`."""
    if 'aspp.aspp1.weight' not in shapes:
        return None
    depth = torch_backbones.vovnet_depth(shapes)
    densenet_depth = torch_backbones.densenet_depth(shapes)
    if depth is not None:
        variant, epsilon = 'vovnet_%s' % depth, 3e-4
    elif densenet_depth is not None:
        variant, epsilon = 'densenet_%s' % densenet_depth, 3e-4
    else:
        depth = torch_backbones.resnet_depth(shapes)
        if depth is None:
            return None
        variant, epsilon = 'resnet_%s' % depth, 1e-5
    fields = dict(model_variant=variant, num_classes=_classes(shapes, 'aspp.conv3.weight'), output_stride=16,
                  atrous_rates=ORIGINAL_RATES, aspp_with_separable_conv=False, head_bn_epsilon=epsilon)
    notes = ['output_stride=16 (deeplab.py: the last stage dilated by 2)',
             'atrous_rates=6,12,18 (deeplab.py ASPP, mult=1)',
             'align_corners=true (every nn.Upsample of deeplab.py)']
    if not variant.startswith('resnet'):
        notes.append('head_bn_epsilon=0.0003 (deeplab.py ASPP passes its momentum=0.0003 where BatchNorm2d '
                     'takes eps)')
    return fields, notes


def _cityscapes_deeplabv3plus(shapes):
    """DeepLab-v3-plus-cityscapes: `backbone.conv1` ResNet, `aspp.conv1.conv`, `decoder.conv_low`."""
    if 'decoder.conv_low.conv.weight' not in shapes or 'aspp.conv1.conv.weight' not in shapes:
        return None
    depth = torch_backbones.resnet_depth(shapes, 'backbone.')
    if depth is None:
        return None
    if 'aspp.conv1x1.conv.weight' in shapes:  # its 1x1 keeps padding=1: a 3x3 map resized over the features
        raise ConversionError('DeepLab-v3-plus-cityscapes with aspp_global_feature=True is not supported (its '
                              'released model has none)')
    fields = dict(model_variant='resnet_%s' % depth, num_classes=_classes(shapes, 'decoder.conv_out.weight'),
                  output_stride=16, atrous_rates=ORIGINAL_RATES, aspp_with_separable_conv=False,
                  add_image_level_feature=False, decoder_output_stride=(4,), decoder_use_separable_conv=False,
                  relu_slope=0.01, head_conv_bias=True, logits_bias=False, first_unit_dilated=True,
                  aspp_projection_padding=1)
    notes = ['output_stride=16 (Resnet101(stride=16): layer4 dilated by 2, every block)',
             'atrous_rates=6,12,18 (ASPP of deeplabv3plus.py)',
             'relu_slope=0.01 (InPlaceABN: leaky ReLU after every BN but a block\'s last)',
             'aspp_projection_padding=1 (aspp.conv_out: a 1x1 ConvBNReLU with its default padding=1)',
             'align_corners=true (every F.interpolate of deeplabv3plus.py)']
    return fields, notes


def _torchvision(shapes):
    """torchvision's DeepLabV3: `backbone.conv1` ResNet or `backbone.0` MobileNet-v3 (its features, with
    `backbone.16` the last conv), `classifier.0.convs` (DeepLabHead)."""
    if 'classifier.0.convs.0.0.weight' not in shapes:
        return None
    common = dict(num_classes=_classes(shapes, 'classifier.4.weight'), atrous_rates=TORCHVISION_RATES,
                  aspp_with_separable_conv=False, head_output_conv=True, align_corners=False)
    notes = ['atrous_rates=12,24,36 (DeepLabHead)', 'align_corners=false (torchvision\'s F.interpolate)']
    last = shapes.get('backbone.16.0.weight')
    if last is not None and tuple(last) == (960, 160, 1, 1):
        return (dict(common, model_variant='mobilenet_v3_large', output_stride=16),
                ['output_stride=16 (mobilenet_v3_large(dilated=True): the last stage at rate 2)'] + notes)
    depth = torch_backbones.resnet_depth(shapes, 'backbone.')
    if depth is None:
        return None
    return (dict(common, model_variant='resnet_%s' % depth, output_stride=8),
            ['output_stride=8 (replace_stride_with_dilation=[False, True, True])'] + notes)


Project = namedtuple('Project', ['detect', 'backbone_rows', 'head_rows'])
PROJECTS = {
    'vovnet_deeplabv3': Project(_vovnet_deeplabv3, lambda spec: _backbone_rows(spec, ''),
                                torch_heads.vovnet_deeplab_head),
    'cityscapes_deeplabv3plus': Project(_cityscapes_deeplabv3plus, lambda spec: _backbone_rows(spec, 'backbone.'),
                                        torch_heads.cityscapes_deeplab_head),
    'torchvision': Project(_torchvision, lambda spec: _backbone_rows(spec, 'backbone.'), torch_heads.torchvision_head),
}
PROJECT_NAMES = {'vovnet_deeplabv3': 'VoVNet-DeepLabV3', 'cityscapes_deeplabv3plus': 'DeepLab-v3-plus-cityscapes',
                 'torchvision': 'torchvision DeepLabV3'}


def _backbone_rows(spec, prefix):
    if spec.family == 'torch_mobilenet':
        rows = torch_backbones.mobilenet_rows(spec.model_variant, prefix)
    elif spec.family == 'densenet':
        rows = torch_backbones.densenet_rows(int(spec.model_variant.rsplit('_', 1)[1]))
    elif spec.family == 'vovnet':
        rows = torch_backbones.vovnet_rows(int(spec.model_variant.rsplit('_', 1)[1]))
    else:
        rows = torch_backbones.resnet_rows(int(spec.model_variant.rsplit('_', 1)[1]), prefix)
    return [row._replace(block='backbone.' + row.block) for row in rows]


def _unsupported(shapes):
    """Why a state dict of a known PyTorch project is not converted yet, or None."""
    if 'classifier.cbr.0.weight' in shapes:
        return 'torchvision\'s LR-ASPP (lraspp_mobilenet_v3_large) is not supported yet'
    if 'classifier.0.weight' in shapes and 'backbone.conv1.weight' in shapes:
        return 'torchvision\'s FCN (fcn_resnet50/101) is not supported yet'
    if 'fc.weight' in shapes and 'conv1.weight' in shapes:
        return 'an ImageNet ResNet classifier, not a DeepLab (PyTorch classifiers are not converted)'
    return None


def detect_model(shapes):
    """(ModelSpec, notes, project) of a PyTorch state dict from its model tensors' {name: shape}.

    notes: what the file does not record (output stride, rates, ...), taken from the project's code.
    Raises ConversionError naming what was found for anything else."""
    found = [(project, result) for project, entry in PROJECTS.items()
             for result in [entry.detect(shapes)] if result is not None]
    if len(found) != 1:
        reason = _unsupported(shapes)
        roots = sorted({name.split('.', 1)[0] for name in shapes})
        raise ConversionError('%s: its modules: %s' % (
            reason or 'not a PyTorch DeepLab of a known project (%s)' % ', '.join(PROJECT_NAMES.values()),
            ', '.join(roots[:8]) + (', ...' if len(roots) > 8 else '')))
    project, (fields, notes) = found[0]
    try:
        return ModelSpec(**fields), notes, project
    except ValueError as error:
        raise ConversionError('unsupported %s network: %s' % (PROJECT_NAMES[project], error)) from None


def table_for(spec, project):
    """The tensor table of a ModelSpec as `project` names its tensors."""
    entry = PROJECTS[project]
    return tensor_table(entry.backbone_rows(spec) + entry.head_rows(spec))


def main(argv):
    project = argv[1] if len(argv) > 1 else 'vovnet_deeplabv3'
    examples = {'vovnet_deeplabv3': dict(model_variant='vovnet_39', num_classes=21, atrous_rates=ORIGINAL_RATES,
                                         aspp_with_separable_conv=False),
                'cityscapes_deeplabv3plus': dict(model_variant='resnet_101', num_classes=19,
                                                 atrous_rates=ORIGINAL_RATES, add_image_level_feature=False,
                                                 aspp_with_separable_conv=False, decoder_output_stride=(4,)),
                'torchvision': dict(model_variant='resnet_50', num_classes=21, atrous_rates=TORCHVISION_RATES,
                                    aspp_with_separable_conv=False, head_output_conv=True)}
    fields = dict(examples[project], **({'model_variant': argv[2]} if len(argv) > 2 else {}))
    for name, (gluon_name, layout) in table_for(ModelSpec(**fields), project).items():
        print('%-70s %-55s %s' % (name, gluon_name, layout))


if __name__ == '__main__':
    main(sys.argv)
