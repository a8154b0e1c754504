"""The one training loop: one device, several devices (SyncBatchNorm), several machines (dist_sync).

`train(options)` is all train.py and train_multi_gpu.py do. Everything that shapes the numbers of a
run depends only on the settings and the iteration: the data order and augmentation on
(seed, epoch, index), dropout on (seed, iteration), the learning rate on the iteration. A run resumed
from a checkpoint therefore continues exactly as if it had not been stopped.
"""
import functools
import hashlib
import math
import os
import time

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from ..data import DATASETS, AugmentedDataset, TrainAugmentation, get_dataset
from ..data.datasets import IGNORE_LABEL
from ..devices import parse_devices
from ..evaluation import evaluate
from ..models import DeepLabV3Plus
from ..models.layers import batch_norm
from .curves import plot_curves
from .initialization import initialize_for_training
from .loss import pixel_cross_entropy
from .options import FIXED_ON_RESUME, NOT_RESUMED
from .run_directory import MetricsLog, RunDirectory
from .sampler import EpochBatchSampler
from .schedule import poly_learning_rate


class TrainingError(Exception):
    """A run that cannot start or go on; the message says why and what to do."""


class Session:
    """The parts of a run: devices, data, network, trainer, run folder, and where it stands."""

    def __init__(self, options, log):
        self.options, self.log = options, log
        self.iteration, self.best = 0, {'miou': None, 'iteration': None}


# --- building the parts --------------------------------------------------------------------------------------------
def distributed(options):
    """(kvstore for the Trainer, this worker's rank, number of workers)."""
    if options.kvstore.startswith('dist'):
        kvstore = mx.kv.create(options.kvstore)
        return kvstore, kvstore.rank, kvstore.num_workers
    return options.kvstore, 0, 1


def norm_layer(options, ctxs):
    """BatchNorm at --bn-momentum; SyncBatchNorm over several devices; statistics fixed with --freeze-bn."""
    if options.freeze_bn:
        return functools.partial(batch_norm, use_global_stats=True)
    if len(ctxs) > 1:
        from mxnet.gluon.contrib.nn import SyncBatchNorm
        return functools.partial(batch_norm, momentum=options.bn_momentum, layer=SyncBatchNorm,
                                 num_devices=len(ctxs))
    return functools.partial(batch_norm, momentum=options.bn_momentum)


def check_sync_batch_norm(options, ctxs):
    """SyncBatchNorm needs GPUs: refuse it on several CPU contexts, with what to do instead.

    MXNet 1.9's SyncBatchNorm operator blocks an engine thread at a barrier until every device's call
    has arrived. GPUs have their own workers and buffers; CPU contexts share the engine's temporary
    buffers, so a blocked context can hold one the other context needs first: a deadlock (seen here,
    timing-dependent, hybridized or not). With --freeze-bn there is no synchronisation, and the rest of
    the multi-device path (batch split, whole-batch loss, gradient aggregation) runs on CPU contexts.
    """
    if not options.freeze_bn and len(ctxs) > 1 and any(ctx.device_type == 'cpu' for ctx in ctxs):
        raise TrainingError('SyncBatchNorm runs on GPUs only (on several CPU contexts MXNet 1.9 deadlocks); '
                            'add --freeze-bn to train on %s, or use GPUs' % ', '.join(map(str, ctxs)))


def decays(name):
    """Whether weight decay applies to a parameter: official l2 on convolution `weights` only, not on
    depthwise weights (regularize_depthwise=False), batch norm or biases."""
    return name.endswith('.weight') and '.depthwise.' not in name


