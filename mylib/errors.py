"""The project's one error family: everything a user can cause is a `DeepLabError`.

Each message is one sentence that names the file, tensor, option or dataset at fault and, where it
helps, what to do. The scripts print it as one line, `prog: error: message`, with exit status 1
(`mylib.cli.command`); option errors exit with 2, as argparse's own.
"""


class DeepLabError(Exception):
    """The base of every error a user can cause (bad input, missing file, refused option, ...)."""


class OptionError(DeepLabError):
    """A command-line option whose value cannot be used (exit status 2, as argparse's errors)."""


class WeightsError(DeepLabError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


class ConversionError(DeepLabError):
    """A checkpoint or file the converter cannot use; the message names the file or tensor at fault."""


class ZooError(DeepLabError):
    """An unknown release, a failed download (URL and reason) or a file that fails verification."""


class DatasetError(DeepLabError):
    """A dataset that is missing, incomplete, or holds a bad file: the message says which and how to fix it."""


class ImageError(DeepLabError):
    """An image file that cannot be read, or an image that cannot be segmented; the message names it."""


class ExportError(DeepLabError):
    """An export that cannot be written or that does not reproduce the Gluon model."""


class TrainingError(DeepLabError):
    """A run that cannot start or go on; the message says why and what to do."""


def one_line(error):
    """The message of an exception on one line (whitespace runs folded), or its type's name if empty."""
    return ' '.join(str(error).split()) or type(error).__name__


def describe_os_error(error):
    """'PATH: reason' for an OSError (a full disk, a permission, a missing folder, a network failure)."""
    reason = error.strerror or one_line(error)
    names = [name for name in (error.filename, error.filename2) if name is not None]
    if names:
        return '%s: %s' % (' -> '.join(map(str, names)), reason)
    return reason
