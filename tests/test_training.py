"""Training: its parts against hand-computed values, and train.py / train_multi_gpu.py as users run them."""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest
from helpers import (
    ONE_THREAD,
    REFERENCE,
    REPO,
    initialized,
    one_line_error,
    read_metrics,
    run_script,
    synthetic_shapes,
    train_args,
    write_segmentation_folder,
)
from mxnet import autograd, gluon

from converters.mapping import deeplab_layers, tensor_table
from mylib import DeepLabV3Plus, Xception65
from mylib.errors import OptionError, WeightsError
from mylib.models.init import TruncatedNormal
from mylib.models.layers import ConvBN, batch_norm
from mylib.training.batch_norm import AccurateBatchNorm
from mylib.training.initialization import initialize_for_training
from mylib.training.loop import norm_layer
from mylib.training.loss import pixel_cross_entropy
from mylib.training.sampler import EpochBatchSampler
from mylib.training.schedule import poly_learning_rate
from mylib.weights import load_deeplab


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp('shapes')
    write_segmentation_folder(root, synthetic_shapes(8, 64, seed=0), 'train')
    write_segmentation_folder(root, synthetic_shapes(4, 64, seed=1), 'val')
    return root


def read_params(path):
    return {name: value.asnumpy() for name, value in mx.nd.load(str(path)).items()}


# --- the parts -------------------------------------------------------------------------------------------------
@pytest.mark.fast
def test_poly_learning_rate_is_the_official_policy():
    assert poly_learning_rate(0.007, 0, 100) == 0.007
    assert poly_learning_rate(0.007, 50, 100) == pytest.approx(0.007 * 0.5 ** 0.9)
    assert poly_learning_rate(0.007, 100, 100) == 0.0


@pytest.mark.fast
def test_loss_is_the_mean_over_the_labelled_pixels_of_the_whole_batch():
    logits = mx.nd.array([[[[2.0, 0.0, 5.0]], [[0.0, 1.0, -5.0]]]])  # 1 x 2 classes x 1 x 3
    labels = mx.nd.array([[[0, 1, 255]]])
    total, count = pixel_cross_entropy(logits, labels)
    expected = -(np.log(np.exp(2) / (np.exp(2) + 1)) + np.log(np.exp(1) / (1 + np.exp(1))))
    assert count.asscalar() == 2 and total.asscalar() == pytest.approx(expected, rel=1e-6)
    # two devices' parts, each divided by the whole batch's count, add up to the whole batch's mean
    rng = np.random.default_rng(0)
    logits = mx.nd.array(rng.normal(size=(4, 3, 5, 5)))
    labels = mx.nd.array(rng.choice([0, 1, 2, 255], size=(4, 5, 5)))
    whole_sum, whole_count = pixel_cross_entropy(logits, labels)
    parts = [pixel_cross_entropy(logits[i:i + 2], labels[i:i + 2])[0] for i in (0, 2)]
    assert sum(p.asscalar() for p in parts) / whole_count.asscalar() == pytest.approx(
        whole_sum.asscalar() / whole_count.asscalar(), rel=1e-6)


@pytest.mark.fast
def test_sampler_is_deterministic_shards_without_overlap_and_resumes_mid_epoch():
    sampler = EpochBatchSampler(10, 3, seed=4)
    sampler.start(1)
    epoch1 = list(sampler)
    assert len(epoch1) == len(sampler) == 3  # the last incomplete batch is dropped
    assert all(10 <= key < 20 for batch in epoch1 for key in batch)  # keys of epoch 1
    assert len({key for batch in epoch1 for key in batch}) == 9
    sampler.start(1, batch=2)
    assert list(sampler) == epoch1[2:]
    sampler.start(2)
    assert list(sampler) != epoch1
    ranks = [EpochBatchSampler(10, 2, seed=4, rank=r, num_workers=2) for r in (0, 1)]
    keys = [{key for batch in rank for key in batch} for rank in ranks]
    assert not keys[0] & keys[1] and len(keys[0]) == len(keys[1]) == 4
    with pytest.raises(ValueError, match='cannot fill one batch'):
        EpochBatchSampler(3, 4, seed=0)


