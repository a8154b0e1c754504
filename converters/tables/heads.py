"""The head rows of the mapping (official model.py / dense_prediction_cell.py scopes -> Gluon blocks of
`mylib.models.DeepLab`), and what a checkpoint's head is, read from its tensors' names and shapes."""
from mylib.models.spec import DPC_BRANCH5_TOP1_CITYSCAPES, default_rates

from .xception import separable_rows

LOGITS = 'logits/semantic'  # official get_branch_logits: scope 'logits', scope_suffix 'semantic'


def flag_text(value):
    """A field's value as the official flag writes it: 6,12,18; true; 16."""
    if isinstance(value, (tuple, list)):
        return ','.join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def conv_rows(tf_scope, gluon_block, separable):
    """A 3x3 conv + BN of the head: split separable (two rows) or plain."""
    return separable_rows(tf_scope, gluon_block) if separable else [(tf_scope, gluon_block, 'conv_bn')]


def context_rows(spec):
    """ASPP (official extract_features) or the dense prediction cell (scope meta_architecture)."""
    if spec.dense_prediction_cell_config:
        rows = []
        for index, _ in enumerate(spec.dense_prediction_cell_config):
            rows += separable_rows('meta_architecture/branch%d' % index, 'dpc.branch%d' % index)
        return rows + [('meta_architecture/concat_projection', 'dpc.projection', 'conv_bn')]
    rows = []
    if spec.add_image_level_feature:
        rows.append(('image_pooling', 'aspp.image_pooling.conv', 'conv_bias') if spec.aspp_with_squeeze_and_excitation
                    else ('image_pooling', 'aspp.image_pooling', 'conv_bn'))
    rows.append(('aspp0', 'aspp.aspp0', 'conv_bn'))
    for index, _ in enumerate(spec.atrous_rates or (), 1):
        rows += conv_rows('aspp%d' % index, 'aspp.aspp%d' % index, spec.aspp_with_separable_conv)
    if spec.aspp_with_concat_projection:
        rows.append(('concat_projection', 'aspp.projection', 'conv_bn'))
    return rows


def decoder_rows(spec):
    """The decoder (official refine_by_decoder, one stage: no scope suffix)."""
    if not spec.decoder_output_stride:
        return []
    if spec.decoder_use_sum_merge:
        if spec.decoder_output_is_logits:
            return [('decoder/feature_projection0', 'decoder.feature_projection', 'conv_bias'),
                    ('decoder/decoder_conv0', 'decoder.conv0', 'conv_bias')]
        rows = [('decoder/feature_projection0', 'decoder.feature_projection', 'conv_bn')]
        if spec.decoder_use_separable_conv:
            return rows + separable_rows('decoder/decoder_split_sep_conv0', 'decoder.split_sep_conv0')
        return rows + [('decoder/decoder_conv0', 'decoder.conv0', 'conv_bn')]
    rows = [('decoder/feature_projection0', 'decoder.feature_projection', 'conv_bn')]
    if spec.decoder_use_separable_conv:
        return (rows + separable_rows('decoder/decoder_conv0', 'decoder.conv0')
                + separable_rows('decoder/decoder_conv1', 'decoder.conv1'))
    # slim.repeat(..., 2, scope='decoder_conv0') names its convs decoder_conv0/decoder_conv0_1 and _2
    return rows + [('decoder/decoder_conv0/decoder_conv0_1', 'decoder.conv0', 'conv_bn'),
                   ('decoder/decoder_conv0/decoder_conv0_2', 'decoder.conv1', 'conv_bn')]


def head_rows(spec):
    """Every row after the backbone: context head, decoder, logits."""
    logits = [] if spec.decoder_output_is_logits else [(LOGITS, 'logits', 'conv_bias')]
    return context_rows(spec) + decoder_rows(spec) + logits


