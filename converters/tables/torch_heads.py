"""PyTorch names of the heads of the PyTorch DeepLabs and their Gluon blocks of `mylib.models.DeepLab`.

Each project names its head its own way; the Gluon heads are the official ones (`mylib.models.heads`).
Where a project concatenates in another order than the official head (image pooling last instead of
first; the decoder's skip before the upsampled features), the row says how to regroup the next conv's
input channels: `inputs=(sizes, order)`, applied by `converters.torch_mapping.to_gluon_layout`.
"""
from converters.tables.torch_backbones import row
from mylib.models.heads import SKIP_PROJECTION


def _pooling_last(spec, branches):
    """Regrouping of a projection over [branches..., image pooling] into the official [image pooling, ...]."""
    filters = spec.aspp_convs_filters
    return ((filters * branches, filters), (1, 0))


def vovnet_deeplab_head(spec):
    """VoVNet-DeepLabV3's ASPP (deeplab.py `ASPP`): aspp1 (1x1), aspp2-4 (3x3 at 6/12/18), aspp5 (image
    pooling), each with `<name>_bn`; conv2 + bn2 over their concat; conv3, the logits (with bias)."""
    rows = [row('aspp.aspp1', 'aspp.aspp1_bn', 'aspp.aspp0')]
    rows += [row('aspp.aspp%d' % (index + 1), 'aspp.aspp%d_bn' % (index + 1), 'aspp.aspp%d' % index)
             for index in range(1, len(spec.atrous_rates) + 1)]
    rows.append(row('aspp.aspp5', 'aspp.aspp5_bn', 'aspp.image_pooling'))
    rows.append(row('aspp.conv2', 'aspp.bn2', 'aspp.projection',
                    inputs=_pooling_last(spec, 1 + len(spec.atrous_rates))))
    return rows + [row('aspp.conv3', None, 'logits', bias=True)]


def torchvision_head(spec):
    """torchvision's DeepLabHead (`classifier.0` ASPP: convs.0 1x1, convs.1-3 ASPPConv, convs.4 ASPPPooling,
    project; classifier.1-2 the 3x3 conv + BN; classifier.4 the logits, with bias)."""
    rows = [row('classifier.0.convs.0.0', 'classifier.0.convs.0.1', 'aspp.aspp0')]
    rows += [row('classifier.0.convs.%d.0' % index, 'classifier.0.convs.%d.1' % index, 'aspp.aspp%d' % index)
             for index in range(1, len(spec.atrous_rates) + 1)]
    pooling = len(spec.atrous_rates) + 1
    rows.append(row('classifier.0.convs.%d.1' % pooling, 'classifier.0.convs.%d.2' % pooling, 'aspp.image_pooling'))
    rows.append(row('classifier.0.project.0', 'classifier.0.project.1', 'aspp.projection',
                    inputs=_pooling_last(spec, pooling)))
    rows.append(row('classifier.1', 'classifier.2', 'output_conv'))
    return rows + [row('classifier.4', None, 'logits', bias=True)]


def cityscapes_deeplab_head(spec):
    """DeepLab-v3-plus-cityscapes' ASPP and Decoder (models/deeplabv3plus.py): every ConvBNReLU is
    `<name>.conv` (with bias) + `<name>.bn`; aspp.conv1-4, aspp.conv_out (no image pooling: the release's
    aspp_global_feature=False);
    decoder.conv_low, conv_cat.0 over [skip, upsampled features], conv_cat.1, conv_out (the logits, no bias)."""
    rows = [row('aspp.conv%d.conv' % (index + 1), 'aspp.conv%d.bn' % (index + 1), 'aspp.aspp%d' % index, bias=True)
            for index in range(len(spec.atrous_rates) + 1)]
    rows.append(row('aspp.conv_out.conv', 'aspp.conv_out.bn', 'aspp.projection', bias=True))
    rows += [row('decoder.conv_low.conv', 'decoder.conv_low.bn', 'decoder.feature_projection', bias=True),
             row('decoder.conv_cat.0.conv', 'decoder.conv_cat.0.bn', 'decoder.conv0', bias=True,
                 inputs=((SKIP_PROJECTION, spec.aspp_convs_filters), (1, 0))),
             row('decoder.conv_cat.1.conv', 'decoder.conv_cat.1.bn', 'decoder.conv1', bias=True)]
    return rows + [row('decoder.conv_out', None, 'logits')]
