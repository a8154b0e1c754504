"""deeplab-gluon: the official DeepLab model zoo in MXNet Gluon, exact to the official TF releases.

The networks and what needs MXNet are imported when first asked for (PEP 562 `__getattr__`), so that
the scripts' option parsing, `--help` and errors (`mylib.cli`, `mylib.errors`, the dataset facts) come
at once and a Ctrl-C while they start is still theirs to report.
"""
from .errors import DeepLabError

__all__ = ['DeepLab', 'DeepLabError', 'DeepLabV3Plus', 'ModelSpec', 'Xception65', 'load_deeplab', 'load_model',
           'predict']


def __getattr__(name):
    if name in ('DeepLab', 'DeepLabV3Plus', 'ModelSpec', 'Xception65'):
        from . import models
        return getattr(models, name)
    if name in ('load_deeplab', 'load_model'):
        from . import weights
        return getattr(weights, name)
    if name == 'predict':
        from .inference import predict
        return predict
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