@pytest.mark.fast
def test_weight_decay_only_on_convolution_weights():
    """The decayed parameters are exactly the official graph's l2-regularized variables (79; not the depthwise
    weights, batch norm or biases), as the reference training run lists them."""
    with open(REFERENCE / 'train' / 'result.json') as stream:
        regularization = json.load(stream)['graph_facts']['regularization']
    table = tensor_table(deeplab_layers())  # official name -> (Gluon name, layout)
    official = {table[name][0] for name in regularization['regularized_variables']}
    assert len(official) == len(regularization['regularized_variables']) == regularization['terms']
    params = DeepLabV3Plus(21)._collect_params_with_prefix()
    decayed = {name for name, param in params.items() if param.wd_mult != 0 and param.grad_req != 'null'}
    assert decayed == official
    assert len(decayed) == 79
    assert all(params[name].wd_mult == 1 for name in decayed)


def test_official_initializers():
    """Each layer carries its official initializer; initialisation depends only on the seed."""
    net = DeepLabV3Plus(3)
    params = net._collect_params_with_prefix()
    stddev = {name: getattr(param.init, 'stddev', None) for name, param in params.items() if name.endswith('weight')}
    assert stddev['backbone.middle_block1_unit3.separable_conv1.depthwise.conv.weight'] == 0.09
    assert stddev['backbone.conv1_1.conv.weight'] == 0.09
    assert stddev['aspp.aspp2.depthwise.conv.weight'] == 0.33
    assert stddev['decoder.conv1.pointwise.conv.weight'] == 0.06
    assert stddev['logits.weight'] == 0.01
    assert stddev['aspp.projection.conv.weight'] is None  # slim's default: Xavier
    initialize_for_training(net, None, [mx.cpu()], seed=5)
    depthwise = params['aspp.aspp2.depthwise.conv.weight'].data().asnumpy()
    assert np.abs(depthwise).max() <= 0.66 and depthwise.std() == pytest.approx(0.33 * 0.88, rel=0.1)
    first = {name: param.data().asnumpy() for name, param in params.items()}
    assert differing(initial_values(5, [mx.cpu()]), first) == []  # the same seed: the same values
    other = initial_values(6, [mx.cpu()])  # another seed: other values, for every randomly drawn weight
    drawn = [name for name in first if name.endswith('weight')]
    assert len(drawn) > 100 and set(differing(other, first)) == set(drawn)  # (biases, batch norm: constants)
    both = initial_values(5, [mx.cpu(0), mx.cpu(1)])  # as train_multi_gpu.py on two devices
    assert differing({name: values[0] for name, values in both.items()}, first) == []
    assert differing({name: values[1] for name, values in both.items()}, first) == []
    values = mx.nd.zeros((200, 50))
    mx.random.seed(1)
    TruncatedNormal(0.5)._init_weight('w', values)
    assert np.abs(values.asnumpy()).max() <= 1.0 and values.asnumpy().std() == pytest.approx(0.44, abs=0.02)


def initial_values(seed, ctxs):
    """DeepLabV3Plus(3) initialised for training on `ctxs` with `seed`: {name: numpy value}, or with several
    contexts {name: [value on each context]}."""
    net = DeepLabV3Plus(3)
    initialize_for_training(net, None, ctxs, seed=seed)
    params = net._collect_params_with_prefix()
    if len(ctxs) > 1:
        return {name: [param.data(ctx).asnumpy() for ctx in ctxs] for name, param in params.items()}
    return {name: param.data().asnumpy() for name, param in params.items()}


