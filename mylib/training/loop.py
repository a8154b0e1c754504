"""The one training loop: one device, several devices (SyncBatchNorm), several machines (dist_sync).

`train(options)` is all train.py and train_multi_gpu.py do. It reads top to bottom: `prepare` resolves
the settings, then builds the devices, the data, the network and its trainer, and opens the run folder,
each by a function that returns what it built; a `Session` holds them, made in one place. The loop
then steps, logs, checkpoints and validates.

Everything that shapes the numbers of a run depends only on the settings and the iteration: the data
order and augmentation on (seed, epoch, index), dropout on (seed, iteration), the learning rate on the
iteration. A run resumed from a checkpoint therefore continues exactly as if it had not been stopped.
"""
import functools
import hashlib
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from ..data import AugmentedDataset, TrainAugmentation, get_dataset, spec_for
from ..data.specs import IGNORE_LABEL
from ..devices import parse_devices
from ..errors import TrainingError
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


# --- the parts of a run, each built by one function ------------------------------------------------
@dataclass
class Cluster:
    """Where a run computes: its devices, and its place among the dist_sync workers (rank 0 of 1 alone)."""
    ctxs: List[mx.Context]
    kvstore: Any  # 'device' / 'local', or a dist kvstore
    rank: int
    num_workers: int


@dataclass
class Data:
    """The training batches and the validation split."""
    num_classes: int
    train_images: int
    sampler: EpochBatchSampler
    loader: gluon.data.DataLoader
    val_set: Optional[gluon.data.Dataset]  # None: no validation (or not rank 0)
    val_crop: tuple


@dataclass
class Session:
    """Everything a run is made of, built once by `prepare`; `iteration` and `best` advance as it trains."""
    options: Any
    log: Callable[[str], None]
    cluster: Cluster
    data: Data
    net: DeepLabV3Plus
    trainer: gluon.Trainer
    run: RunDirectory
    metrics: MetricsLog
    iteration: int = 0
    best: Optional[dict] = None


def resolve_settings(options, run):
    """Complete the options: on --resume the run's saved settings, then paths made absolute (a run resumes
    from any folder) and the dataset's official training crop where none was given. Returns the saved
    config (None for a new run).

    On --resume every option not written on the command line takes its value in the run's config.json.
    `options.given` holds the options written (train.py sets it); without it (a Namespace built in Python)
    nothing is filled in, and `open_run` only checks that the settings fixed on resume agree.
    """
    saved = None
    if options.resume:
        try:
            saved = run.load_config()
        except FileNotFoundError as error:
            raise TrainingError('--resume: %s' % error) from None
        given = getattr(options, 'given', None)
        if given is not None:
            for name, value in saved.items():
                if name in vars(options) and name not in given and name not in NOT_RESUMED + ('given',):
                    setattr(options, name, tuple(value) if isinstance(value, list) else value)
    for name in ('init', 'data_root'):
        if getattr(options, name):
            setattr(options, name, os.path.abspath(getattr(options, name)))
    if options.crop_size is None:
        options.crop_size = spec_for(options.dataset, options.num_classes).train_crop
    options.crop_size = tuple(options.crop_size)
    return saved


def build_cluster(options):
    """The devices of --gpus and, with --kvstore dist_*, this worker's rank among the workers."""
    ctxs = parse_devices(options.gpus)
    if not options.freeze_bn and len(ctxs) > 1 and any(ctx.device_type == 'cpu' for ctx in ctxs):
        # MXNet 1.9's SyncBatchNorm blocks an engine thread at a barrier until every device's call has
        # arrived; CPU contexts share the engine's temporary buffers, so a blocked context can hold one
        # that the other needs first: a deadlock. --freeze-bn needs no synchronisation.
        raise TrainingError('SyncBatchNorm runs on GPUs only (on several CPU contexts MXNet 1.9 deadlocks); '
                            'add --freeze-bn to train on %s, or use GPUs' % ', '.join(map(str, ctxs)))
    if options.amp and any(ctx.device_type != 'gpu' for ctx in ctxs):
        raise TrainingError('--amp (float16 mixed precision) needs GPUs; this run is on %s'
                            % ', '.join(map(str, ctxs)))
    if options.batch_size % len(ctxs):
        raise TrainingError('--batch-size %d does not split evenly over %d devices' % (options.batch_size, len(ctxs)))
    if options.kvstore.startswith('dist'):
        kvstore = mx.kv.create(options.kvstore)
        return Cluster(ctxs, kvstore, kvstore.rank, kvstore.num_workers)
    return Cluster(ctxs, options.kvstore, 0, 1)


