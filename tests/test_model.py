"""Fast checks of the networks on small inputs: shapes, strides, hybridization, gradients, save/load."""
import numpy as np
import pytest
from helpers import initialized, random_image
from mxnet import autograd

from mylib import DeepLabV3Plus, Xception65
from mylib.models import XCEPTION_65, DecoderLogits, unit_plan

OFFICIAL_PARAMETER_COUNT = 41258213  # reference README: the 21-class official graph
OFFICIAL_VARIABLE_COUNT = 732


def count(net):
    params = net._collect_params_with_prefix()
    return len(params), sum(int(np.prod(p.shape)) for p in params.values())


@pytest.mark.fast
def test_parameter_count_equals_official_graph():
    assert count(DeepLabV3Plus(num_classes=21)) == (OFFICIAL_VARIABLE_COUNT, OFFICIAL_PARAMETER_COUNT)
    assert count(DeepLabV3Plus(num_classes=21, output_stride=8)) == (OFFICIAL_VARIABLE_COUNT,
                                                                     OFFICIAL_PARAMETER_COUNT)


@pytest.mark.fast
def test_xception65_classifier_has_backbone_plus_logits():
    backbone_vars, backbone_values = count(DeepLabV3Plus(21).backbone)
    assert count(Xception65(1001)) == (backbone_vars + 2, backbone_values + 2048 * 1001 + 1001)


# reference README, "Output stride": (unit, stride, rate) at each output stride
EXPECTED_PLANS = {
    16: {'entry_block1_unit1': (2, 1), 'entry_block2_unit1': (2, 1), 'entry_block3_unit1': (2, 1),
         'middle_block1_unit1': (1, 1), 'middle_block1_unit16': (1, 1), 'exit_block1_unit1': (1, 1),
         'exit_block2_unit1': (1, 2)},
    8: {'entry_block1_unit1': (2, 1), 'entry_block2_unit1': (2, 1), 'entry_block3_unit1': (1, 1),
        'middle_block1_unit1': (1, 2), 'middle_block1_unit16': (1, 2), 'exit_block1_unit1': (1, 2),
        'exit_block2_unit1': (1, 4)},
    32: {'entry_block3_unit1': (2, 1), 'exit_block1_unit1': (2, 1), 'exit_block2_unit1': (1, 1)},
}


@pytest.mark.fast
@pytest.mark.parametrize('output_stride', sorted(EXPECTED_PLANS))
def test_unit_plan_follows_official_stride_rule(output_stride):
    plan = {name: (stride, rate) for name, _, stride, rate in unit_plan(XCEPTION_65, output_stride)}
    assert len(plan) == 1 + 1 + 1 + 16 + 1 + 1
    for name, expected in EXPECTED_PLANS[output_stride].items():
        assert plan[name] == expected, name


@pytest.mark.fast
@pytest.mark.parametrize('output_stride', [6, 12, 64])
def test_unreachable_output_stride_is_refused(output_stride):
    with pytest.raises(ValueError, match='output_stride %d' % output_stride):
        DeepLabV3Plus(output_stride=output_stride, atrous_rates=(1, 2, 3))


def shape_case(output_stride, size, fast=False):
    return pytest.param(output_stride, size, marks=[pytest.mark.fast] if fast else [],
                        id='os%d-%dx%d' % (output_stride, *size))


