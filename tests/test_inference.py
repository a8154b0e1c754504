"""mylib.predict: the official single-scale labels, and the multi-scale + flip protocol's sizes and averaging."""
import os

import mxnet as mx
import numpy as np
import pytest
from helpers import PHOTOS, initialized, official_outputs

from mylib import DeepLabV3Plus, load_deeplab, predict  # the public names users call
from mylib.inference import (
    FAST_ONEDNN_ISA,
    LogitsRunner,
    average_probabilities,
    branch_sizes,
    cap_onednn_isa,
    pad_to_crop,
    resize,
)
from mylib.models import DecoderLogits


@pytest.fixture(scope='module')
def reference_model(converted_reference):
    return load_deeplab(converted_reference[0])


@pytest.mark.parametrize('photo', PHOTOS)
def test_predict_single_scale_gives_the_official_labels(reference_model, photo):
    official = official_outputs(photo)
    image = official['input_uint8']
    labels, probabilities = predict(reference_model, image)
    assert labels.shape == image.shape[:2] and probabilities.shape == (21,) + image.shape[:2]
    expected = official['labels'][0, :image.shape[0], :image.shape[1]]
    assert (labels == expected).mean() >= 0.999
    assert np.allclose(probabilities.sum(axis=0), 1, atol=1e-5)


@pytest.mark.fast
def test_branch_sizes_of_the_official_scales():
    """Reference README: inputs 257 ... 897 for scales 0.5 ... 1.75; logits int((513 - 1) max(1, s) / 4 + 1)."""
    sizes = {scale: branch_sizes((513, 513), scale) for scale in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)}
    assert [sizes[s][0][0] for s in sorted(sizes)] == [257, 385, 513, 641, 769, 897]
    assert [sizes[s][1][0] for s in sorted(sizes)] == [129, 129, 129, 161, 193, 225]


@pytest.mark.fast
def test_branch_sizes_of_the_pytorch_originals():
    """DeepLab-v3-plus-cityscapes' evaluate.py: the input at [int(H * s), int(W * s)]; the network's output
    at that size (its own final upsampling), then resized back."""
    assert branch_sizes((1024, 2048), 0.75, official=False) == ((768, 1536), (768, 1536))
    assert branch_sizes((300, 451), 1.75, official=False) == ((525, 789), (525, 789))


@pytest.fixture(scope='module')
def small_model():
    """Random weights, with logits damped so that softmax does not saturate to exact 0 and 1."""
    net = initialized(DeepLabV3Plus(num_classes=5), seed=3)
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (1, 3, 65, 65)).astype(np.float32))
    scale = float(net(x).abs().max().asscalar()) / 3
    net.logits.weight.set_data(net.logits.weight.data() / scale)
    net.logits.bias.set_data(net.logits.bias.data() / scale)
    return net


def softmax_of(net, canvas, net_input, logits_size):
    """One branch written out: network on `net_input`, stride-4 logits -> logits_size -> canvas size, softmax."""
    logits = DecoderLogits(net)(net_input)
    return mx.nd.softmax(resize(resize(logits, logits_size), canvas.shape[2:]), axis=1)


def test_a_downscaled_branch_resizes_its_logits_to_the_intermediate_size_then_the_crop(small_model):
    image = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    canvas = mx.nd.array(pad_to_crop(image, (65, 65))[None])
    # scale 0.75: input int(64 * 0.75 + 1) = 49, logits ceil(49 / 4) = 13, then int(64 / 4 + 1) = 17, then 65
    # (at 0.5 the corner-aligned grids 9 -> 17 -> 65 nest, and the intermediate size changes nothing)
    expected = softmax_of(small_model, canvas, resize(canvas, (49, 49)), (17, 17))
    ours = average_probabilities(LogitsRunner(small_model, fuse=False), canvas, scales=(0.75,))
    assert np.abs(ours.asnumpy() - expected.asnumpy()).max() < 1e-5
    skipping = softmax_of(small_model, canvas, resize(canvas, (49, 49)), (65, 65))  # straight to the crop
    assert np.abs(skipping.asnumpy() - expected.asnumpy()).max() > 1e-3


def test_flip_branch_flips_the_padded_crop_and_its_logits_back(small_model):
    image = np.random.default_rng(1).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    canvas = mx.nd.array(pad_to_crop(image, (65, 65))[None])
    plain = softmax_of(small_model, canvas, canvas, (17, 17))
    mirrored = mx.nd.flip(softmax_of(small_model, canvas, mx.nd.flip(canvas, axis=3), (17, 17)), axis=3)
    ours = average_probabilities(LogitsRunner(small_model, fuse=False), canvas, scales=(1.0,), flip=True)
    assert np.abs(ours.asnumpy() - ((plain + mirrored) / 2).asnumpy()).max() < 1e-5


def test_scales_and_flips_are_averaged_as_probabilities(small_model):
    image = np.random.default_rng(2).integers(0, 256, (65, 65, 3), dtype=np.uint8)
    runner = LogitsRunner(small_model, fuse=False)
    canvas = mx.nd.array(pad_to_crop(image, (65, 65))[None])
    both = average_probabilities(runner, canvas, scales=(0.75, 1.25), flip=True).asnumpy()
    parts = [average_probabilities(runner, canvas, scales=(s,), flip=True).asnumpy() for s in (0.75, 1.25)]
    assert np.abs(both - (parts[0] + parts[1]) / 2).max() < 1e-6
    # an unpadded image: flipping it flips the averaged prediction, exactly
    mirrored = average_probabilities(runner, mx.nd.flip(canvas, axis=3), scales=(1.0,), flip=True).asnumpy()
    assert np.abs(mirrored[..., ::-1] - average_probabilities(runner, canvas, flip=True).asnumpy()).max() < 1e-5


@pytest.mark.fast
def test_predict_with_scales_flip_and_an_image_larger_than_the_crop(small_model):
    image = np.random.default_rng(3).integers(0, 256, (70, 45, 3), dtype=np.uint8)
    labels, probabilities = predict(small_model, image, scales=(0.5, 1.0), flip=True, crop_size=(65, 65))
    assert labels.shape == (70, 45) and probabilities.shape == (5, 70, 45)
    assert np.array_equal(labels, probabilities.argmax(axis=0))


@pytest.mark.fast
def test_predict_refuses_what_is_not_an_rgb_image(small_model):
    with pytest.raises(ValueError, match='H x W x 3'):
        predict(small_model, np.zeros((20, 20), np.uint8))


@pytest.mark.fast
def test_onednn_isa_cap_is_set_unless_the_user_chose(monkeypatch):
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', '')  # recorded by monkeypatch, so the cap set below is undone
    assert cap_onednn_isa() == FAST_ONEDNN_ISA and os.environ['DNNL_MAX_CPU_ISA'] == FAST_ONEDNN_ISA
    monkeypatch.setenv('DNNL_MAX_CPU_ISA', 'AVX2')
    assert cap_onednn_isa() == 'AVX2' and os.environ['DNNL_MAX_CPU_ISA'] == 'AVX2'