def build_data(options, cluster):
    """The training split, augmented and batched for this worker, and (on rank 0) the validation split."""
    train_split = options.train_split or ('train_aug' if options.dataset == 'voc' else 'train')
    train_set = get_dataset(options.dataset, train_split, root=options.data_root, num_classes=options.num_classes)
    try:
        sampler = EpochBatchSampler(len(train_set), options.batch_size, options.seed, cluster.rank,
                                    cluster.num_workers)
    except ValueError as error:
        raise TrainingError('%s %s: %s' % (options.dataset, train_split, error)) from None
    augmented = AugmentedDataset(train_set, TrainAugmentation(crop_size=options.crop_size), options.seed)
    loader = gluon.data.DataLoader(augmented, batch_sampler=sampler, num_workers=options.num_workers)
    val_set = None
    if options.val_split != 'none' and cluster.rank == 0:
        val_set = get_dataset(options.dataset, options.val_split, root=options.data_root,
                              num_classes=options.num_classes)
    # your own data has no official evaluation crop: it is validated padded to the training crop
    val_crop = (options.crop_size if options.dataset == 'folder'
                else spec_for(options.dataset, train_set.num_classes).eval_crop)
    return Data(train_set.num_classes, len(train_set), sampler, loader, val_set, val_crop)


def norm_layer(options, ctxs):
    """BatchNorm at --bn-momentum; SyncBatchNorm over several devices; statistics fixed with --freeze-bn."""
    if options.freeze_bn:
        return functools.partial(batch_norm, use_global_stats=True)
    if len(ctxs) > 1:
        from mxnet.gluon.contrib.nn import SyncBatchNorm
        return functools.partial(batch_norm, momentum=options.bn_momentum, layer=SyncBatchNorm,
                                 num_devices=len(ctxs))
    return functools.partial(batch_norm, momentum=options.bn_momentum)


def build_network(options, num_classes, ctxs, log):
    """DeepLab v3+ on `ctxs`, initialised as the official training does and from --init.

    Weight decay (`wd_mult`) and initializers are the layers' own (`mylib.models`), set where they are built.
    """
    if options.amp:
        from mxnet.contrib import amp
        amp.init()  # before the network is built
    net = DeepLabV3Plus(num_classes, options.output_stride, norm_layer=norm_layer(options, ctxs))
    log(initialize_for_training(net, options.init, ctxs, seed=options.seed))
    net.hybridize(static_alloc=True)
    return net


def build_trainer(options, net, kvstore):
    trainer = gluon.Trainer(net.collect_params(), 'sgd', {
        'learning_rate': options.lr, 'momentum': options.momentum, 'wd': options.wd},
        kvstore=kvstore, update_on_kvstore=False)
    if options.amp:
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    return trainer


def config_of(options, cluster):
    """The settings saved as config.json: the options, the devices, MXNet's version."""
    config = {key: (list(value) if isinstance(value, tuple) else value) for key, value in vars(options).items()
              if key != 'given'}
    config.update(devices=[str(ctx) for ctx in cluster.ctxs], workers=cluster.num_workers, mxnet=mx.__version__)
    return config