# the fast tier keeps one size per output stride: at 16 the official n * 16 + 1 form (odd), at 8 a size with
# one side odd and one even, neither a multiple of 8
@pytest.mark.parametrize('output_stride, size', [
    shape_case(16, (65, 97), fast=True), shape_case(16, (64, 96)), shape_case(16, (33, 50)),
    shape_case(8, (65, 97)), shape_case(8, (64, 96)), shape_case(8, (33, 50), fast=True),
])
def test_output_shapes_for_odd_and_even_sizes(output_stride, size):
    net = initialized(DeepLabV3Plus(num_classes=5, output_stride=output_stride))
    x = random_image(*size)
    assert net(x).shape == (1, 5) + size
    # stride-4 logits and features have the sizes of the official scale_dimension: ceil(n / stride)
    assert DecoderLogits(net)(x).shape == (1, 5) + tuple(-(-n // 4) for n in size)
    skip, features = net.backbone(x)
    assert features.shape == (1, 2048) + tuple(-(-n // output_stride) for n in size)
    assert skip.shape == (1, 256) + tuple(-(-n // 4) for n in size)


@pytest.mark.fast
def test_default_atrous_rates_follow_output_stride():
    assert DeepLabV3Plus(output_stride=16).atrous_rates == (6, 12, 18)
    assert DeepLabV3Plus(output_stride=8).atrous_rates == (12, 24, 36)
    assert DeepLabV3Plus(output_stride=16, atrous_rates=(3, 6, 9)).atrous_rates == (3, 6, 9)


@pytest.mark.fast
def test_hybridized_gives_the_same_numbers():
    net = initialized(DeepLabV3Plus(num_classes=3))
    x = random_image(49, 70)
    eager = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    assert np.array_equal(net(x).asnumpy(), eager)
    # another size after hybridization: nothing is fixed at construction or first call
    assert net(random_image(37, 41)).shape == (1, 3, 37, 41)


def test_same_weights_serve_output_stride_8_and_16(tmp_path):
    net16 = initialized(DeepLabV3Plus(num_classes=4, output_stride=16))
    net16.save_parameters(str(tmp_path / 'w.params'))
    net8 = DeepLabV3Plus(num_classes=4, output_stride=8)
    net8.load_parameters(str(tmp_path / 'w.params'))
    x = random_image(41, 41)
    assert net8(x).shape == net16(x).shape == (1, 4, 41, 41)
    os8, os16 = net8(x).asnumpy(), net16(x).asnumpy()
    assert np.abs(os8 - os16).max() > 0.01 * np.abs(os16).max()  # other rates, other maps


@pytest.mark.fast
def test_deeplab_v3_without_decoder():
    net = initialized(DeepLabV3Plus(num_classes=6, decoder=False))
    x = random_image(65, 81)
    assert net(x).shape == (1, 6, 65, 81)
    assert DecoderLogits(net)(x).shape == (1, 6, 5, 6)  # at the output stride, 16
    names = net._collect_params_with_prefix()
    assert not any(name.startswith('decoder.') for name in names)


@pytest.mark.fast
def test_classifier_output():
    net = initialized(Xception65(num_classes=10))
    assert net(random_image(64, 64, batch=2)).shape == (2, 10)


def test_every_trainable_parameter_gets_a_gradient():
    net = initialized(DeepLabV3Plus(num_classes=3))
    x = random_image(33, 33, batch=2)
    with autograd.record():
        loss = net(x).sum()
    loss.backward()
    without = [name for name, p in net._collect_params_with_prefix().items()
               if p.grad_req != 'null' and float(p.grad().abs().sum().asscalar()) == 0]
    assert without == []
    trainable = [p for p in net.collect_params().values() if p.grad_req != 'null']
    assert len(trainable) == 732 - 2 * 146  # every BN's moving statistics are not trainable


def test_save_load_round_trip(tmp_path):
    net = initialized(DeepLabV3Plus(num_classes=3))
    x = random_image(40, 40)
    path = str(tmp_path / 'net.params')
    net.save_parameters(path)
    again = DeepLabV3Plus(num_classes=3)
    again.load_parameters(path)
    assert np.array_equal(again(x).asnumpy(), net(x).asnumpy())


def test_dropout_only_in_training():
    net = initialized(DeepLabV3Plus(num_classes=3))
    x = random_image(33, 33)
    assert np.array_equal(net(x).asnumpy(), net(x).asnumpy())
    with autograd.record(train_mode=True):
        first, second = net(x), net(x)
    assert not np.array_equal(first.asnumpy(), second.asnumpy())
