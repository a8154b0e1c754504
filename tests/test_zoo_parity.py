"""Full-size parity of every family of the official model zoo with the official graph (../shared/reference/zoo,
and tests/data/official for EdgeTPU-DeepLab).

For each reference configuration the checkpoint is made with its recipe and converted by
`converters/extract_weights.py` as a user would (the `zoo_params` fixture of conftest.py), loaded
with `mylib.load_model`, and compared with the official outputs: upsampled logits within 1e-3 of
max |logit|, labels equal on >= 99.9 % of the pixels (classifier: logits within 1e-3 of max |logit|,
the same top-5 up to ties within that). The official graph against itself (oneDNN on/off) moves the
logits by 5e-6 to 3.3e-5 of max |logit|.
"""
import json

import mxnet as mx
import numpy as np
import pytest
from helpers import ZOO_REFERENCES, zoo_input, zoo_root

import mylib
from converters.mapping import detect_model, skip_reason, table_for, to_gluon_layout
from mylib.inference import LogitsRunner
from mylib.models import ModelSpec, build_network
from mylib.models.heads import q_sigmoid
from mylib.models.spec import RELEASE_FLAGS
from mylib.models.taps import record
from mylib.weights import read_metadata

LOGIT_TOLERANCE = 1e-3  # of max |official logit|
LABEL_AGREEMENT = 0.999
CLASSIFIERS = {'mnv2_imagenet': 'mobilenet_v2', 'edgetpu_imagenet': 'mobilenet_edgetpu'}  # the slim ImageNet ones
SEGMENTATION = [folder for folder in ZOO_REFERENCES if folder not in CLASSIFIERS]


def config(folder):
    with open(zoo_root(folder) / folder / 'config.json') as stream:
        return json.load(stream)


def upsample(logits_nhwc, crop):
    """The official final upsampling: bilinear, corners aligned, NHWC -> NCHW."""
    data = mx.nd.array(logits_nhwc.transpose(0, 3, 1, 2))
    return mx.nd.contrib.BilinearResize2D(data, height=crop[0], width=crop[1], align_corners=True).asnumpy()


@pytest.mark.parametrize('folder', SEGMENTATION)
def test_segmentation_matches_official_graph(zoo_params, folder):
    settings = config(folder)
    net = mylib.load_model(str(zoo_params[folder][0]), output_stride=settings['output_stride'])
    runner = LogitsRunner(mylib.load_model(str(zoo_params[folder][0]), output_stride=settings['output_stride']))
    net.hybridize(static_alloc=True, static_shape=True)
    crop = settings['crop_size']
    for photo in settings['images']:
        official = dict(np.load(zoo_root(folder) / folder / (photo + '.npz')))
        x = zoo_input(official['input_uint8'], crop)
        logits = net(x).asnumpy()
        expected = upsample(official['merged_logits'], crop)
        assert logits.shape == expected.shape, photo
        scale = np.abs(expected).max()
        assert np.abs(logits - expected).max() <= LOGIT_TOLERANCE * scale, photo
        agreement = (logits.argmax(1) == official['labels']).mean()
        assert agreement >= LABEL_AGREEMENT, '%s: labels agree on %.4f %%' % (photo, 100 * agreement)
        # the scripts' path (oneDNN-fused: batch norms folded into the convolutions), before the upsampling
        merged, official_merged = runner(x).asnumpy(), official['merged_logits'].transpose(0, 3, 1, 2)
        assert merged.shape == official_merged.shape, photo
        assert np.abs(merged - official_merged).max() <= LOGIT_TOLERANCE * np.abs(official_merged).max(), photo


@pytest.mark.parametrize('folder', sorted(CLASSIFIERS))
def test_classifier_matches_official_graph(zoo_params, folder):
    net = mylib.load_model(str(zoo_params[folder][0]))
    official = dict(np.load(zoo_root(folder) / folder / 'chelsea.npz'))
    x = mx.nd.array((official['model_input'].transpose(0, 3, 1, 2) + 1.0) * 127.5)  # the network's input, 0-255
    with record(net, ['logits']) as recorded:
        logits = net(x).asnumpy()[0]
    pooled = recorded['logits'].inputs[0].asnumpy().reshape(-1)  # official global_pool (dropout: identity)
    expected_pool = official['global_pool'].reshape(-1)
    assert pooled.shape == expected_pool.shape
    assert np.abs(pooled - expected_pool).max() <= LOGIT_TOLERANCE * np.abs(expected_pool).max()
    expected = official['logits'].reshape(-1)
    tolerance = LOGIT_TOLERANCE * np.abs(expected).max()
    assert logits.shape == expected.shape and np.abs(logits - expected).max() <= tolerance
    ours, theirs = np.argsort(-logits)[:5], np.argsort(-expected)[:5]
    assert np.abs(expected[ours] - expected[theirs]).max() <= 2 * tolerance  # same top-5, up to near ties
    net.hybridize()
    assert np.abs(net(x).asnumpy()[0] - expected).max() <= tolerance