def build_network(session):
    options, ctxs = session.options, session.ctxs
    if options.amp:
        from mxnet.contrib import amp
        amp.init()  # before the network is built
    net = DeepLabV3Plus(session.num_classes, options.output_stride, norm_layer=norm_layer(options, ctxs))
    session.log(initialize_for_training(net, options.init, ctxs, seed=options.seed))
    for name, param in net._collect_params_with_prefix().items():
        param.wd_mult = 1.0 if decays(name) else 0.0
    net.hybridize(static_alloc=True)
    session.net = net
    session.trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': options.lr, 'momentum': options.momentum, 'wd': options.wd},
        kvstore=session.kvstore, update_on_kvstore=False)
    if options.amp:
        from mxnet.contrib import amp
        amp.init_trainer(session.trainer)


def build_data(session):
    options = session.options
    train_split = options.train_split or ('train_aug' if options.dataset == 'voc' else 'train')
    train_set = get_dataset(options.dataset, train_split, root=options.data_root, num_classes=options.num_classes)
    session.num_classes = train_set.num_classes
    per_worker = options.batch_size
    if per_worker % len(session.ctxs):
        raise TrainingError('--batch-size %d does not split evenly over %d devices' % (per_worker, len(session.ctxs)))
    try:
        session.sampler = EpochBatchSampler(len(train_set), per_worker, options.seed, session.rank, session.num_workers)
    except ValueError as error:
        raise TrainingError('%s %s: %s' % (options.dataset, train_split, error)) from None
    augmented = AugmentedDataset(train_set, TrainAugmentation(crop_size=options.crop_size), options.seed)
    session.loader = gluon.data.DataLoader(augmented, batch_sampler=session.sampler, num_workers=options.num_workers)
    session.train_images = len(train_set)
    session.val_set = None
    if options.val_split != 'none' and session.rank == 0:
        session.val_set = get_dataset(options.dataset, options.val_split, root=options.data_root,
                                      num_classes=options.num_classes)
        session.val_crop = DATASETS[options.dataset].crop_size if options.dataset in DATASETS else options.crop_size


def resume_settings(options, run):
    """On --resume, give every option not written on the command line its value in the run's config.json;
    return that saved config.

    `options.given` holds the options written (train.py sets it); without it (a Namespace built in Python)
    nothing is filled in, and start_or_resume only checks that the settings fixed on resume agree.
    """
    try:
        saved = run.load_config()
    except FileNotFoundError as error:
        raise TrainingError('--resume: %s' % error) from None
    given = getattr(options, 'given', None)
    if given is not None:
        for name, value in saved.items():
            if name in vars(options) and name not in given and name not in NOT_RESUMED + ('given',):
                setattr(options, name, tuple(value) if isinstance(value, list) else value)
    return saved


def start_or_resume(session):
    """Save the settings of a new run, or restore the newest checkpoint of the run being resumed."""
    options, run = session.options, session.run
    session.metrics = MetricsLog(run.file('metrics.jsonl') if session.rank == 0 else None)
    if not options.resume:
        if session.rank == 0 and os.path.exists(run.file('config.json')):
            raise TrainingError('%s already holds a run: add --resume to continue it, or choose another --run-dir'
                                % run.path)
        if session.rank == 0:
            run.save_config(session.config)
        return
    saved = session.saved_config
    changed = [name for name in FIXED_ON_RESUME if name in saved and saved[name] != session.config.get(name)]
    if changed:
        raise TrainingError('--resume: %s was started with %s; resume it without these options or with the same '
                            'values' % (run.path, ', '.join('--%s %s (not %s)' % (
                                name.replace('_', '-'), saved[name], session.config.get(name)) for name in changed)))
    state = run.load_checkpoint(session.net, session.trainer, session.ctxs)
    if state is None:
        session.log('%s has no checkpoint yet: starting from the beginning' % run.path)
        return
    session.iteration = state['iteration']
    session.best = state['best']
    session.metrics.truncate_after(session.iteration)
    session.log('resumed %s at iteration %d of %d' % (run.path, session.iteration, options.iterations))


def config_of(options, session):
    config = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(options).items()
              if key != 'given'}
    config.update(devices=[str(ctx) for ctx in session.ctxs], workers=session.num_workers,
                  mxnet=mx.__version__)
    return config


