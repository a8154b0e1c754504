"""`deeplab_momentum`: the official DeepLab training's optimizer (`tf.train.MomentumOptimizer`) for MXNet.

Per parameter, in float32 (every scalar rounded to float32 first, as TF casts the learning rate and the
momentum to the variable's dtype in `MomentumOptimizer._apply_dense`)::

    g     = clip(rescale_grad * grad)            # clip only if clip_gradient is set, as MXNet's `sgd`
    g     = grad_mult * (g + wd * wd_mult * w)   # the l2 regularizer's gradient, then the multiplier
    accum = momentum * accum + g
    w     = w - lr * lr_mult * accum             # lr: the current learning rate, applied at use

Where each term comes from (tensorflow/models, research/deeplab):

- `train.py`, `_train_deeplab_model`: `optimizer = tf.train.MomentumOptimizer(learning_rate, FLAGS.momentum)`
  (momentum 0.9, no Nesterov); `ApplyMomentum` computes `accum = accum * momentum + grad; var -= lr * accum`.
- Weight decay: `slim.l2_regularizer(weight_decay)` adds `wd * sum(w^2) / 2` to the loss (`_tower_loss`:
  `total_loss = add_n(losses) + regularization_loss`); its gradient `wd * w` is summed with the loss
  gradient by `optimizer.compute_gradients(total_loss)` and goes through the accumulator like any other.
- Gradient multipliers: `utils/train_utils.py`, `get_model_gradient_multipliers`, x2 on every variable
  whose name contains `biases` and `last_layer_gradient_multiplier` on the last layers, applied by
  `multiply_gradients(grads_and_vars, grad_mult)` to the gradients of the *total* loss, so to the decay
  term too: `grad_mult * (g + wd * w)`. The official biases have no regularizer (the order does not
  matter for them), but a `last_layer_gradient_multiplier` other than 1 scales the logits weights' decay.
  Here the multiplier is the Gluon Parameter's attribute `grad_mult` (default 1; the layers set it where
  they are built), found through the optimizer's `param_dict` (a `gluon.Trainer` passes it), or
  `set_grad_mult({index or name: multiplier})` for optimizers used without one.

The difference with MXNet's `sgd`: `sgd` folds the learning rate into its state (`mom = m * mom - lr * g;
w += mom`), so a past gradient keeps the learning rate of its own step; here the state is TF's accumulator
of raw gradients and the current learning rate multiplies all of it. With a constant rate the two agree
(`mom = -lr * accum`); under the poly schedule, whose rate changes every step, they do not (on the
reference's logits layer, `sgd` is off by 12 % of the update after step 2 and 32 % after step 3).

The state of a parameter *is* TF's `<variable>/Momentum` slot (same units, Gluon layout): a release
checkpoint's slots can be installed with `load_momentum` (`state_from_momentum` makes one state).
float32 weights are updated in float32; float16 weights need `multi_precision=True` (a float32 master
copy and a float32 accumulator, MXNet's generic mixed-precision wrapper). Dense gradients only.
"""
import mxnet as mx
import numpy as np

from ..errors import TrainingError

__all__ = ['DeepLabMomentum', 'deeplab_momentum', 'load_momentum', 'state_from_momentum']


def _f32(value):
    """A Python float holding `value` rounded to float32: TF's float32 scalars, whatever MXNet does with them."""
    return float(np.float32(value))


