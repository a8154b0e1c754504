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
from conftest import PHOTOS, REFERENCE, official_outputs, padded_input, run_script
from PIL import Image

from mylib import DeepLabV3Plus
from mylib.inference import LogitsRunner

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


def trace_stages(net, x):
    """The intermediate tensors of the official graph's stages.json, NHWC numpy, for input x (NCHW)."""
    from mylib.models.layers import normalize_pixels, resize_like
    F, stages, backbone = mx.nd, {}, net.backbone

    def keep(name, value):
        stages[name] = value.asnumpy().transpose(0, 2, 3, 1)
        return value

    h = keep('preprocessed_input', normalize_pixels(x))
    h = keep('entry_flow_conv1_1', backbone.conv1_1(h))
    h = keep('entry_flow_conv1_2', backbone.conv1_2(h))
    named = {'entry_block1_unit1': 'entry_flow_block1', 'entry_block2_unit1': 'entry_flow_block2',
             'entry_block3_unit1': 'entry_flow_block3', 'middle_block1_unit1': 'middle_flow_unit_1',
             'middle_block1_unit8': 'middle_flow_unit_8', 'middle_block1_unit16': 'middle_flow_block1',
             'exit_block1_unit1': 'exit_flow_block1'}
    for name, unit in backbone._children.items():
        if unit not in backbone.units:
            continue
        if name == 'exit_block2_unit1':
            keep('exit_flow_block2_sepconv1_depthwise', unit.separable_convs[0].depthwise(h))
        if unit.returns_skip:
            h, skip = unit(h)
            keep('decoder_skip_endpoint', skip)
        else:
            h = unit(h)
        if name in named:
            keep(named[name], h)
    features = keep('backbone_output', h)
    aspp = net.aspp
    pooled = keep('image_pooling_pooled', F.mean(features, axis=(2, 3), keepdims=True))
    pooled = keep('image_pooling', aspp.image_pooling(pooled))
    keep('image_pooling_resized', F.broadcast_like(pooled, features, lhs_axes=(2, 3), rhs_axes=(2, 3)))
    keep('aspp0', aspp.aspp0(features))
    keep('aspp1_depthwise', aspp.atrous_branches[0].depthwise(features))
    for index, branch in enumerate(aspp.atrous_branches, 1):
        keep('aspp%d' % index, branch(features))
    branches = [stages[name].transpose(0, 3, 1, 2) for name in
                ('image_pooling_resized', 'aspp0', 'aspp1', 'aspp2', 'aspp3')]
    concat = keep('aspp_concat', F.concat(*[F.array(b) for b in branches], dim=1))
    projected = keep('concat_projection', aspp.projection(concat))
    decoder = net.decoder
    skip = keep('decoder_feature_projection0', decoder.feature_projection(F.array(
        stages['decoder_skip_endpoint'].transpose(0, 3, 1, 2))))
    upsampled = keep('decoder_aspp_upsampled', resize_like(F, projected, skip))
    h = keep('decoder_concat', F.concat(upsampled, skip, dim=1))
    keep('decoder_conv0_depthwise', decoder.conv0.depthwise(h))
    h = keep('decoder_conv0', decoder.conv0(h))
    h = keep('decoder_conv1', decoder.conv1(h))
    keep('logits_conv', net.logits(h))
    return stages


def test_every_stage_matches_official_graph(reference_net):
    """Each of the 30 reference stages (grace_hopper), so that a departure is found where it starts."""
    with open(REFERENCE / 'os16' / 'stages.json') as stream:
        described = json.load(stream)
    reference = np.load(REFERENCE / 'os16' / 'grace_hopper_stages.npz')
    ours = trace_stages(reference_net, padded_input(official_outputs('grace_hopper')['input_uint8']))
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