def differing(values, expected):
    """The names whose arrays differ between two {name: array} of the same names."""
    assert set(values) == set(expected)
    return sorted(name for name in expected if not np.array_equal(values[name], expected[name]))


def test_initialization_from_the_imagenet_backbone(tmp_path):
    """--init with converted xception_65 weights: the backbone loaded, the head from the official initializers."""
    imagenet = initialized(Xception65(1001), seed=3)
    path = str(tmp_path / 'xception65.params')
    imagenet.save_parameters(path)
    net = DeepLabV3Plus(num_classes=3)
    message = initialize_for_training(net, path, [mx.cpu()], seed=1)
    assert 'ImageNet backbone' in message
    theirs, ours = imagenet._collect_params_with_prefix(), net._collect_params_with_prefix()
    backbone = [name for name in ours if name.startswith('backbone.')]
    assert backbone and all(np.array_equal(ours[name].data().asnumpy(), theirs[name].data().asnumpy())
                            for name in backbone)
    logits = ours['logits.weight'].data().asnumpy()  # official: truncated normal, stddev 0.01
    assert np.abs(logits).max() <= 0.02 and 0.007 < logits.std() < 0.01
    assert np.all(ours['aspp.projection.bn.gamma'].data().asnumpy() == 1)  # batch norm starts as identity
    mx.nd.save(str(tmp_path / 'other.params'), {'head.weight': mx.nd.zeros((2, 2))})
    with pytest.raises(WeightsError, match='no logits.weight'):
        initialize_for_training(DeepLabV3Plus(num_classes=3), str(tmp_path / 'other.params'), [mx.cpu()])


@pytest.mark.fast
def test_accurate_batch_norm_normalises_with_the_exact_batch_variance():
    """--accurate-bn: the training output is the batch normalised with an accurately summed variance (float64
    here), its gradient is BatchNorm's to round-off, and its moving statistics are the operator's."""
    rng = np.random.default_rng(5)
    x = (rng.normal(size=(2, 3, 96, 96)) * 0.01 + 1.0).astype(np.float32)  # a small spread on a mean: sums lose digits
    weights = mx.nd.array(rng.normal(size=x.shape).astype(np.float32))
    layers = [AccurateBatchNorm(in_channels=3, epsilon=1e-3), gluon.nn.BatchNorm(in_channels=3, epsilon=1e-3)]
    outputs, gradients, moving = [], [], []
    for layer in layers:
        layer.initialize()
        data = mx.nd.array(x)
        data.attach_grad()
        with autograd.record():
            y = layer(data)
            (y * weights).sum().backward()
        outputs.append(y.asnumpy())
        gradients.append(data.grad.asnumpy())
        moving.append(layer.running_var.data().asnumpy())
    exact = x.astype(np.float64)
    mean, variance = exact.mean(axis=(0, 2, 3), keepdims=True), exact.var(axis=(0, 2, 3), keepdims=True)
    expected = (exact - mean) / np.sqrt(variance + 1e-3)
    errors = [np.abs(output - expected).max() / np.abs(expected).max() for output in outputs]
    assert errors[0] <= 2e-6 and errors[1] >= 10 * errors[0], errors  # measured 8.6e-7 against 8.0e-5
    scale = np.abs(gradients[1]).max()
    assert np.abs(gradients[0] - gradients[1]).max() <= 1e-3 * scale and np.array_equal(moving[0], moving[1])
    with pytest.raises(OptionError, match='--accurate-bn is for one device'):
        norm_layer(argparse_namespace(accurate_bn=True, freeze_bn=True), [mx.cpu()])


def argparse_namespace(**values):
    import argparse
    return argparse.Namespace(**values)


