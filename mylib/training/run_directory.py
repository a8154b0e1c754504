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
work since its last checkpoint.
"""
import json
import os
import shutil

from ..fileio import atomic_path, named_write_errors, write_json

KEEP_CHECKPOINTS = 2


class RunDirectory:
    def __init__(self, path):
        self.path = os.fspath(path)
        self.checkpoints = os.path.join(self.path, 'checkpoints')

    def file(self, name):
        return os.path.join(self.path, name)

    # --- settings ---------------------------------------------------------------------------------
    def save_config(self, config):
        os.makedirs(self.path, exist_ok=True)
        write_json(self.file('config.json'), config)

    def load_config(self):
        try:
            with open(self.file('config.json')) as stream:
                return json.load(stream)
        except FileNotFoundError:
            raise FileNotFoundError('%s: no config.json: not a training run folder' % self.path) from None

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

    def save_checkpoint(self, net, trainer, state):
        """Write net.params, trainer.states and state.json as one checkpoint, atomically."""
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
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)  # the last complete checkpoint stays as it was
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

    def load_checkpoint(self, net, trainer, ctxs):
        """Restore the newest checkpoint into `net` and `trainer`; return its state, or None if none."""
        folder = self.latest()
        if folder is None:
            return None
        net.load_parameters(os.path.join(folder, 'net.params'), ctx=ctxs)
        trainer.load_states(os.path.join(folder, 'trainer.states'))
        with open(os.path.join(folder, 'state.json')) as stream:
            return json.load(stream)

    # --- weights for users ------------------------------------------------------------------------
    def save_weights(self, net, name, details=None):
        """Save `net`'s parameters as RUN_DIR/<name>.params (and <name>.json with `details`), atomically."""
        with atomic_path(self.file(name + '.params')) as temporary:
            net.save_parameters(temporary)
        if details is not None:
            write_json(self.file(name + '.json'), details)


class MetricsLog:
    """RUN_DIR/metrics.jsonl: records as JSON lines, appended and flushed as they come. With path None
    (workers other than rank 0 of a dist_sync run) nothing is written and nothing read."""

    def __init__(self, path):
        self.path = None if path is None else os.fspath(path)

    def read(self):
        if self.path is None or not os.path.exists(self.path):
            return []
        with open(self.path) as stream:
            return [json.loads(line) for line in stream if line.strip()]

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