def open_run(options, run, config, saved, rank):
    """Save the settings of a new run; on --resume check that the recipe is the saved one."""
    if saved is None:
        if rank == 0 and os.path.exists(run.file('config.json')):
            raise TrainingError('%s already holds a run: add --resume to continue it, or choose another --run-dir'
                                % run.path)
        if rank == 0:
            run.save_config(config)
        return
    changed = [name for name in FIXED_ON_RESUME if name in saved and saved[name] != config.get(name)]
    if changed:
        raise TrainingError('--resume: %s was started with %s; resume it without these options or with the same '
                            'values' % (run.path, ', '.join('--%s %s (not %s)' % (
                                name.replace('_', '-'), saved[name], config.get(name)) for name in changed)))


def restore_checkpoint(session):
    """Continue from the newest checkpoint of the run being resumed, if it has one."""
    state = session.run.load_checkpoint(session.net, session.trainer, session.cluster.ctxs)
    if state is None:
        session.log('%s has no checkpoint yet: starting from the beginning' % session.run.path)
        return
    session.iteration, session.best = state['iteration'], state['best']
    session.metrics.truncate_after(session.iteration)
    session.log('resumed %s at iteration %d of %d' % (session.run.path, session.iteration,
                                                      session.options.iterations))


def prepare(options, log=print):
    """Build the Session of a run from the parsed options (train.py's or train_multi_gpu.py's)."""
    run = RunDirectory(options.run_dir)
    saved = resolve_settings(options, run)  # first: every check below sees the settings the run will have
    cluster = build_cluster(options)
    data = build_data(options, cluster)
    options.num_classes = data.num_classes
    open_run(options, run, config_of(options, cluster), saved, cluster.rank)
    net = build_network(options, data.num_classes, cluster.ctxs, log)
    session = Session(options, log, cluster, data, net, build_trainer(options, net, cluster.kvstore), run,
                      MetricsLog(run.file('metrics.jsonl') if cluster.rank == 0 else None),
                      best={'miou': None, 'iteration': None})
    if saved is not None:
        restore_checkpoint(session)
    return session


# --- one step, one validation, one checkpoint ------------------------------------------------------
def train_step(session, images, labels, learning_rate):
    """One SGD step on a batch split over the devices; returns the batch's mean loss per labelled pixel."""
    mx.random.seed(session.options.seed * 1000003 + session.iteration)  # dropout masks: (seed, iteration)
    ctxs, trainer = session.cluster.ctxs, session.trainer
    images = gluon.utils.split_and_load(images, ctxs)
    labels = gluon.utils.split_and_load(labels, ctxs)
    labelled = max(sum(float((label != IGNORE_LABEL).sum().asscalar()) for label in labels), 1.0)
    with autograd.record():
        losses = [pixel_cross_entropy(session.net(x), y)[0] / labelled for x, y in zip(images, labels)]
    if session.options.amp:
        from mxnet.contrib import amp
        with amp.scale_loss(losses, trainer) as scaled:
            autograd.backward(scaled)
    else:
        autograd.backward(losses)
    trainer.set_learning_rate(learning_rate)
    trainer.step(session.cluster.num_workers)  # gradients of the workers are summed; average them
    return sum(float(loss.asscalar()) for loss in losses)


def validation_network(session):
    """A plain-BatchNorm copy of the network at the validation output stride (the same names)."""
    output_stride = session.options.val_os or session.options.output_stride
    ctxs = session.cluster.ctxs
    net = DeepLabV3Plus(session.data.num_classes, output_stride)
    net.initialize(ctx=ctxs)
    trained = session.net._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        param.set_data(trained[name].data(ctxs[0]))
    return net


