"""The one training loop: one device, several devices (SyncBatchNorm), several machines (dist_sync).

`train(options)` is all train.py and train_multi_gpu.py do. It reads top to bottom: `prepare` resolves
the settings, then builds the devices, the data, the network and its trainer, and opens the run folder,
each by a function that returns what it built; a `Session` holds them, made in one place. The loop
then steps, logs, checkpoints and validates.

Everything that shapes the numbers of a run depends only on the settings and the iteration: the data
order and augmentation on (seed, epoch, index), dropout on (seed, iteration), the learning rate on the
iteration. A run resumed from a checkpoint therefore continues exactly as if it had not been stopped.
"""
import contextlib
import functools
import hashlib
import math
import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Optional

import mxnet as mx
from mxnet import autograd, gluon
from tqdm import tqdm

from ..data import AugmentedDataset, TrainAugmentation, get_dataset, spec_for
from ..data.specs import IGNORE_LABEL
from ..devices import parse_devices
from ..errors import OptionError, StopRequested, TrainingError
from ..evaluation import evaluate
from ..metrics import number_or_none
from ..models import DeepLab
from ..models.layers import batch_norm, mean_pixel
from ..weights import fitting_crop, momentum_path, read_metadata, spec_of
from .batch_norm import AccurateBatchNorm, MovingVarianceCorrection
from .curves import plot_curves
from .initialization import initial_momentum, initialize_for_training, training_spec
from .loss import pixel_cross_entropy
from .optimizer import load_momentum
from .options import BEFORE_OPTION, FIXED_ON_RESUME, NOT_RESUMED
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
    net: DeepLab
    trainer: gluon.Trainer
    run: RunDirectory
    metrics: MetricsLog
    correction: Optional[MovingVarianceCorrection]  # None when the statistics are frozen
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
        saved = run.load_config()
        given = getattr(options, 'given', None)
        if given is not None:
            for name, value in saved.items():
                if name in vars(options) and name not in given and name not in NOT_RESUMED + ('given',):
                    setattr(options, name, tuple(value) if isinstance(value, list) else value)
            for name, value in BEFORE_OPTION.items():  # a run saved before the option existed
                if name not in saved and name not in given:
                    setattr(options, name, value)
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
    spec = spec_for(options.dataset, options.num_classes)
    train_split = options.train_split or spec.train_split
    train_set = get_dataset(options.dataset, train_split, root=options.data_root, num_classes=options.num_classes)
    try:
        sampler = EpochBatchSampler(len(train_set), options.batch_size, options.seed, cluster.rank,
                                    cluster.num_workers)
    except ValueError as error:
        raise TrainingError('%s %s: %s' % (options.dataset, train_split, error)) from None
    # padding in the colour that the network's normalisation makes 0, as its original training pads
    normalization = spec_of(options.init).input_normalization if options.init else 'unit_range'
    try:
        augmentation = TrainAugmentation(options.crop_size, options.min_scale, options.max_scale, options.scale_step,
                                         flip=not options.no_flip, pad_value=mean_pixel(normalization))
    except ValueError as error:
        raise OptionError('--min-scale %g --max-scale %g --scale-step %g: %s' % (
            options.min_scale, options.max_scale, options.scale_step, error)) from None
    augmented = AugmentedDataset(train_set, augmentation, options.seed)
    with signals_ignored(signal.SIGINT):  # the workers, forked here, leave Ctrl-C to this process
        loader = gluon.data.DataLoader(augmented, batch_sampler=sampler, num_workers=options.num_workers)
    val_set = None
    if options.val_split != 'none' and cluster.rank == 0:
        val_set = get_dataset(options.dataset, options.val_split, root=options.data_root,
                              num_classes=options.num_classes)
    # your own data has no official evaluation crop: it is validated padded to the training crop
    val_crop = options.crop_size if options.dataset == 'folder' else spec.eval_crop
    return Data(train_set.num_classes, len(train_set), sampler, loader, val_set, val_crop)


def norm_layer(options, ctxs):
    """BatchNorm; SyncBatchNorm over several devices; statistics fixed with --freeze-bn (the momentum: --bn-momentum,
    given to the network)."""
    if options.accurate_bn and (options.freeze_bn or len(ctxs) > 1):
        raise OptionError('--accurate-bn is for one device with batch statistics: not with %s'
                          % ('--freeze-bn' if options.freeze_bn else 'several devices (SyncBatchNorm)'))
    if options.freeze_bn:
        return functools.partial(batch_norm, use_global_stats=True)
    if options.accurate_bn:
        return functools.partial(batch_norm, layer=AccurateBatchNorm)
    if len(ctxs) > 1:
        from mxnet.gluon.contrib.nn import SyncBatchNorm
        return functools.partial(batch_norm, layer=SyncBatchNorm, num_devices=len(ctxs))
    return batch_norm


