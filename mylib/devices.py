"""Device lists for the scripts' --gpus option."""
import mxnet as mx

from .errors import OptionError


def parse_devices(text=None):
    """Contexts for '0,1,2' (GPUs), 'cpu' (one CPU context) or 'cpu:N' (N CPU contexts, for testing the
    multi-device code paths without GPUs). None: every GPU there is, else the CPU.

    Raises OptionError naming the option value for GPUs that are not there or malformed text.
    """
    gpus = mx.context.num_gpus()
    if text is None or text == '':
        return [mx.gpu(index) for index in range(gpus)] or [mx.cpu()]
    text = text.strip().lower()
    if text == 'cpu' or text.startswith('cpu:'):
        count = text.partition(':')[2] or '1'
        if not count.isdigit() or int(count) < 1:
            raise OptionError('--gpus %s: write cpu or cpu:N with N >= 1' % text)
        return [mx.cpu(index) for index in range(int(count))]
    try:
        indices = [int(part) for part in text.split(',')]
    except ValueError:
        raise OptionError('--gpus %s: write GPU numbers such as 0,1,2,3, or cpu' % text) from None
    missing = [index for index in indices if not 0 <= index < gpus]
    if missing:
        raise OptionError('--gpus %s: no GPU %s on this machine (it has %d; use --gpus cpu)'
                         % (text, ','.join(map(str, missing)), gpus))
    if len(set(indices)) != len(indices):
        raise OptionError('--gpus %s: a GPU is listed twice' % text)
    return [mx.gpu(index) for index in indices]