def detect_head(shapes, family_defaults):
    """The head fields of a ModelSpec read from a DeepLab checkpoint's {name: shape}.

    family_defaults: what a checkpoint does not record (output stride, decoder stride, image pooling
    window...), from the official release flags of its family; the names' presence and the shapes
    decide the rest. Returns (fields, notes): each note, 'flag=value (why)', says a field that came from
    the defaults.
    Raises ValueError naming the tensors when the head is not one the official code builds.
    """
    fields, notes = {}, []
    if LOGITS + '/weights' in shapes:
        fields['num_classes'] = int(shapes[LOGITS + '/weights'][-1])
    elif 'decoder/decoder_conv0/biases' in shapes:
        fields.update(num_classes=int(shapes['decoder/decoder_conv0/biases'][0]), decoder_output_is_logits=True)
    else:
        raise ValueError('no logits: neither %s/weights nor decoder/decoder_conv0/biases is in the checkpoint' % LOGITS)
    output_stride = family_defaults.get('output_stride', 16)
    fields['output_stride'] = output_stride
    notes.append('output_stride=%d (the releases\' evaluation; load_model(path, output_stride=) runs others)'
                 % output_stride)
    dpc_branches = {name.split('/')[1].split('_')[0] for name in shapes
                    if name.startswith('meta_architecture/branch')}
    if dpc_branches:
        if len(dpc_branches) != len(DPC_BRANCH5_TOP1_CITYSCAPES):
            raise ValueError('dense prediction cell with %d branches (meta_architecture/branch*); the official cell '
                             '(dense_prediction_cell_branch5_top1_cityscapes.json) has %d'
                             % (len(dpc_branches), len(DPC_BRANCH5_TOP1_CITYSCAPES)))
        fields['dense_prediction_cell_config'] = DPC_BRANCH5_TOP1_CITYSCAPES
        notes.append('dense_prediction_cell_json=dense_prediction_cell_branch5_top1_cityscapes.json (the cell of '
                     'the official releases; the branch wiring and rates are not in a checkpoint)')
    else:
        fields.update(_aspp_fields(shapes, output_stride, family_defaults, notes))
    fields.update(_decoder_fields(shapes, family_defaults, notes))
    return fields, notes


def _aspp_fields(shapes, output_stride, family_defaults, notes):
    if 'aspp0/weights' not in shapes:
        raise ValueError('neither ASPP (aspp0/weights) nor a dense prediction cell (meta_architecture/) is in the '
                         'checkpoint')
    fields = {'aspp_convs_filters': int(shapes['aspp0/weights'][-1]),
              'add_image_level_feature': 'image_pooling/weights' in shapes,
              'aspp_with_squeeze_and_excitation': 'image_pooling/biases' in shapes,
              'aspp_with_concat_projection': 'concat_projection/weights' in shapes}
    if fields['aspp_with_squeeze_and_excitation']:
        for name in ('image_pooling_crop_size', 'image_pooling_stride', 'image_se_uses_qsigmoid'):
            fields[name] = family_defaults[name]
        notes += ['%s=%s (the official release flags)' % (name, flag_text(fields[name]))
                  for name in ('image_pooling_crop_size', 'image_pooling_stride', 'image_se_uses_qsigmoid')]
    branches = 0
    while ('aspp%d_depthwise/depthwise_weights' % (branches + 1) in shapes
           or 'aspp%d/weights' % (branches + 1) in shapes):
        branches += 1
    if branches:
        if branches != 3:
            raise ValueError('ASPP with %d atrous branches (aspp1...aspp%d); the official releases have 3, whose '
                             'rates the checkpoint does not record' % (branches, branches))
        fields['atrous_rates'] = default_rates(output_stride)
        fields['aspp_with_separable_conv'] = 'aspp1_depthwise/depthwise_weights' in shapes
        notes.append('atrous_rates=%s (the official rates at output_stride=%d)'
                     % (flag_text(fields['atrous_rates']), output_stride))
    return fields


def _decoder_fields(shapes, family_defaults, notes):
    if 'decoder/feature_projection0/weights' not in shapes:
        return {}
    concat_convs = ('decoder/decoder_conv1', 'decoder/decoder_conv0/decoder_conv0_')  # the second conv
    sum_merge = not any(name.startswith(concat_convs) for name in shapes)
    fields = {'decoder_use_sum_merge': sum_merge,
              'decoder_output_stride': family_defaults.get('decoder_output_stride_sum_merge' if sum_merge
                                                           else 'decoder_output_stride', (4,))}
    if 'decoder/decoder_conv0/biases' not in shapes:  # (a decoder that outputs the logits has only 1x1 convs)
        fields['decoder_use_separable_conv'] = any(
            name.startswith('decoder/decoder_conv0_depthwise') or name.startswith('decoder/decoder_split_sep_conv0_')
            for name in shapes)
    if sum_merge:
        fields['decoder_filters'] = int(shapes['decoder/feature_projection0/weights'][-1])
    else:
        conv0 = ('decoder/decoder_conv0_pointwise' if fields['decoder_use_separable_conv']
                 else 'decoder/decoder_conv0/decoder_conv0_1')
        fields['decoder_filters'] = int(shapes[conv0 + '/weights'][-1])
    notes.append('decoder_output_stride=%s (the official decoder end point of this family)'
                 % flag_text(fields['decoder_output_stride']))
    return fields