@pytest.mark.fast
def test_syncbatchnorm_over_two_contexts_equals_batchnorm_over_the_whole_batch():
    """Run in a fresh interpreter with two engine workers: on CPU contexts the two halves' barrier can wait
    forever behind other work queued on MXNet's single default CPU worker (a deadlock of MXNet 1.9 on CPU,
    seen when earlier tests left work queued; SyncBatchNorm is meant for GPUs)."""
    code = 'import sys; sys.path.insert(0, "tests"); import test_training; test_training.check_syncbatchnorm()'
    result = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, MXNET_CPU_WORKER_NTHREADS='2'))
    assert result.returncode == 0, result.stderr[-2000:]


def check_syncbatchnorm():
    """SyncBatchNorm over two CPU contexts = BatchNorm over the whole batch: outputs, gradients, statistics."""
    from mxnet.gluon.contrib.nn import SyncBatchNorm
    ctxs = [mx.cpu(0), mx.cpu(1)]
    sync = ConvBN(3, 4, 3, norm_layer=functools.partial(batch_norm, layer=SyncBatchNorm, num_devices=2,
                                                        momentum=0.5))
    plain = ConvBN(3, 4, 3, norm_layer=functools.partial(batch_norm, momentum=0.5))
    for block, where in ((sync, ctxs), (plain, [mx.cpu()])):
        block.initialize(mx.init.Constant(0.1), ctx=where)
        block.conv.weight.set_data(mx.nd.array(np.random.default_rng(0).normal(size=(4, 3, 3, 3))))
        block.hybridize()
    rng = np.random.default_rng(1)
    for _ in range(2):  # two steps: the running statistics move twice
        x = mx.nd.array(rng.normal(1, 3, (4, 3, 6, 6)))
        head = mx.nd.array(rng.normal(size=(4, 4, 6, 6)))
        parts = gluon.utils.split_and_load(x, ctxs)
        heads = gluon.utils.split_and_load(head, ctxs)
        with autograd.record():
            outputs = [sync(part) for part in parts]
            objectives = [(output * part).sum() for output, part in zip(outputs, heads)]
            whole = plain(x)
            objective = (whole * head).sum()
        autograd.backward(objectives)
        objective.backward()
        assert np.allclose(np.concatenate([o.asnumpy() for o in outputs]), whole.asnumpy(), atol=1e-5)
        for name in ('conv.weight', 'bn.gamma', 'bn.beta'):
            mine = sum(p.grad(ctx).asnumpy() for ctx, p in
                       [(ctx, sync._collect_params_with_prefix()[name]) for ctx in ctxs])
            assert np.allclose(mine, plain._collect_params_with_prefix()[name].grad().asnumpy(), rtol=1e-4,
                               atol=1e-4), name
        for name in ('bn.running_mean', 'bn.running_var'):
            statistics = sync._collect_params_with_prefix()[name]
            for ctx in ctxs:
                assert np.allclose(statistics.data(ctx).asnumpy(),
                                   plain._collect_params_with_prefix()[name].data().asnumpy(), rtol=1e-5), name


def test_every_trainable_parameter_gets_a_gradient_from_the_training_loss():
    net = initialized(DeepLabV3Plus(num_classes=3))
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3, 33, 33)))
    labels = mx.nd.array(np.random.default_rng(1).choice([0, 1, 2, 255], size=(2, 33, 33)))
    with autograd.record():
        total, count = pixel_cross_entropy(net(x), labels)
        (total / count).backward()
    silent = [name for name, p in net._collect_params_with_prefix().items()
              if p.grad_req != 'null' and not np.abs(p.grad().asnumpy()).sum() > 0]
    assert silent == []


