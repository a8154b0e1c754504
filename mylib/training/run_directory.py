"""Everything a training run writes, in one folder, written so that a kill -9 never corrupts it.

    RUN_DIR/config.json           the run's settings
    RUN_DIR/metrics.jsonl         one JSON line per logged iteration and per validation
    RUN_DIR/curves.png            training loss, learning rate and validation mIoU
    RUN_DIR/checkpoints/iter-N/   net.params, trainer.states, state.json (iteration, best mIoU, seed)
    RUN_DIR/checkpoints/latest    the name of the newest complete checkpoint
    RUN_DIR/best.params (+ .json) the weights of the best validation mIoU so far
    RUN_DIR/final.params          the weights at the end of the run

A checkpoint is written into a temporary folder that is renamed into place when complete; only then
does `latest` (itself replaced atomically) point at it. A killed run therefore loses at most the
work since its last checkpoint. A damaged or missing checkpoint is passed over for the newest intact
one, with a message. While a run uses the folder it holds a lock on RUN_DIR/.lock (released by the
system when the process ends, however it ends), so that two runs never write the same folder.
"""
import errno
import fcntl
import json
import os
import shutil

import mxnet as mx

from ..errors import TrainingError, library_reason
from ..fileio import atomic_path, named_write_errors, write_json

KEEP_CHECKPOINTS = 2
LOCK_FILE = '.lock'


class RunDirectory:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.checkpoints = os.path.join(self.path, 'checkpoints')
        self._lock = None

    def file(self, name):
        return os.path.join(self.path, name)

    # --- one run at a time --------------------------------------------------------------------------
    def lock(self):
        """Hold RUN_DIR/.lock for as long as this process lives; TrainingError if another process holds it.

        The lock is the kernel's (flock): it goes with the process, so a killed run never leaves a stale one.
        """
        os.makedirs(self.path, exist_ok=True)
        handle = open(self.file(LOCK_FILE), 'a+')
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or 'another process'
            handle.close()
            raise TrainingError('%s is in use by another run (%s); wait for it to end, or stop it first'
                                % (self.path, holder)) from None
        handle.seek(0)
        handle.truncate()
        handle.write('process %d' % os.getpid())
        handle.flush()
        self._lock = handle

    def remove_leftovers(self):
        """Delete the hidden temporary files and folders that killed runs leave (`.*.tmp`, `.*.partial`).

        Call it holding the lock: no live run is writing them then. Returns the names removed.
        """
        removed = []
        for folder in (self.path, self.checkpoints):
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                path = os.path.join(folder, name)
                if name.startswith('.') and name.endswith('.tmp') and os.path.isfile(path):
                    os.remove(path)
                    removed.append(name)
                elif name.startswith('.') and name.endswith('.partial') and os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(name)
        return removed

    # --- settings ---------------------------------------------------------------------------------
    def save_config(self, config):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.file('config.json'), config)

    def load_config(self):
        """The run's settings; TrainingError if the folder holds no run or its config.json is damaged."""
        try:
            with open(self.file('config.json')) as stream:
                config = json.load(stream)
        except FileNotFoundError:
            raise TrainingError('%s: no config.json: not a training run folder' % self.path) from None
        except ValueError as error:
            raise TrainingError('%s cannot be read (%s): the run\'s settings are lost; start a new run in '
                                'another --run-dir' % (self.file('config.json'), error)) from None
        if not isinstance(config, dict):
            raise TrainingError('%s is not a run\'s settings (a JSON object)' % self.file('config.json'))
        return config

    # --- checkpoints ------------------------------------------------------------------------------
    def latest(self):
        """The newest complete checkpoint's folder, or None."""
        try:
            with open(os.path.join(self.checkpoints, 'latest')) as stream:
                name = stream.read().strip()
        except FileNotFoundError:
            return None
        folder = os.path.join(self.checkpoints, name)
        return folder if os.path.isfile(os.path.join(folder, 'state.json')) else None

    def checkpoint_folders(self):
        """Checkpoint folders to resume from, best first: the one `latest` names, then the others, newest first."""
        if not os.path.isdir(self.checkpoints):
            return []
        names = sorted((name for name in os.listdir(self.checkpoints) if name.startswith('iter-')), reverse=True)
        try:
            with open(os.path.join(self.checkpoints, 'latest')) as stream:
                named = stream.read().strip()
        except OSError:
            named = None
        if named:
            names = [named] + [name for name in names if name != named]
        return [os.path.join(self.checkpoints, name) for name in names]

    def save_checkpoint(self, net, trainer, state):
        """Write net.params, trainer.states and state.json as one checkpoint, atomically.

        A full disk is a TrainingError naming the checkpoint and the space it needs; the partial write
        is removed and the previous checkpoint is left as it was.
        """
        name = 'iter-%08d' % state['iteration']
        final = os.path.join(self.checkpoints, name)
        partial = os.path.join(self.checkpoints, '.%s.partial' % name)
        shutil.rmtree(partial, ignore_errors=True)
        try:
            with named_write_errors(final):  # a full disk: an OSError naming the checkpoint
                os.makedirs(partial)
                net.save_parameters(os.path.join(partial, 'net.params'))
                trainer.save_states(os.path.join(partial, 'trainer.states'))
                write_json(os.path.join(partial, 'state.json'), state)
                for file in os.listdir(partial):
                    with open(os.path.join(partial, file), 'rb') as stream:
                        os.fsync(stream.fileno())
        except OSError as error:
            shutil.rmtree(partial, ignore_errors=True)  # the last complete checkpoint stays as it was
            if error.errno != errno.ENOSPC:
                raise
            needed = 2 * sum(4 * param.data().size for param in net.collect_params().values())  # weights + momentum
            raise TrainingError('cannot write checkpoint %s: no space left on its disk (it needs about %.0f MB, '
                                '%.0f MB are free); the last complete checkpoint is %s' % (
                                    final, needed / 2 ** 20, shutil.disk_usage(self.checkpoints).free / 2 ** 20,
                                    self.latest() or 'none yet')) from None
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        if os.path.exists(final):  # the same iteration saved by an earlier, interrupted run
            shutil.rmtree(final)
        os.rename(partial, final)
        with atomic_path(os.path.join(self.checkpoints, 'latest')) as temporary:
            with open(temporary, 'w') as stream:
                stream.write(name + '\n')
        self._prune(keep=name)
        return final

    def _prune(self, keep):
        names = sorted(name for name in os.listdir(self.checkpoints) if name.startswith('iter-'))
        for name in names[:-KEEP_CHECKPOINTS]:
            if name != keep:
                shutil.rmtree(os.path.join(self.checkpoints, name), ignore_errors=True)
        for name in os.listdir(self.checkpoints):  # folders of writes that a kill interrupted
            if name.endswith('.partial'):
                shutil.rmtree(os.path.join(self.checkpoints, name), ignore_errors=True)

    def load_checkpoint(self, net, trainer, ctxs, log=print):
        """Restore the newest intact checkpoint into `net` and `trainer`; return its state, or None if the
        run has none. A damaged or missing one is reported through `log` and the next older one tried;
        TrainingError (naming each and why) if there are checkpoints but none can be read."""
        problems = []
        for folder in self.checkpoint_folders():
            try:
                state = read_checkpoint(folder, net, trainer, ctxs)
            except DamagedCheckpointError as error:
                problems.append(str(error))
                log('checkpoint %s' % error)
                continue
            if problems:
                log('resuming from the newest intact checkpoint instead: %s' % folder)
            return state
        if problems:
            raise TrainingError('%s: no checkpoint can be read (%s); start a new run in another --run-dir'
                                % (self.path, '; '.join(problems)))
        return None

    # --- weights for users ------------------------------------------------------------------------
    def save_weights(self, net, name, details=None):
        """Save `net`'s parameters as RUN_DIR/<name>.params (and <name>.json with `details`), atomically."""
        with atomic_path(self.file(name + '.params')) as temporary:
            net.save_parameters(temporary)
        if details is not None:
            write_json(self.file(name + '.json'), details)


