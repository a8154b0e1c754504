"""Learning-rate schedule of the official DeepLab training."""


def poly_learning_rate(base_lr, iteration, iterations, power=0.9):
    """The official 'poly' policy (tf.train.polynomial_decay to 0): base_lr * (1 - iteration / iterations)^power.

    `iteration` counts completed steps from 0, as TF's global_step.
    """
    return base_lr * (1.0 - min(iteration, iterations) / float(iterations)) ** power
