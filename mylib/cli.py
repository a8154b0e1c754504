"""What every script shares: its parser class, the argument types, and the one error wrapper.

    parser = cli.ArgumentParser(prog='evaluate.py', description=...)

    @cli.command('evaluate.py')
    def main(argv=None): ...

Every error a user can cause ends as one line on stderr, `prog: error: message`: option errors with
exit status 2 (as argparse's own), everything else (`DeepLabError`, and `OSError` such as a full disk,
a permission or a failed download) with 1. A stop request (Ctrl-C) ends with status 130 (a training run
first saves a checkpoint and says how to resume: `StopRequested`). Nothing of
that kind shows a traceback; a traceback means a bug in this project.
"""
import argparse
import functools
import math
import sys

from .errors import DeepLabError, OptionError, StopRequested, describe_os_error, one_line

OPTION_ERROR_STATUS = 2  # argparse's
ERROR_STATUS = 1
INTERRUPTED_STATUS = 130  # 128 + SIGINT, as shells report it


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with one-line errors: `prog: error: message (see --help)`, exit status 2."""

    def __init__(self, **kwargs):
        kwargs.setdefault('formatter_class', argparse.RawDescriptionHelpFormatter)
        super().__init__(**kwargs)

    def error(self, message):
        self.exit(OPTION_ERROR_STATUS, '%s: error: %s (see --help)\n' % (self.prog, one_line(message)))


def report(prog, message):
    """Print `prog: error: message` on stderr, on one line."""
    print('%s: error: %s' % (prog, one_line(message)), file=sys.stderr)


def command(prog):
    """Decorate a script's `main(argv=None)`: user-caused errors become one line and an exit status.

    The decorated main returns the exit status (0 on success, or the status main returned).
    """
    def wrap(main):
        @functools.wraps(main)
        def wrapped(argv=None):
            try:
                return main(argv) or 0
            except OptionError as error:
                report(prog, '%s (see --help)' % error)
                return OPTION_ERROR_STATUS
            except StopRequested as stop:  # not an error: the user asked
                print('%s: %s' % (prog, one_line(stop)), file=sys.stderr)
                return stop.status
            except DeepLabError as error:
                report(prog, error)
                return ERROR_STATUS
            except OSError as error:  # a full disk, a permission, a network failure, a missing folder
                report(prog, describe_os_error(error))
                return ERROR_STATUS
            except KeyboardInterrupt:
                print('%s: interrupted' % prog, file=sys.stderr)
                return INTERRUPTED_STATUS
        return wrapped
    return wrap


# --- argument types: each checks its range where the option is parsed --------------------------------
def _number(text, kind):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError('%r is not %s' % (text, 'an integer' if kind is int else 'a number')) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError('%r is not a finite number' % text)
    return value


def number_type(kind, accept, wanted, name):
    """An argparse type: a finite `kind` (int or float) for which `accept(value)` holds, else 'give <wanted>'."""
    def parse(text):
        value = _number(text, kind)
        if not accept(value):
            raise argparse.ArgumentTypeError('%s: give %s' % (text, wanted))
        return value
    parse.__name__ = name
    parse.__doc__ = 'A %s: %s.' % ('integer' if kind is int else 'finite number', wanted)
    return parse


positive_int = number_type(int, lambda value: value >= 1, 'at least 1', 'positive_int')  # counts, intervals
nonnegative_int = number_type(int, lambda value: value >= 0, '0 or more', 'nonnegative_int')  # workers, seeds
positive_float = number_type(float, lambda value: value > 0, 'a number above 0', 'positive_float')  # rates
nonnegative_float = number_type(float, lambda value: value >= 0, '0 or more', 'nonnegative_float')  # decay
fraction = number_type(float, lambda value: 0 <= value < 1, 'a number from 0 up to (not including) 1',
                       'fraction')  # momentum, batch-norm decay
probability = number_type(float, lambda value: 0 < value <= 1, 'a probability, above 0 and at most 1',
                          'probability')  # keep probabilities


def scales_type(text):
    """'0.5,0.75,1.0' -> (0.5, 0.75, 1.0); finite positive numbers only."""
    try:
        scales = tuple(float(part) for part in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError('write scales as 0.5,0.75,1.0, not %r' % text) from None
    if not all(math.isfinite(scale) and scale > 0 for scale in scales):
        raise argparse.ArgumentTypeError('scales must be finite positive numbers, not %r' % text)
    return scales


MIN_SIDE = 16  # the smallest crop side worth running: one pixel at output stride 16


def size_type(text):
    """'513x513' -> (513, 513): height x width in pixels, integers of at least MIN_SIDE."""
    parts = text.lower().split('x')
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError('write a size as HxW, e.g. 513x513, not %r' % text)
    height, width = int(parts[0]), int(parts[1])
    if min(height, width) < MIN_SIDE:
        raise argparse.ArgumentTypeError('%s: each side must be at least %d pixels' % (text, MIN_SIDE))
    return height, width