@mx.optimizer.Optimizer.register
class deeplab_momentum(mx.optimizer.Optimizer):  # noqa: N801 (MXNet registers the lowercased class name)
    """The official DeepLab momentum (`tf.train.MomentumOptimizer`), registered as `deeplab_momentum`;
    `DeepLabMomentum` is the same class.

    `mx.optimizer.create('deeplab_momentum', learning_rate=0.007, momentum=0.9, wd=4e-5)`, or
    `gluon.Trainer(params, 'deeplab_momentum', {...})`. See the module's docstring for the update.

    Parameters
    ----------
    momentum : float, default 0.9 (the official `--momentum`)
        The accumulator's decay.
    **kwargs
        Those of `mx.optimizer.Optimizer` (learning_rate, wd, rescale_grad, clip_gradient, lr_scheduler,
        multi_precision, param_dict, param_idx2name, ...).
    """

    def __init__(self, momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.momentum = momentum
        self.grad_mult = {}

    def set_grad_mult(self, args_grad_mult):
        """Gradient multipliers by parameter index or name (`param_idx2name`), for use without `param_dict`."""
        self.grad_mult = dict(args_grad_mult)

    def _get_grad_mult(self, index):
        param = self.param_dict.get(index)
        if param is not None:
            return float(getattr(param, 'grad_mult', 1.0))
        if index in self.grad_mult:
            return float(self.grad_mult[index])
        return float(self.grad_mult.get(self.idx2name.get(index), 1.0))

    def create_state(self, index, weight):
        """The accumulator: zeros of the weight's shape, dtype (float32) and context."""
        return mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype)

    def update(self, index, weight, grad, state):
        """One official step for one parameter (or for lists of them), in place on `weight` and `state`."""
        if isinstance(index, (list, tuple)):
            for one in zip(index, weight, grad, state):
                self.update(*one)
            return
        if weight.stype != 'default' or grad.stype != 'default':
            raise TrainingError('deeplab_momentum updates dense parameters only (got %s weight, %s gradient)'
                                % (weight.stype, grad.stype))
        self._update_count(index)
        lr = _f32(self._get_lr(index))
        wd = _f32(self._get_wd(index))
        grad_mult = _f32(self._get_grad_mult(index))
        g = grad
        if self.rescale_grad != 1.0:
            g = g * _f32(self.rescale_grad)
        if self.clip_gradient:
            g = mx.nd.clip(g, -self.clip_gradient, self.clip_gradient)
        if wd != 0.0:
            g = g + weight * wd  # the l2 regularizer's gradient joins the loss's ...
        if grad_mult != 1.0:
            g = g * grad_mult  # ... before the multiplier (multiply_gradients acts on the total loss's gradient)
        state *= _f32(self.momentum)
        state += g
        weight -= state * lr


DeepLabMomentum = deeplab_momentum


def state_from_momentum(momentum, ctx=None, dtype='float32'):
    """The `deeplab_momentum` state of a TF `<variable>/Momentum` slot: the same array (already in the Gluon
    layout of its parameter) as an NDArray on `ctx`. The slot and the state are the same accumulator."""
    return mx.nd.array(np.asarray(momentum), ctx=ctx or mx.cpu(), dtype=dtype)


def load_momentum(trainer, momenta):
    """Start the accumulators of `trainer` (a `gluon.Trainer` of `deeplab_momentum`, `update_on_kvstore=False`)
    from official `/Momentum` slots, as the official fine-tuning restores them with the weights.

    momenta: {Parameter (or its `param.name`): array in the parameter's Gluon layout}; with the structured names
    of a .params file: `{named[key]: slot for key, slot in ...}`, `named = net._collect_params_with_prefix()`.
    Parameters without an entry start at zero. Every device's copy gets the state. Returns the `param.name`s
    installed.
    """
    if not isinstance(trainer._optimizer, DeepLabMomentum):
        raise TrainingError('momentum slots are the accumulators of deeplab_momentum, not of %s'
                            % type(trainer._optimizer).__name__)
    if not trainer._kv_initialized:
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    if trainer._update_on_kvstore:
        raise TrainingError('momentum slots can only be installed with update_on_kvstore=False')
    installed = []
    for index, param in enumerate(trainer._params):
        value = momenta.get(param, momenta.get(param.name))
        if value is None:
            continue
        value = np.asarray(value, np.float32)
        if value.shape != tuple(param.shape):
            raise TrainingError('the momentum slot of %s has shape %s, the parameter %s'
                                % (param.name, value.shape, tuple(param.shape)))
        for updater, weight in zip(trainer._updaters, param.list_data()):
            state = updater.optimizer.create_state_multi_precision(index, weight)
            accumulator = state[1] if isinstance(state, tuple) else state  # (float32 master, accumulator)
            accumulator[:] = mx.nd.array(value, ctx=weight.context, dtype=accumulator.dtype)
            updater.states[index] = state
            updater.states_synced[index] = True
        installed.append(param.name)
    return installed
