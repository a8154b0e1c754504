"""Full-size parity with the official TF DeepLab v3+ outputs (../shared/reference), at OS16, 513x513.

The checkpoint is made with the reference recipe and converted by `converters/extract_weights.py`
exactly as a user would; the model's logits are compared with those of the official graph.
Tolerances from the reference README: TF against itself (oneDNN on/off) differs by about 1e-4 of
max |logit| and 0.01 % of labels; every known porting mistake moves 15-75 % of the labels.
"""
import json
import os

import mxnet as mx
import numpy as np
import pytest
from helpers import PHOTOS, REFERENCE, official_outputs, padded_input, run_script
from PIL import Image

from mylib import DeepLabV3Plus
from mylib.inference import LogitsRunner
from mylib.models.deeplab import HEAD_DEPTH
from mylib.models.taps import record

LOGIT_TOLERANCE = 1e-3  # of max |official logit|, everywhere
LABEL_AGREEMENT = 0.999


def upsample(logits_nhwc, size):
    """The official final upsampling: bilinear, corners aligned, NHWC -> NCHW."""
    data = mx.nd.array(logits_nhwc.transpose(0, 3, 1, 2))
    return mx.nd.contrib.BilinearResize2D(data, height=size, width=size, align_corners=True).asnumpy()


@pytest.mark.parametrize('photo', PHOTOS)
def test_logits_and_labels_match_official_graph(reference_net, photo):
    official = official_outputs(photo)
    x = padded_input(official['input_uint8'])
    logits = reference_net(x).asnumpy()
    expected = upsample(official['merged_logits'], 513)
    scale = np.abs(expected).max()
    assert logits.shape == (1, 21, 513, 513)
    assert np.abs(logits - expected).max() <= LOGIT_TOLERANCE * scale
    agreement = (logits.argmax(1) == official['labels']).mean()
    assert agreement >= LABEL_AGREEMENT, 'labels agree on only %.4f %% of pixels' % (100 * agreement)


@pytest.mark.parametrize('fuse', [False, True], ids=['hybridized', 'oneDNN-fused'])
def test_stride4_logits_match_official_merged_logits(converted_reference, fuse):
    """The inference runner (plain, and fused by oneDNN as evaluation and the bench use it)."""
    net = DeepLabV3Plus(num_classes=21)
    net.load_parameters(str(converted_reference[0]))
    official = official_outputs('coffee')
    logits = LogitsRunner(net, fuse=fuse)(padded_input(official['input_uint8'])).asnumpy()
    expected = official['merged_logits'].transpose(0, 3, 1, 2)
    assert logits.shape == expected.shape == (1, 21, 129, 129)
    assert np.abs(logits - expected).max() <= LOGIT_TOLERANCE * np.abs(expected).max()


def test_predict_script_gives_the_official_labels(converted_reference, tmp_path):
    """predict.py as users run it (in its own process, oneDNN capped as the inference scripts cap it)."""
    official = official_outputs('astronaut')
    image = official['input_uint8']
    Image.fromarray(image).save(tmp_path / 'astronaut.png')  # lossless: the official input pixels
    env = dict({name: value for name, value in os.environ.items() if name != 'DNNL_MAX_CPU_ISA'}, DNNL_VERBOSE='1')
    result = run_script('predict.py', tmp_path / 'astronaut.png', '--weights', converted_reference[0],
                        '--out', tmp_path / 'masks', env=env)
    convolutions = [line for line in result.stdout.splitlines() if line.startswith('dnnl_verbose,exec,cpu,conv')]
    assert convolutions and not any('brgconv' in line for line in convolutions)  # the capped kernels ran
    labels = np.array(Image.open(tmp_path / 'masks' / 'astronaut.png'))
    expected = official['labels'][0, :image.shape[0], :image.shape[1]]
    assert labels.shape == expected.shape and (labels == expected).mean() >= LABEL_AGREEMENT