def validate(session, epoch):
    """Evaluate the current weights on the validation split (the evaluate.py path); keep the best."""
    net, ctxs = validation_network(session), session.cluster.ctxs
    results = evaluate(net, session.data.val_set, ctxs, crop_size=session.data.val_crop, batch_size=len(ctxs),
                       progress=not session.options.quiet, limit=session.options.val_limit)
    record = {'iteration': session.iteration, 'epoch': epoch, 'val_miou': results['miou'],
              'val_pixel_accuracy': results['pixel_accuracy'], 'val_images': results['images']}
    session.metrics.append(record)
    session.log('iteration %d (epoch %.2f): validation mIoU %.2f %%, pixel accuracy %.2f %%'
                % (session.iteration, epoch, 100 * results['miou'], 100 * results['pixel_accuracy']))
    if session.best['miou'] is None or results['miou'] > session.best['miou']:
        session.best = {'miou': results['miou'], 'iteration': session.iteration}
        session.run.save_weights(net, 'best', dict(record, output_stride=net.output_stride,
                                                   **weights_details(session)))
    plot_curves(session.metrics.read(), session.run.file('curves.png'))


def weights_details(session):
    """What the JSON beside best.params / final.params says of the weights (read by predict.py, export.py)."""
    return {'kind': 'deeplabv3plus', 'num_classes': session.data.num_classes, 'dataset': session.options.dataset,
            'decoder': True}


def save_checkpoint(session):
    if session.cluster.rank == 0:
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


# --- the loop --------------------------------------------------------------------------------------
def train(options, log=print):
    """Train as the options say; returns the Session at the end. Raises TrainingError."""
    session = prepare(options, log)
    options, data, batches = session.options, session.data, len(session.data.sampler)
    log('training %s on %d %s images (%d batches of %d an epoch) on %s, %d iterations, run folder %s'
        % ('DeepLab v3+ (%d classes, OS%d)' % (data.num_classes, options.output_stride), data.train_images,
           options.dataset, batches, options.batch_size, ', '.join(map(str, session.cluster.ctxs)),
           options.iterations, session.run.path))
    bar = tqdm(total=options.iterations, initial=session.iteration, desc='training', unit='it',
               disable=options.quiet, dynamic_ncols=True)
    window, window_start = [], time.perf_counter()
    while session.iteration < options.iterations:
        epoch, first = divmod(session.iteration, batches)
        data.sampler.start(epoch, first)
        for images, labels in data.loader:
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
                          'images_per_second': len(window) * options.batch_size * session.cluster.num_workers
                          / seconds}
                session.metrics.append(record)
                bar.set_postfix(loss='%.4f' % record['loss'], lr='%.2e' % learning_rate,
                                img_s='%.1f' % record['images_per_second'])
                window, window_start = [], time.perf_counter()
            if session.iteration % options.checkpoint_every == 0:
                save_checkpoint(session)
            if data.val_set is not None and options.val_every and session.iteration % options.val_every == 0:
                validate(session, session.iteration / batches)
            if session.iteration >= options.iterations:
                break
        if data.val_set is not None and not options.val_every and session.iteration % batches == 0:
            validate(session, session.iteration / batches)
    bar.close()
    finish(session)
    return session


def finish(session):
    """The last checkpoint, and on rank 0 the final weights, the curves and a summary line."""
    save_checkpoint(session)
    cluster = session.cluster
    if cluster.num_workers > 1:
        session.log('worker %d of %d: parameters sha256 %s'
                    % (cluster.rank, cluster.num_workers, parameters_digest(session.net)))
    if cluster.rank != 0:
        return
    run = session.run
    run.save_weights(validation_network(session), 'final',
                     dict(weights_details(session), iteration=session.iteration, best=session.best))
    records = session.metrics.read()
    if records:
        plot_curves(records, run.file('curves.png'))
    best = session.best
    session.log('done: %d iterations; final weights %s%s' % (
        session.iteration, run.file('final.params'),
        '; best validation mIoU %.2f %% at iteration %d (%s)' % (100 * best['miou'], best['iteration'],
                                                                 run.file('best.params'))
        if best['miou'] is not None else ''))
