"""Training DeepLab v3+: the one loop for 1..N devices and several machines, and its parts."""
from ..errors import TrainingError
from .loop import train
from .optimizer import DeepLabMomentum  # registers 'deeplab_momentum' with MXNet's optimizers
from .options import build_parser, given_options

__all__ = ['DeepLabMomentum', 'TrainingError', 'build_parser', 'given_options', 'train']