@pytest.mark.fast
@pytest.mark.parametrize('folder', list(ZOO_REFERENCES))
def test_detection_from_names_and_shapes_and_every_tensor_mapped(folder):
    """From the manifest alone (names, shapes): the network the official graph was built with, and a table that
    maps every model tensor once, by name, to a parameter of that network with the layout-changed shape."""
    with open(zoo_root(folder) / ('manifest_%s.json' % ZOO_REFERENCES[folder])) as stream:
        manifest = {entry['name']: tuple(entry['shape']) for entry in json.load(stream)}
    shapes = {name: shape for name, shape in manifest.items() if not skip_reason(name)}
    spec, _ = detect_model(shapes)
    if folder in CLASSIFIERS:
        assert (spec.task, spec.model_variant, spec.num_classes) == ('classification', CLASSIFIERS[folder], 1001)
    else:  # a checkpoint has no output stride: the release flags' (also the configuration's but for two of ours)
        assert spec.output_stride == RELEASE_FLAGS[spec.model_variant]['output_stride']
        assert spec.with_output_stride(config(folder)['output_stride']) == ModelSpec.from_model_options(
            config(folder)['model_options'])
    table = table_for(spec)
    assert sorted(table) == sorted(shapes)
    params = build_network(spec)._collect_params_with_prefix()
    assert sorted(gluon for gluon, _ in table.values()) == sorted(params)
    for name, (gluon, layout) in table.items():
        assert to_gluon_layout(np.zeros(shapes[name], np.float32), layout).shape == params[gluon].shape, name


@pytest.mark.parametrize('folder', list(ZOO_REFERENCES))
def test_converter_finds_the_official_model_options(zoo_params, folder):
    """The specification the converter writes is the official ModelOptions of the reference's graph."""
    params, stdout = zoo_params[folder]
    spec = ModelSpec.from_json(read_metadata(params)['model'])
    settings = config(folder)
    if folder in CLASSIFIERS:
        assert (spec.task, spec.model_variant, spec.num_classes) == ('classification', CLASSIFIERS[folder], 1001)
    else:
        assert spec.output_stride == RELEASE_FLAGS[spec.model_variant]['output_stride']
        assert spec.with_output_stride(settings['output_stride']) == ModelSpec.from_model_options(
            settings['model_options'])
    assert spec.describe() in stdout and 'mylib.load_model' in stdout