def prepare(options, log=print):
    """Build a Session from the parsed options (train.py's or train_multi_gpu.py's)."""
    session = Session(options, log)
    session.run = RunDirectory(options.run_dir)
    if options.resume:  # first: every check below sees the settings the run will have
        session.saved_config = resume_settings(options, session.run)
    for name in ('init', 'data_root'):  # saved absolute, so that a run resumes from any folder
        if getattr(options, name):
            setattr(options, name, os.path.abspath(getattr(options, name)))
    try:
        session.ctxs = parse_devices(options.gpus)
    except ValueError as error:
        raise TrainingError(str(error)) from None
    check_sync_batch_norm(options, session.ctxs)
    if options.amp and any(ctx.device_type != 'gpu' for ctx in session.ctxs):
        raise TrainingError('--amp (float16 mixed precision) needs GPUs; this run is on %s'
                            % ', '.join(map(str, session.ctxs)))
    session.kvstore, session.rank, session.num_workers = distributed(options)
    build_data(session)
    options.crop_size = tuple(options.crop_size)
    session.config = config_of(options, session)
    session.config['num_classes'] = options.num_classes = session.num_classes
    build_network(session)
    start_or_resume(session)
    return session


# --- one step, one validation, one checkpoint ----------------------------------------------------------------------
def train_step(session, images, labels, learning_rate):
    """One SGD step on a batch split over the devices; returns the batch's mean loss per labelled pixel."""
    mx.random.seed(session.options.seed * 1000003 + session.iteration)  # dropout masks: (seed, iteration)
    images = gluon.utils.split_and_load(images, session.ctxs)
    labels = gluon.utils.split_and_load(labels, session.ctxs)
    labelled = max(sum(float((label != IGNORE_LABEL).sum().asscalar()) for label in labels), 1.0)
    with autograd.record():
        losses = [pixel_cross_entropy(session.net(x), y, IGNORE_LABEL)[0] / labelled for x, y in zip(images, labels)]
    if session.options.amp:
        from mxnet.contrib import amp
        with amp.scale_loss(losses, session.trainer) as scaled:
            autograd.backward(scaled)
    else:
        autograd.backward(losses)
    session.trainer.set_learning_rate(learning_rate)
    session.trainer.step(session.num_workers)  # gradients of the workers are summed; average them
    return sum(float(loss.asscalar()) for loss in losses)


def validation_network(session):
    """A plain-BatchNorm copy of the network at the validation output stride (the same names)."""
    output_stride = session.options.val_os or session.options.output_stride
    net = DeepLabV3Plus(session.num_classes, output_stride)
    net.initialize(ctx=session.ctxs)
    trained = session.net._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        param.set_data(trained[name].data(session.ctxs[0]))
    return net


def validate(session, epoch):
    """Evaluate the current weights on the validation split (the evaluate.py path); keep the best."""
    net = validation_network(session)
    results = evaluate(net, session.val_set, session.ctxs, crop_size=session.val_crop,
                       batch_size=len(session.ctxs), progress=not session.options.quiet,
                       limit=session.options.val_limit)
    record = {'iteration': session.iteration, 'epoch': epoch, 'val_miou': results['miou'],
              'val_pixel_accuracy': results['pixel_accuracy'], 'val_images': results['images']}
    session.metrics.append(record)
    session.log('iteration %d (epoch %.2f): validation mIoU %.2f %%, pixel accuracy %.2f %%'
                % (session.iteration, epoch, 100 * results['miou'], 100 * results['pixel_accuracy']))
    if session.best['miou'] is None or results['miou'] > session.best['miou']:
        session.best = {'miou': results['miou'], 'iteration': session.iteration}
        session.run.save_weights(net, 'best', dict(record, output_stride=net.output_stride))
    plot_curves(session.metrics.read(), session.run.file('curves.png'))


def save_checkpoint(session):
    if session.rank == 0:
        state = {'iteration': session.iteration, 'best': session.best, 'seed': session.options.seed}
        session.run.save_checkpoint(session.net, session.trainer, state)


