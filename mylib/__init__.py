"""deeplab-gluon: DeepLab v3+ (Xception-65) in MXNet Gluon, exact to the official TF releases."""
from .errors import DeepLabError
from .inference import predict
from .models import DeepLabV3Plus, Xception65
from .weights import load_deeplab

__all__ = ['DeepLabError', 'DeepLabV3Plus', 'Xception65', 'load_deeplab', 'predict']