# Each stage the official files list (stages.json, or config.json images.<photo>.stages) as what a block of
# ours takes or gives in one forward pass: stage -> (block path, view). The view of the recorded call:
#   None         the block's output
#   0, 1         that element of a block's tuple output: (skip, features) of a backbone with a decoder tap,
#                (output, depthwise output) of a MobileNet layer that feeds the decoder
#   'input'      the block's first input
#   'corner'     the top-left pixel of the output: the official 1x1 map, which our block spreads over the map
#   'q_sigmoid'  relu6(output + 3) * 0.16667: the MobileNet-v3 squeeze-excite gate, computed inside
#                SqueezeExcite after its `excite` conv (official squeeze_excite/Conv_1/mul)
# Official MobileNet scopes: Conv = layer_1, expanded_conv = layer_2, expanded_conv_<i> = layer_<i + 2>,
# v3's Conv_1 = layer_17; the stage names carry these numbers (but one, marked).
IMAGE_POOLING = {
    'image_pooling_pooled': ('aspp.image_pooling.conv', 'input'),  # official AvgPool2D, 1x1
    'image_pooling': ('aspp.image_pooling', 'corner'),  # conv + BN + ReLU, 1x1
}
STAGE_TAPS = {
    'x71_dpc_os16': {
        'preprocessed_input': ('backbone', 'input'),
        'entry_flow_conv1_1': ('backbone.conv1_1', None),
        'entry_flow_block1': ('backbone.entry_block1_unit1', None),
        'decoder_skip_endpoint': ('backbone.entry_block3_unit1', 1),
        'entry_flow_block3': ('backbone.entry_block3_unit1', 0),
        'entry_flow_block5': ('backbone.entry_block5_unit1', None),
        'middle_flow_block1': ('backbone.middle_block1_unit16', None),
        'exit_flow_block1': ('backbone.exit_block1_unit1', None),
        'backbone_output': ('backbone', 1),
        **{'dpc_branch%d' % index: ('dpc.branch%d' % index, None) for index in range(5)},
        'dpc_concat_projection': ('dpc.projection', None),
        'decoder_feature_projection0': ('decoder.feature_projection', None),
        'decoder_conv1': ('decoder.conv1', None),
        'logits_conv': ('logits', None),
    },
    'r101_v3_os16': {  # DeepLab v3, no decoder: the backbone returns (features,)
        'preprocessed_input': ('backbone', 'input'),
        'root_conv1_1': ('backbone.conv1_1', None),
        'root_conv1_3': ('backbone.conv1_3', None),
        'pool1': ('backbone.block1_unit1', 'input'),  # same_max_pool inside the backbone's forward
        'block1': ('backbone.block1_unit3', None),
        'block2': ('backbone.block2_unit4', None),
        'block3_unit_1': ('backbone.block3_unit1', None),
        'block3': ('backbone.block3_unit23', None),
        'block4_unit_1': ('backbone.block4_unit1', None),
        'backbone_output': ('backbone.block4_unit3', None),
        **IMAGE_POOLING,
        'aspp0': ('aspp.aspp0', None),
        'aspp1': ('aspp.aspp1', None),  # the separable branches' pointwise ReLU
        'aspp3': ('aspp.aspp3', None),
        'concat_projection': ('aspp.projection', None),
        'logits_conv': ('logits', None),
    },
    'mnv2_voc_os16': {  # DeepLab v3 head without atrous branches: [image pooling, aspp0] -> projection
        'preprocessed_input': ('backbone', 'input'),
        'layer_1_conv': ('backbone.layer_1', None),
        'layer_2_output_first_block_no_expansion': ('backbone.layer_2', None),
        'layer_3_expansion_output': ('backbone.layer_3.expand', None),
        'layer_3_output_stride4': ('backbone.layer_3', None),
        'layer_4_depthwise_output_decoder_skip_os4': ('backbone.layer_4.depthwise', None),
        'layer_4_output_residual': ('backbone.layer_4', None),
        'layer_7_output_stride8': ('backbone.layer_7', None),
        'layer_8_depthwise_output': ('backbone.layer_8.depthwise', None),
        'layer_11_output': ('backbone.layer_11', None),
        'layer_14_output': ('backbone.layer_14', None),
        'layer_15_depthwise_output': ('backbone.layer_15.depthwise', None),
        'layer_17_depthwise_output': ('backbone.layer_17.depthwise', None),
        'backbone_output_layer_18': ('backbone.layer_18', None),
        **IMAGE_POOLING,
        'image_pooling_resized': ('aspp.image_pooling', None),
        'aspp0': ('aspp.aspp0', None),
        'aspp_concat': ('aspp.projection', 'input'),
        'concat_projection': ('aspp.projection', None),
        'logits_conv': ('logits', None),
    },
    'mnv3l_city': {  # OS32; image pooling is a gate on aspp0 (no projection); sum-merge decoder gives the logits
        'preprocessed_input': ('backbone', 'input'),
        'layer_1_conv_hswish': ('backbone.layer_1', None),
        'layer_2_output': ('backbone.layer_2', None),
        'layer_4_output': ('backbone.layer_4', None),
        'layer_5_depthwise_output': ('backbone.layer_5.depthwise', None),
        'layer_5_se_gate': ('backbone.layer_5.squeeze_excite.excite', 'q_sigmoid'),
        'layer_5_output': ('backbone.layer_5', None),
        'layer_7_depthwise_output_decoder_skip_os8': ('backbone.layer_7', 1),
        'layer_7_output': ('backbone.layer_7', 0),
        'layer_8_output_hswish': ('backbone.layer_8', None),
        'layer_12_output': ('backbone.layer_12', None),
        'layer_13_output_stride32': ('backbone.layer_14', None),  # expanded_conv_12: the stage name is one short
        'layer_16_output': ('backbone.layer_16', None),
        'backbone_output_final_1x1_hswish': ('backbone.layer_17', None),
        'image_pooling_pooled': ('aspp.image_pooling.conv', 'input'),  # a 25x25 'VALID' pool of the 25x25 map
        'image_pooling_gate_qsigmoid': ('aspp.image_pooling', 'corner'),
        'image_pooling_gate_resized': ('aspp.image_pooling', None),
        'aspp0': ('aspp.aspp0', None),
        'aspp0_times_gate': ('aspp', None),
        'decoder_aspp_upsampled': ('decoder.conv0', 'input'),
        'decoder_conv0_logits_part': ('decoder.conv0', None),
        'decoder_feature_projection0_logits_part': ('decoder.feature_projection', None),
        'logits_sum': ('decoder', None),
    },
}
# EdgeTPU-DeepLab (tests/data/official): the MobileNet-v2 head on EdgeTPU-MobileNet; stage layer_<i> is the
# official end point layer_<i> (Conv, expanded_conv, expanded_conv_<i - 2>, Conv_1), fused layers included
EDGETPU_STAGES = {
    'preprocessed_input': ('backbone', 'input'),
    **{'layer_%d' % index: ('backbone.layer_%d' % index, None) for index in range(1, 25)},
    **IMAGE_POOLING,
    'image_pooling_resized': ('aspp.image_pooling', None),
    'aspp0': ('aspp.aspp0', None),
    'aspp_concat': ('aspp.projection', 'input'),
    'concat_projection': ('aspp.projection', None),
    'logits': ('logits', None),
}
STAGE_TAPS.update({'edgetpu_city_os16': EDGETPU_STAGES, 'edgetpu_slim_os8_c5': EDGETPU_STAGES})