# Each stage of the official graph (stages.json) as what a block of ours takes or gives, recorded from the
# model's own forward pass: stage -> (block path, 'input' or 'output', index in it, first channels or None).
# An index applies to a tuple (a block's inputs, or the outputs of a block that returns two); None: one output.
# 'corner' instead of channels: the top-left pixel of a map that spreads one vector everywhere.
STAGE_TAPS = {
    'preprocessed_input': ('backbone.conv1_1', 'input', 0, None),
    'entry_flow_conv1_1': ('backbone.conv1_1', 'output', None, None),
    'entry_flow_conv1_2': ('backbone.conv1_2', 'output', None, None),
    'entry_flow_block1': ('backbone.entry_block1_unit1', 'output', None, None),
    'decoder_skip_endpoint': ('backbone.entry_block2_unit1', 'output', 1, None),
    'entry_flow_block2': ('backbone.entry_block2_unit1', 'output', 0, None),
    'entry_flow_block3': ('backbone.entry_block3_unit1', 'output', None, None),
    'middle_flow_unit_1': ('backbone.middle_block1_unit1', 'output', None, None),
    'middle_flow_unit_8': ('backbone.middle_block1_unit8', 'output', None, None),
    'middle_flow_block1': ('backbone.middle_block1_unit16', 'output', None, None),
    'exit_flow_block1': ('backbone.exit_block1_unit1', 'output', None, None),
    'exit_flow_block2_sepconv1_depthwise': ('backbone.exit_block2_unit1.separable_conv1.depthwise', 'output', None,
                                            None),
    'backbone_output': ('backbone', 'output', 1, None),  # (skip, features)
    'image_pooling_pooled': ('aspp.image_pooling.conv', 'input', 0, None),
    'image_pooling': ('aspp.image_pooling', 'output', None, 'corner'),  # the 1x1 feature, spread over the map
    'image_pooling_resized': ('aspp.projection', 'input', 0, HEAD_DEPTH),  # the first branch of the concat
    'aspp0': ('aspp.aspp0', 'output', None, None),
    'aspp1_depthwise': ('aspp.aspp1.depthwise', 'output', None, None),
    'aspp1': ('aspp.aspp1', 'output', None, None),
    'aspp2': ('aspp.aspp2', 'output', None, None),
    'aspp3': ('aspp.aspp3', 'output', None, None),
    'aspp_concat': ('aspp.projection', 'input', 0, None),
    'concat_projection': ('aspp.projection', 'output', None, None),
    'decoder_aspp_upsampled': ('decoder.conv0', 'input', 0, HEAD_DEPTH),  # [ASPP resized, skip projected]
    'decoder_feature_projection0': ('decoder.feature_projection', 'output', None, None),
    'decoder_concat': ('decoder.conv0', 'input', 0, None),
    'decoder_conv0_depthwise': ('decoder.conv0.depthwise', 'output', None, None),
    'decoder_conv0': ('decoder.conv0', 'output', None, None),
    'decoder_conv1': ('decoder.conv1', 'output', None, None),
    'logits_conv': ('logits', 'output', None, None),
}


def trace_stages(net, x):
    """The stages of the official graph's stages.json, NHWC numpy, from one run of `net(x)` (x NCHW).

    `net` must not be hybridized: the hooks of `mylib.models.taps.record` see imperative calls only.
    """
    with record(net, sorted({path for path, _, _, _ in STAGE_TAPS.values()})) as taps:
        logits = net(x)
    assert logits.shape[2:] == x.shape[2:]  # the whole forward pass ran, to the final upsampling
    stages = {}
    for stage, (path, side, index, channels) in STAGE_TAPS.items():
        value = taps[path].inputs if side == 'input' else taps[path].output
        value = value if index is None else value[index]
        value = value[:, :, :1, :1] if channels == 'corner' else value if channels is None else value[:, :channels]
        stages[stage] = value.asnumpy().transpose(0, 2, 3, 1)
    return stages


def test_every_stage_matches_official_graph(converted_reference):
    """Each of the 30 reference stages (grace_hopper), so that a departure is found where it starts."""
    net = DeepLabV3Plus(num_classes=21, output_stride=16)  # not hybridized: the stages are recorded
    net.load_parameters(str(converted_reference[0]))
    with open(REFERENCE / 'os16' / 'stages.json') as stream:
        described = json.load(stream)
    reference = np.load(REFERENCE / 'os16' / 'grace_hopper_stages.npz')
    ours = trace_stages(net, padded_input(official_outputs('grace_hopper')['input_uint8']))
    assert sorted(ours) == sorted(stage['stage'] for stage in described)
    for stage in described:
        name, value = stage['stage'], ours[stage['stage']]
        assert list(value.shape) == stage['shape'], name
        scale = stage['max_abs']
        first = reference[name + '.first_channels']
        assert np.abs(value[0, ..., :first.shape[-1]] - first).max() <= LOGIT_TOLERANCE * scale, name
        channel_mean = value.mean(axis=(0, 1, 2))
        assert np.abs(channel_mean - reference[name + '.channel_mean']).max() <= LOGIT_TOLERANCE * scale, name
        assert abs(value.std() - stage['std']) <= LOGIT_TOLERANCE * scale, name
