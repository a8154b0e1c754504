"""mylib.models.taps: the named inputs and outputs of the model's own forward pass, on a small input."""
import numpy as np
import pytest
from helpers import initialized, random_image

from mylib import DeepLabV3Plus
from mylib.models.taps import Tap, find_block, record

pytestmark = pytest.mark.fast


@pytest.fixture(scope='module')
def net():
    return initialized(DeepLabV3Plus(num_classes=5))  # OS16, not hybridized


def test_records_the_inputs_and_outputs_of_the_named_blocks(net):
    x = random_image(65, 65)
    # 65 -> 33 (conv1_1) -> 17 (entry block 1: the stride-4 skip) -> 9 (block 2) -> 5 (block 3: OS16)
    shapes = {  # path: (shapes of the inputs, shape of the output or of each output)
        'backbone.conv1_1': ([(1, 3, 65, 65)], (1, 32, 33, 33)),
        'backbone.entry_block2_unit1': ([(1, 128, 17, 17)], [(1, 256, 9, 9), (1, 256, 17, 17)]),
        'backbone.exit_block2_unit1.separable_conv1.depthwise': ([(1, 1024, 5, 5)], (1, 1024, 5, 5)),
        'backbone': ([(1, 3, 65, 65)], [(1, 256, 17, 17), (1, 2048, 5, 5)]),
        'aspp.image_pooling': ([(1, 2048, 5, 5)], (1, 256, 5, 5)),
        'aspp.image_pooling.conv': ([(1, 2048, 1, 1)], (1, 256, 1, 1)),
        'aspp.aspp3': ([(1, 2048, 5, 5)], (1, 256, 5, 5)),
        'aspp.projection': ([(1, 5 * 256, 5, 5)], (1, 256, 5, 5)),
        'decoder': ([(1, 256, 5, 5), (1, 256, 17, 17)], (1, 256, 17, 17)),
        'decoder.conv0': ([(1, 256 + 48, 17, 17)], (1, 256, 17, 17)),
        'logits': ([(1, 256, 17, 17)], (1, 5, 17, 17)),
        '': ([(1, 3, 65, 65)], (1, 5, 65, 65)),
    }
    with record(net, list(shapes)) as taps:
        logits = net(x)
    assert sorted(taps) == sorted(shapes)
    for path, (inputs, output) in shapes.items():
        tap = taps[path]
        assert isinstance(tap, Tap) and [value.shape for value in tap.inputs] == inputs, path
        got = tap.output.shape if isinstance(output, tuple) else [value.shape for value in tap.output]
        assert got == output, path
    assert taps[''].inputs[0] is x and taps[''].output is logits  # the call itself, nothing re-run
    normalized = taps['backbone.conv1_1'].inputs[0].asnumpy()  # the model's own preprocessing
    assert np.allclose(normalized, x.asnumpy() * (2 / 255) - 1, atol=1e-6)
    # what was recorded is what the block computes from what it was given
    projection = taps['aspp.projection']
    assert np.array_equal(net.aspp.projection(*projection.inputs).asnumpy(), projection.output.asnumpy())
    skip = taps['backbone.entry_block2_unit1'].output[1]
    assert np.array_equal(taps['backbone'].output[0].asnumpy(), skip.asnumpy())


def test_paths_name_the_registered_children(net):
    assert find_block(net, '') is net
    assert find_block(net, 'aspp.aspp1') is net.aspp.atrous_branches[0]
    assert find_block(net, 'backbone.middle_block1_unit8') is net.backbone.units[3 + 7]
    with pytest.raises(KeyError, match=r"aspp has no child 'aspp9' \(its children: image_pooling, aspp0, "):
        with record(net, ['logits', 'aspp.aspp9']):
            pass
    net(random_image(33, 33))  # no hook of the refused recording was left behind to fail or record
    assert find_block(net, 'logits') is net.logits


def test_hooks_are_removed_when_the_recording_ends(net):
    with record(net, ['aspp.projection', 'logits']) as taps:
        net(random_image(33, 33))
    recorded = dict(taps)
    net(random_image(49, 49, seed=1))
    assert list(taps) == list(recorded) and all(taps[path] is recorded[path] for path in recorded)  # left alone
    assert taps['logits'].output.shape == (1, 5, 9, 9)
    with pytest.raises(RuntimeError, match='stop'):  # also when the body fails
        with record(net, ['logits']) as failed:
            raise RuntimeError('stop')
    net(random_image(33, 33))
    assert dict(failed) == {}


def test_blocks_inside_a_hybridized_block_are_refused():
    """Hooks do not see the children of a hybridized block (they run in its cached graph)."""
    hybridized = initialized(DeepLabV3Plus(num_classes=3, decoder=False))
    hybridized.hybridize()
    with pytest.raises(ValueError, match="'aspp.projection' runs inside a hybridized block"):
        with record(hybridized, ['', 'aspp.projection']):
            pass
    with record(hybridized, ['']) as taps:  # the hybridized network's own call is seen
        logits = hybridized(random_image(33, 33))
    assert taps[''].output is logits and logits.shape == (1, 3, 33, 33)
    hybridized.hybridize(False)
    with record(hybridized, ['aspp.projection']) as taps:
        hybridized(random_image(33, 33))
    assert taps['aspp.projection'].output.shape == (1, 256, 3, 3)
    with pytest.raises(KeyError, match="'logits' was not called while recording"):
        taps['logits']