def stage_value(tap, view):
    """The NCHW NDArray that `view` (see STAGE_TAPS) takes from one recorded call."""
    if view == 'input':
        return tap.inputs[0]
    if isinstance(view, int):
        return tap.output[view]
    if view == 'corner':
        assert (tap.output - tap.output[:, :, :1, :1]).abs().max().asscalar() == 0, 'not one pixel spread'
        return tap.output[:, :, :1, :1]
    return q_sigmoid(mx.nd, tap.output) if view == 'q_sigmoid' else tap.output


def described_stages(folder, photo):
    """The official stages of `photo`: config.json images.<photo>.stages, or else stages.json."""
    stages = config(folder)['images'][photo].get('stages')
    if stages is None:
        with open(zoo_root(folder) / folder / 'stages.json') as stream:
            stages = json.load(stream)
    return stages


@pytest.mark.parametrize('folder', sorted(STAGE_TAPS))
def test_every_stage_matches_official_graph(zoo_params, folder):
    """Each reference stage of the photo that has them, so that a departure is found where it starts:
    its first channels, channel means and standard deviation within 1e-3 of the stage's max |value|."""
    settings = config(folder)
    root = zoo_root(folder)
    photo = next(name for name in settings['images'] if (root / folder / (name + '_stages.npz')).is_file())
    described = described_stages(folder, photo)
    reference = np.load(root / folder / (photo + '_stages.npz'))
    # not hybridized: the stages are recorded
    net = mylib.load_model(str(zoo_params[folder][0]), output_stride=settings['output_stride'])
    taps = STAGE_TAPS[folder]
    assert sorted(taps) == sorted(stage['stage'] for stage in described)
    with record(net, sorted({path for path, _ in taps.values()})) as recorded:
        net(zoo_input(np.load(root / folder / (photo + '.npz'))['input_uint8'], settings['crop_size']))
    errors = {}  # stage -> max |ours - official| / max |official stage|
    for stage in described:
        name = stage['stage']
        value = stage_value(recorded[taps[name][0]], taps[name][1]).asnumpy().transpose(0, 2, 3, 1)
        assert list(value.shape) == stage['shape'], name
        first = reference[name + '.first_channels']
        errors[name] = max(np.abs(value[0, ..., :first.shape[-1]] - first).max(),
                           np.abs(value.mean(axis=(0, 1, 2)) - reference[name + '.channel_mean']).max(),
                           abs(value.std() - stage['std'])) / stage['max_abs']
    worst = max(errors, key=errors.get)
    print('\n%s: worst stage %s, %.1e of its max |value|' % (folder, worst, errors[worst]))
    assert errors[worst] <= LOGIT_TOLERANCE, {name: error for name, error in errors.items() if error > LOGIT_TOLERANCE}