def parameters_digest(net):
    """sha256 of the trainable parameters (by name): equal on every worker of a synchronous run. (Batch-norm
    running statistics are each worker's own, from its share of the data; rank 0 saves its own.)"""
    digest = hashlib.sha256()
    for name, param in sorted(net._collect_params_with_prefix().items()):
        if param.grad_req == 'null':
            continue
        digest.update(name.encode())
        digest.update(param.data().asnumpy().tobytes())
    return digest.hexdigest()


# --- the loop -----------------------------------------------------------------------------------------------------
def train(options, log=print):
    """Train as the options say; returns the Session at the end. Raises TrainingError."""
    session = prepare(options, log)
    options, batches = session.options, len(session.sampler)
    log('training %s on %d %s images (%d batches of %d an epoch) on %s, %d iterations, run folder %s'
        % ('DeepLab v3+ (%d classes, OS%d)' % (session.num_classes, options.output_stride), session.train_images,
           options.dataset, batches, options.batch_size, ', '.join(map(str, session.ctxs)), options.iterations,
           session.run.path))
    bar = tqdm(total=options.iterations, initial=session.iteration, desc='training', unit='it',
               disable=options.quiet, dynamic_ncols=True)
    window, window_start = [], time.perf_counter()
    while session.iteration < options.iterations:
        epoch, first = divmod(session.iteration, batches)
        session.sampler.start(epoch, first)
        for images, labels in session.loader:
            learning_rate = poly_learning_rate(options.lr, session.iteration, options.iterations, options.power)
            loss = train_step(session, images, labels, learning_rate)
            if not math.isfinite(loss):
                latest = session.run.latest()
                raise TrainingError('the loss became %s at iteration %d; stopped without saving. The last good '
                                    'checkpoint is %s; try a lower --lr or check the labels'
                                    % (loss, session.iteration + 1, latest or 'none (no checkpoint yet)'))
            session.iteration += 1
            window.append(loss)
            bar.update(1)
            if session.iteration % options.log_every == 0 or session.iteration == options.iterations:
                seconds = time.perf_counter() - window_start
                record = {'iteration': session.iteration, 'epoch': session.iteration / batches,
                          'loss': sum(window) / len(window), 'lr': learning_rate,
                          'images_per_second': len(window) * options.batch_size * session.num_workers / seconds}
                session.metrics.append(record)
                bar.set_postfix(loss='%.4f' % record['loss'], lr='%.2e' % learning_rate,
                                img_s='%.1f' % record['images_per_second'])
                window, window_start = [], time.perf_counter()
            if session.iteration % options.checkpoint_every == 0:
                save_checkpoint(session)
            if session.val_set is not None and options.val_every and session.iteration % options.val_every == 0:
                validate(session, session.iteration / batches)
            if session.iteration >= options.iterations:
                break
        if session.val_set is not None and not options.val_every and session.iteration % batches == 0:
            validate(session, session.iteration / batches)
    bar.close()
    finish(session)
    return session


def finish(session):
    """The last checkpoint, and on rank 0 the final weights, the curves and a summary line."""
    save_checkpoint(session)
    if session.num_workers > 1:
        session.log('worker %d of %d: parameters sha256 %s'
                    % (session.rank, session.num_workers, parameters_digest(session.net)))
    if session.rank != 0:
        return
    run = session.run
    run.save_weights(validation_network(session), 'final', {'iteration': session.iteration, 'best': session.best})
    records = session.metrics.read()
    if records:
        plot_curves(records, run.file('curves.png'))
    best = session.best
    session.log('done: %d iterations; final weights %s%s' % (
        session.iteration, run.file('final.params'),
        '; best validation mIoU %.2f %% at iteration %d (%s)' % (100 * best['miou'], best['iteration'],
                                                                 run.file('best.params'))
        if best['miou'] is not None else ''))
