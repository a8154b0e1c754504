"""Training DeepLab v3+: the one loop for 1..N devices and several machines, and its parts."""
from .loop import TrainingError, train
from .options import build_parser, given_options

__all__ = ['TrainingError', 'build_parser', 'given_options', 'train']