class DamagedCheckpointError(Exception):
    """A checkpoint folder that cannot be restored; the message names the file and why."""


def read_checkpoint(folder, net, trainer, ctxs):
    """Load one checkpoint folder into `net` and `trainer`; its state. DamagedCheckpointError if it cannot be."""
    files = {name: os.path.join(folder, name) for name in ('state.json', 'net.params', 'trainer.states')}
    missing = [path for path in files.values() if not os.path.isfile(path)]
    if missing:
        raise DamagedCheckpointError('%s is missing' % missing[0])
    try:
        with open(files['state.json']) as stream:
            state = json.load(stream)
        iteration = int(state['iteration'])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DamagedCheckpointError('%s cannot be read (%s)' % (files['state.json'], error)) from None
    try:
        net.load_parameters(files['net.params'], ctx=ctxs)
    except (mx.base.MXNetError, AssertionError, OSError, ValueError) as error:
        raise DamagedCheckpointError('%s cannot be read (%s)' % (files['net.params'], library_reason(error))) from None
    try:
        trainer.load_states(files['trainer.states'])
    except Exception as error:  # a damaged pickle raises any of several kinds
        raise DamagedCheckpointError('%s cannot be read (%s)'
                                     % (files['trainer.states'], library_reason(error))) from None
    return dict(state, iteration=iteration)


class MetricsLog:
    """RUN_DIR/metrics.jsonl: records as JSON lines, appended and flushed as they come. With path None
    (workers other than rank 0 of a dist_sync run) nothing is written and nothing read."""

    def __init__(self, path):
        self.path = None if path is None else os.fspath(path)

    def read(self):
        """The records; a line a kill cut short (not a whole JSON object) is left out."""
        if self.path is None or not os.path.exists(self.path):
            return []
        records = []
        with open(self.path) as stream:
            for line in stream:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and 'iteration' in record:
                    records.append(record)
        return records

    def truncate_after(self, iteration):
        """Drop the records of iterations after `iteration` (logged by a run that was then killed)."""
        if self.path is None:
            return
        kept = [record for record in self.read() if record['iteration'] <= iteration]
        with atomic_path(self.path) as temporary:
            with open(temporary, 'w') as stream:
                stream.writelines(json.dumps(record) + '\n' for record in kept)

    def append(self, record):
        if self.path is None:
            return
        with open(self.path, 'a') as stream:
            stream.write(json.dumps(record) + '\n')