def build_network(options, num_classes, ctxs, log):
    """The DeepLab network of the run (`training_spec`: --init's, or --backbone's official release head) on
    `ctxs`, initialised as the official training does and from --init.

    Weight decay (`wd_mult`) and initializers are the layers' own (`mylib.models`), set where they are built.
    """
    if options.amp:
        from mxnet.contrib import amp
        amp.init()  # before the network is built
    spec = training_spec(options.init, options.backbone, num_classes, options.output_stride)
    options.backbone, options.output_stride = spec.model_variant, spec.output_stride  # as saved with the run
    net = DeepLab(spec, norm_layer=norm_layer(options, ctxs), dropout_keep=options.dropout_keep,
                  bn_momentum=options.bn_momentum)
    fitting_crop(net, options.crop_size, given=True)  # a crop the network cannot take: OptionError
    log(initialize_for_training(net, options.init, ctxs, seed=options.seed))
    net.hybridize(static_alloc=True)
    return net


def moving_variance_correction(options, net, ctxs):
    """The official (Bessel-corrected) moving-variance update for this run's batches, None with --freeze-bn."""
    if options.freeze_bn:
        return None
    shape = (options.batch_size // len(ctxs), 3) + tuple(options.crop_size)
    return MovingVarianceCorrection(net, ctxs, shape, sync=len(ctxs) > 1)


def build_trainer(options, net, kvstore):
    """The optimizer of --optimizer: `deeplab_momentum` (the official update; mylib/training/optimizer.py)."""
    trainer = gluon.Trainer(net.collect_params(), options.optimizer, {
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
    """Continue from the newest intact checkpoint of the run being resumed, if it has one; the metrics
    log keeps each iteration once (records of a killed run beyond that checkpoint are dropped)."""
    state = session.run.load_checkpoint(session.net, session.trainer, session.cluster.ctxs, session.log)
    if state is None:
        session.metrics.truncate_after(0)
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
    net = build_network(options, data.num_classes, cluster.ctxs, log)
    if cluster.rank == 0:  # the worker that writes the run folder; nothing is written before this
        run.lock()
        removed = run.remove_leftovers()
        if removed:
            log('removed what killed runs left in %s: %s' % (run.path, ', '.join(sorted(removed))))
    open_run(options, run, config_of(options, cluster), saved, cluster.rank)
    session = Session(options, log, cluster, data, net, build_trainer(options, net, cluster.kvstore), run,
                      MetricsLog(run.file('metrics.jsonl') if cluster.rank == 0 else None),
                      moving_variance_correction(options, net, cluster.ctxs), best={'miou': None, 'iteration': None})
    if saved is not None:
        restore_checkpoint(session)
    else:
        start_momentum(session)
    return session


def start_momentum(session):
    """Start the optimizer from the release's momentum slots that --init offers, as the official fine-tuning
    restores them with the weights; without them (or with --optimizer sgd) the momentum starts at zero."""
    momenta = initial_momentum(session.net, session.options.init)
    if momenta is None:
        return
    if session.options.optimizer != 'deeplab_momentum':
        session.log('the momentum slots beside %s are not used: they are deeplab_momentum\'s accumulators, not %s\'s'
                    % (session.options.init, session.options.optimizer))
        return
    installed = load_momentum(session.trainer, momenta)
    session.log('optimizer state from %s: the momentum of %d of %d trainable parameters (the rest start at zero)'
                % (momentum_path(session.options.init), len(installed),
                   sum(param.grad_req != 'null' for param in session.net.collect_params().values())))


# --- one step, one validation, one checkpoint ------------------------------------------------------
def regularization_loss(net, wd, ctx):
    """The official weight-decay term, wd * sum(w^2) / 2 over the decayed weights (times their wd_mult)."""
    terms = [(param.data(ctx) ** 2).sum() * (param.wd_mult * wd / 2)
             for param in net.collect_params().values() if param.wd_mult and param.grad_req != 'null']
    return float(mx.nd.add_n(*terms).asscalar()) if terms else 0.0


def train_step(session, images, labels, learning_rate):
    """One optimizer step on a batch split over the devices; returns the batch's cross entropy (mean over
    its labelled pixels), computed at the weights before the step."""
    mx.random.seed(session.options.seed * 1000003 + session.iteration)  # dropout masks: (seed, iteration)
    ctxs, trainer = session.cluster.ctxs, session.trainer
    images = gluon.utils.split_and_load(images, ctxs)
    labels = gluon.utils.split_and_load(labels, ctxs)
    labelled = max(sum(float((label != IGNORE_LABEL).sum().asscalar()) for label in labels), 1.0)
    # MXNet updates the moving statistics in the backward pass: the correction spans both
    with session.correction or contextlib.nullcontext():  # the moving variances as the official update
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
    net = DeepLab(session.net.spec.with_output_stride(output_stride))
    trained = session.net._collect_params_with_prefix()
    for name, param in net._collect_params_with_prefix().items():
        param.initialize(init=mx.init.Zero(), ctx=ctxs)  # (no random draws: every value is set next)
        param.set_data(trained[name].data(ctxs[0]))
    return net


def validate(session, epoch):
    """Evaluate the current weights on the validation split (the evaluate.py path); keep the best."""
    net, ctxs = validation_network(session), session.cluster.ctxs
    results = evaluate(net, session.data.val_set, ctxs, crop_size=session.data.val_crop, batch_size=len(ctxs),
                       progress=not session.options.quiet, limit=session.options.val_limit)
    record = {'iteration': session.iteration, 'epoch': epoch, 'val_miou': number_or_none(results['miou']),
              'val_pixel_accuracy': number_or_none(results['pixel_accuracy']), 'val_images': results['images']}
    session.metrics.append(record)
    session.log('iteration %d (epoch %.2f): validation mIoU %.2f %%, pixel accuracy %.2f %%'
                % (session.iteration, epoch, 100 * results['miou'], 100 * results['pixel_accuracy']))
    if record['val_miou'] is not None and (session.best['miou'] is None or record['val_miou'] > session.best['miou']):
        session.best = {'miou': record['val_miou'], 'iteration': session.iteration}
        session.run.save_weights(net, 'best', dict(record, output_stride=net.output_stride,
                                                   **weights_details(session)))
    plot_curves(session.metrics.read(), session.run.file('curves.png'))


def weights_details(session):
    """What the JSON beside best.params / final.params says of the weights (read by predict.py, export.py)."""
    spec = session.net.spec
    details = {'kind': spec.task, 'num_classes': spec.num_classes, 'dataset': session.options.dataset,
               'model': spec.to_json(), 'description': spec.describe()}
    project = read_metadata(session.options.init).get('project') if session.options.init else None
    if project:  # a converted PyTorch DeepLab: its weights keep its original's evaluation protocol
        details['project'] = project
    return details


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


# --- stop requests ---------------------------------------------------------------------------------
@contextlib.contextmanager
def signals_ignored(*signals):
    """Ignore `signals` in the block (processes forked there inherit it; restored after)."""
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


@contextlib.contextmanager
def stop_requests(log):
    """Turn SIGINT (Ctrl-C) and SIGTERM into a request, yielded as a list that holds the signal once asked.

    The loop checks it after each step: the run saves a checkpoint at that iteration and stops. A second
    request stops at once (KeyboardInterrupt), keeping the checkpoints already written.
    """
    requested = []

    def ask(number, _):
        if requested:
            raise KeyboardInterrupt
        requested.append(number)
        log('\n%s: stopping after this step (again to stop at once)' % signal.Signals(number).name)

    previous = {number: signal.signal(number, ask) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield requested
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop(session, number):
    """Save a checkpoint at the current iteration and raise StopRequested saying how to resume."""
    save_checkpoint(session)
    name = signal.Signals(number).name
    raise StopRequested('stopped by %s at iteration %d of %d; checkpoint saved in %s; continue with: '
                        'python train.py --run-dir %s --resume' % (
                            name, session.iteration, session.options.iterations, session.run.checkpoints,
                            session.run.path), status=128 + number)


# --- the loop --------------------------------------------------------------------------------------
def train(options, log=print):
    """Train as the options say; returns the Session at the end. Raises TrainingError, or StopRequested
    after a stop request (with a checkpoint at the iteration it stopped)."""
    session = prepare(options, log)
    with stop_requests(log) as requested:
        loop(session, requested)
    finish(session)
    return session


def loop(session, requested):
    """Train from `session.iteration` to the last iteration; `requested` holds a stop request's signal."""
    options, data, batches = session.options, session.data, len(session.data.sampler)
    session.log('training %s on %d %s images (%d batches of %d an epoch) on %s, %d iterations, run folder %s'
        % (session.net.spec.describe(), data.train_images,
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
            logging = (session.iteration + 1) % options.log_every == 0 or session.iteration + 1 == options.iterations
            regularization = (regularization_loss(session.net, options.wd, session.cluster.ctxs[0]) if logging
                              else None)  # at the weights of the step's forward pass, as the official summaries
            loss = train_step(session, images, labels, learning_rate)
            if not math.isfinite(loss):
                latest = session.run.latest()
                raise TrainingError('the loss became %s at iteration %d; stopped without saving. The last good '
                                    'checkpoint is %s; try a lower --lr or check the labels'
                                    % (loss, session.iteration + 1, latest or 'none (no checkpoint yet)'))
            session.iteration += 1
            window.append(loss)
            bar.update(1)
            if logging:
                seconds = time.perf_counter() - window_start
                record = {'iteration': session.iteration, 'epoch': session.iteration / batches,
                          'loss': sum(window) / len(window),  # the mean cross entropy since the last record
                          'cross_entropy': loss, 'regularization_loss': regularization,
                          'total_loss': loss + regularization, 'lr': learning_rate,
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
            if requested:
                bar.close()
                stop(session, requested[0])
            if session.iteration >= options.iterations:
                break
        if data.val_set is not None and not options.val_every and session.iteration % batches == 0:
            validate(session, session.iteration / batches)
    bar.close()


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