# --- train.py as users run it ----------------------------------------------------------------------------------
def test_training_lowers_the_loss_and_writes_its_run_folder(shapes, tmp_path):
    run_dir = tmp_path / 'run'
    result = run_script('train.py', *train_args(shapes, run_dir, '--log-every', '1', '--lr', '0.02',
                                                '--bn-momentum', '0.9', iterations=8, gpus=None),
                        env=ONE_THREAD)
    steps = [record for record in read_metrics(run_dir) if 'loss' in record]
    assert [record['iteration'] for record in steps] == list(range(1, 9))
    assert np.mean([r['loss'] for r in steps[-3:]]) < np.mean([r['loss'] for r in steps[:3]])
    assert steps[0]['lr'] == pytest.approx(0.02) and steps[-1]['lr'] == pytest.approx(0.02 * (1 / 8) ** 0.9)
    validations = [record for record in read_metrics(run_dir) if 'val_miou' in record]
    assert [record['iteration'] for record in validations] == [4, 8]  # every epoch (4 batches of 2)
    config = json.loads((run_dir / 'config.json').read_text())
    assert config['lr'] == 0.02 and config['num_classes'] == 3
    assert config['devices'] == ['cpu(0)']  # the default: one device (GPU 0 if any, else the CPU)
    assert (run_dir / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert (run_dir / 'checkpoints' / 'latest').read_text().strip() == 'iter-00000008'
    best = json.loads((run_dir / 'best.json').read_text())
    assert best['val_miou'] == max(record['val_miou'] for record in validations)
    assert load_deeplab(run_dir / 'final.params').num_classes == 3
    assert 'done: 8 iterations' in result.stdout


@pytest.mark.parametrize('freeze', [False, True], ids=['trained-bn', 'frozen-bn'])
def test_batch_norm_statistics_frozen_or_trained_as_asked(shapes, converted_reference, tmp_path, freeze):
    init = converted_reference[0]  # statistics calibrated on real photos: frozen, they still normalise
    run_dir = tmp_path / 'run'
    frozen = ('--freeze-bn',) if freeze else ()
    run_script('train.py', *train_args(shapes, run_dir, '--init', init, '--val-split', 'none', '--bn-momentum', '0.5',
                                       *frozen, iterations=2), env=ONE_THREAD)
    before, after = read_params(init), read_params(run_dir / 'final.params')
    statistics = [name for name in after if name.endswith(('running_mean', 'running_var'))]
    moved = [name for name in statistics if not np.array_equal(before[name], after[name])]
    assert (moved == []) if freeze else (len(moved) == len(statistics))
    gammas = [name for name in after if name.endswith('.gamma')]
    assert all(not np.array_equal(before[name], after[name]) for name in gammas)  # gamma trains either way


def test_resume_after_kill_equals_an_uninterrupted_run(shapes, tmp_path):
    settings = ('--checkpoint-every', '1', '--val-split', 'none', '--seed', '3')
    straight, killed = tmp_path / 'straight', tmp_path / 'killed'
    run_script('train.py', *train_args(shapes, straight, *settings, iterations=6), env=ONE_THREAD)
    command = [sys.executable, str(REPO / 'train.py'), *map(str, train_args(shapes, killed, *settings, iterations=6))]
    process = subprocess.Popen(command, env=ONE_THREAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = killed / 'checkpoints' / 'latest'
    deadline = time.time() + 300
    while not (latest.exists() and latest.read_text().strip() >= 'iter-00000003') and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stopped_at = int(latest.read_text().strip().split('-')[1])
    assert 3 <= stopped_at < 6, 'the run was not killed half-way'
    # as a user resumes: the run folder alone; every setting comes from its config.json
    result = run_script('train.py', '--run-dir', killed, '--resume', '--gpus', 'cpu', '--quiet', env=ONE_THREAD)
    assert 'resumed %s at iteration %d' % (killed, stopped_at) in result.stdout
    first, second = read_params(straight / 'final.params'), read_params(killed / 'final.params')
    assert all(np.array_equal(first[name], second[name]) for name in first)
    assert [r['iteration'] for r in read_metrics(killed)] == [r['iteration'] for r in read_metrics(straight)]


@pytest.fixture(scope='module')
def overfit_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('overfit')
    items = synthetic_shapes(4, 64, seed=5)
    write_segmentation_folder(root, items, 'train')
    write_segmentation_folder(root, items, 'val')
    return root


def test_fine_tuning_learns_a_handful_of_images(overfit_data, converted_reference, tmp_path):
    """Converted 21-class weights fine-tuned to 3 new classes (logits re-initialised) on four images."""
    run_dir = tmp_path / 'run'
    result = run_script('train.py', '--dataset', 'folder', '--data-root', overfit_data, '--num-classes', '3',
                        '--crop-size', '65x65', '--batch-size', '4', '--iterations', '75', '--lr', '0.02',
                        '--bn-momentum', '0.9', '--num-workers', '0', '--val-every', '25', '--checkpoint-every', '75',
                        '--init', converted_reference[0], '--run-dir', run_dir, '--gpus', 'cpu', '--quiet')
    assert 'logits.bias, logits.weight not loaded: 21 classes there, 3 here' in result.stdout
    best = json.loads((run_dir / 'best.json').read_text())
    assert best['val_miou'] >= 0.75, 'mIoU %.3f after 75 iterations' % best['val_miou']


def test_train_multi_gpu_on_two_cpu_contexts(shapes, converted_reference, tmp_path):
    """The multi-device path (batch split, whole-batch loss, gradients of both devices) on CPU contexts,
    where batch-norm statistics must be frozen (SyncBatchNorm needs GPUs)."""
    run_dir = tmp_path / 'run'
    refused(run_script('train_multi_gpu.py', *train_args(shapes, run_dir, gpus='cpu:2'), check=False),
            'SyncBatchNorm runs on GPUs only', '--freeze-bn')
    run_script('train_multi_gpu.py', *train_args(shapes, run_dir, '--val-split', 'none', '--freeze-bn', '--init',
                                                 converted_reference[0], '--log-every', '1', '--lr', '0.001',
                                                 iterations=6, gpus='cpu:2'), env=ONE_THREAD)
    config = json.loads((run_dir / 'config.json').read_text())
    assert config['devices'] == ['cpu(0)', 'cpu(1)']
    losses = [record['loss'] for record in read_metrics(run_dir) if 'loss' in record]
    assert len(losses) == 6 and all(np.isfinite(losses)) and np.mean(losses[-3:]) < np.mean(losses[:3])
    assert load_deeplab(run_dir / 'final.params').num_classes == 3


def test_dist_sync_with_two_workers_on_loopback(shapes, tmp_path):
    run_dir = tmp_path / 'run'
    result = run_script('-m', 'mylib.training.launch', '--workers', '2', '--', sys.executable, REPO / 'train.py',
                        *train_args(shapes, run_dir, '--kvstore', 'dist_sync', '--val-split', 'none', iterations=3),
                        env=ONE_THREAD)
    digests = sorted(line.split()[-1] for line in result.stdout.splitlines() if 'parameters sha256' in line)
    assert len(digests) == 2 and digests[0] == digests[1], result.stdout
    assert load_deeplab(run_dir / 'final.params').num_classes == 3
    config = json.loads((run_dir / 'config.json').read_text())
    assert config['workers'] == 2 and config['kvstore'] == 'dist_sync'
    logged = [record['iteration'] for record in read_metrics(run_dir)]
    assert logged == [3], 'rank 0 alone writes the metrics: %s' % logged


# --- clear errors ----------------------------------------------------------------------------------------------
def refused(result, *words):
    """`result` (of train.py or train_multi_gpu.py) failed with status 1 and one error line naming `words`."""
    return one_line_error(result, os.path.basename(result.args[1]), *words)


def test_missing_dataset(tmp_path):
    result = run_script('train.py', '--data-root', tmp_path / 'nowhere', '--run-dir', tmp_path / 'run', check=False)
    refused(result, str(tmp_path / 'nowhere'), 'pascal_voc.py')
    assert not (tmp_path / 'run').exists()


def test_list_naming_a_missing_file(shapes, tmp_path):
    data = tmp_path / 'data'
    write_segmentation_folder(data, synthetic_shapes(2, 32, seed=0), 'train')
    with open(data / 'ImageSets' / 'Segmentation' / 'train.txt', 'a') as stream:
        stream.write('ghost\n')
    result = run_script('train.py', *train_args(data, tmp_path / 'run', '--val-split', 'none'), check=False)
    refused(result, 'train.txt lists ghost')


def test_labels_outside_the_classes(tmp_path):
    items = synthetic_shapes(2, 32, seed=0)
    items['img00'][1][5, 5] = 7  # 3 classes: 7 is neither a class nor 255
    data = write_segmentation_folder(tmp_path / 'data', items, 'train')
    result = run_script('train.py', *train_args(data, tmp_path / 'run', '--val-split', 'none', iterations=2),
                        check=False, env=ONE_THREAD)
    refused(result, 'img00.png', '7')


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(shapes, tmp_path):
    run_dir = tmp_path / 'run'
    result = run_script('train.py', *train_args(shapes, run_dir, '--lr', '1e12', '--checkpoint-every', '1',
                                                '--val-split', 'none', iterations=20), check=False, env=ONE_THREAD)
    refused(result, 'the loss became', 'last good checkpoint is')
    stopped = int(result.stderr.split('at iteration ')[1].split(';')[0])
    saved = sorted(os.listdir(run_dir / 'checkpoints'))
    assert all(int(name.split('-')[1]) < stopped for name in saved if name.startswith('iter-'))


def test_run_folder_protection_and_resume_settings(shapes, tmp_path):
    run_dir = tmp_path / 'run'
    run_script('train.py', *train_args(shapes, run_dir, '--val-split', 'none', iterations=1), env=ONE_THREAD)
    again = run_script('train.py', *train_args(shapes, run_dir, '--val-split', 'none', iterations=1), check=False)
    refused(again, 'already holds a run', '--resume')
    changed = run_script('train.py', *train_args(shapes, run_dir, '--val-split', 'none', '--lr', '0.1', '--resume',
                                                 iterations=1), check=False)
    refused(changed, '--lr 0.007 (not 0.1)')
    missing = run_script('train.py', '--run-dir', tmp_path / 'elsewhere', '--resume', check=False)
    refused(missing, 'elsewhere', 'no config.json')


def test_multi_device_run_resumes_from_another_folder_with_its_saved_settings(shapes, tmp_path):
    """--freeze-bn (needed on CPU contexts) and a relative --data-root come back from config.json."""
    run_dir = tmp_path / 'run'
    relative = os.path.relpath(shapes, tmp_path)
    run_script('train_multi_gpu.py', *train_args(relative, run_dir, '--freeze-bn', '--val-split', 'none', iterations=1,
                                                  gpus='cpu:2'), cwd=tmp_path, env=ONE_THREAD)
    result = run_script('train_multi_gpu.py', '--run-dir', run_dir, '--resume', '--gpus', 'cpu:2', '--quiet',
                        env=ONE_THREAD)
    assert 'resumed %s at iteration 1' % run_dir in result.stdout
    assert json.loads((run_dir / 'config.json').read_text())['data_root'] == str(shapes)


def test_device_options(shapes, tmp_path):
    amp = run_script('train.py', *train_args(shapes, tmp_path / 'a', '--amp'), check=False)
    refused(amp, '--amp', 'needs GPUs')
    several = run_script('train.py', *train_args(shapes, tmp_path / 'b', gpus='cpu:2'), check=False)
    one_line_error(several, 'train.py', 'train_multi_gpu.py', status=2)
    uneven = run_script('train_multi_gpu.py', *train_args(shapes, tmp_path / 'c', '--batch-size', '3', '--freeze-bn',
                                                           gpus='cpu:2'), check=False)
    refused(uneven, '--batch-size 3', '2 devices')
