"""The project's one error family: everything a user can cause is a `DeepLabError`.

Each message is one sentence that names the file, tensor, option or dataset at fault and, where it
helps, what to do. The scripts print it as one line, `prog: error: message`, with exit status 1
(`mylib.cli.command`); option errors exit with 2, as argparse's own. Some also keep the built-in base
they had before this family existed (ValueError, RuntimeError), for code that catches those.
"""


class DeepLabError(Exception):
    """The base of every error a user can cause (bad input, missing file, refused option, ...)."""


class OptionError(DeepLabError):
    """A command-line option whose value cannot be used (exit status 2, as argparse's errors)."""


class WeightsError(DeepLabError, ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


class ConversionError(DeepLabError):
    """A checkpoint or file the converter cannot use; the message names the file or tensor at fault."""


class ZooError(DeepLabError, RuntimeError):
    """An unknown release, a failed download (URL and reason) or a file that fails verification."""


class DatasetError(DeepLabError):
    """A dataset that is missing, incomplete, or holds a bad file: the message says which and how to fix it."""


class ImageError(DeepLabError, ValueError):
    """An image file that cannot be read, or an image that cannot be segmented; the message names it."""


class ExportError(DeepLabError, ValueError):
    """An export that cannot be written or that does not reproduce the Gluon model."""


class TrainingError(DeepLabError):
    """A run that cannot start or go on; the message says why and what to do."""


class StopRequested(Exception):  # noqa: N818 (not an error: the user asked for it)
    """A run stopped as asked (Ctrl-C, SIGTERM); the message says where and how to resume.

    status: the exit status a shell expects of a process ended by that signal (128 + its number).
    """

    def __init__(self, message, status):
        super().__init__(message)
        self.status = status


def one_line(error):
    """The message of an exception on one line (whitespace runs folded), or its type's name if empty."""
    return ' '.join(str(error).split()) or type(error).__name__


def library_reason(error, limit=200):
    """The reason of a library's exception on one line, without the C++ stack that MXNet's messages carry
    ('Traceback ... File "src/...", line N  MXNetError: Check failed: ...' -> 'Check failed: ...')."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    reason = lines[-1] if lines else type(error).__name__
    for prefix in ('MXNetError:', 'Error:'):
        if reason.startswith(prefix):
            reason = reason[len(prefix):].strip()
    return reason[:limit]


def describe_os_error(error):
    """'PATH: reason' for an OSError (a full disk, a permission, a missing folder, a network failure)."""
    reason = error.strerror or one_line(error)
    names = [name for name in (error.filename, error.filename2) if name is not None]
    if names:
        return '%s: %s' % (' -> '.join(map(str, names)), reason)
    return reason
