"""Training starts from every family: its ImageNet checkpoint, a DeepLab release of it, or --backbone alone.

train.py runs as users run it, for two iterations on generated data, from the checkpoints of the zoo
references converted as users convert them (`zoo_params`); what it trained loads with `load_model`.
"""
import json
import os

import pytest
from helpers import ONE_THREAD, one_line_error, run_script, synthetic_shapes, train_args, write_segmentation_folder

import mylib
from mylib.models import ModelSpec, build_network, release_spec


@pytest.fixture(scope='module')
def shapes96(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes96')
    write_segmentation_folder(root, synthetic_shapes(4, 96, seed=11), 'train')
    write_segmentation_folder(root, synthetic_shapes(2, 96, seed=12), 'val')
    return root


def trained_spec(run_dir):
    with open(os.path.join(run_dir, 'final.json')) as stream:
        return ModelSpec.from_json(json.load(stream)['model'])


@pytest.mark.parametrize('folder, crop, expected', [
    # the ImageNet MobileNet-v2 under its official release head (image pooling + 1x1, no decoder)
    ('mnv2_imagenet', '65x65', ('mobilenet_v2', 16, None)),
    # EdgeTPU-MobileNet's ImageNet checkpoint under EdgeTPU-DeepLab's head (the MobileNet-v2 one)
    ('edgetpu_imagenet', '65x65', ('mobilenet_edgetpu', 16, None)),
    # fine-tuning a DeepLab release of another family: its own network, new logits
    ('x71_dpc_os16', '65x65', ('xception_71', 16, (4,))),
])
def test_train_from_a_zoo_checkpoint(zoo_params, shapes96, tmp_path, folder, crop, expected):
    run_dir = tmp_path / 'run'
    args = list(train_args(shapes96, run_dir, '--init', zoo_params[folder][0], iterations=2, gpus='cpu'))
    args[args.index('--crop-size') + 1] = crop
    result = run_script('train.py', *args, '--val-split', 'none', env=ONE_THREAD)
    spec = trained_spec(run_dir)
    assert (spec.model_variant, spec.output_stride, spec.decoder_output_stride) == expected
    assert spec.num_classes == 3 and 'initialised from' in result.stdout
    net = mylib.load_model(str(run_dir / 'final.params'))
    assert net.spec == spec


@pytest.mark.fast
def test_a_decoder_that_outputs_the_logits_is_retrained_for_the_new_classes():
    """MobileNet-v3's sum-merge decoder is its logits: fine-tuning to other classes resizes the decoder, and only
    the decoder is left out of what --init loads."""
    spec = release_spec('mobilenet_v3_large_seg', 19).with_num_classes(3)
    assert (spec.num_classes, spec.decoder_filters, spec.output_stride) == (3, 3, 32)
    net = build_network(spec)
    assert net.logits is None and sorted(net.class_parameters()) == [
        'decoder.conv0.bias', 'decoder.conv0.weight', 'decoder.feature_projection.bias',
        'decoder.feature_projection.weight']
    assert net.minimum_input == (769, 769)


def test_train_a_backbone_from_scratch_and_refuse_a_crop_it_cannot_take(shapes96, tmp_path):
    run_dir = tmp_path / 'resnet'
    run_script('train.py', *train_args(shapes96, run_dir, '--backbone', 'resnet_v1_50_beta', iterations=2),
               '--val-split', 'none', env=ONE_THREAD)
    spec = trained_spec(run_dir)
    assert (spec.model_variant, spec.multi_grid, spec.decoder_output_stride) == ('resnet_v1_50_beta', (1, 2, 4), (4,))
    small = run_script('train.py', *train_args(shapes96, tmp_path / 'mnv3', '--backbone', 'mobilenet_v3_small_seg'),
                       '--val-split', 'none', check=False)
    one_line_error(small, 'train.py', '--crop-size 65x65', '769x769', status=2)


def test_a_finegrain_imagenet_backbone_that_deeplab_cannot_hold_is_refused_in_one_line(shapes96, tmp_path):
    """slim's EdgeTPU x0.75 ImageNet checkpoint keeps Conv_1 (layer_24) at 1280 channels (finegrain mode);
    DeepLab's x0.75 EdgeTPU backbone, where that conv sits, has 960: training says so, naming the tensor."""
    import mxnet as mx

    from mylib.fileio import write_json
    spec = ModelSpec('mobilenet_edgetpu', 1001, task='classification', output_stride=32, depth_multiplier=0.75,
                     finegrain_classification_mode=True)
    net = build_network(spec)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 64, 64)))
    params = tmp_path / 'edgetpu_075.params'
    net.save_parameters(str(params))
    write_json(str(params)[:-len('.params')] + '.json', {'kind': spec.task, 'num_classes': 1001,
                                                        'model': spec.to_json()})
    result = run_script('train.py', *train_args(shapes96, tmp_path / 'run', '--init', params, iterations=2),
                        '--val-split', 'none', check=False, env=ONE_THREAD)
    one_line_error(result, 'train.py', 'backbone.layer_24.conv.weight has shape (1280, 144, 1, 1)',
                   'the model needs (960, 144, 1, 1)')
