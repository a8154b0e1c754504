"""Argument types shared by the scripts (evaluate.py, predict.py, export.py, train.py)."""
import argparse


def scales_type(text):
    """'0.5,0.75,1.0' -> (0.5, 0.75, 1.0); positive numbers only."""
    try:
        scales = tuple(float(part) for part in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError('write scales as 0.5,0.75,1.0, not %r' % text) from None
    if min(scales) <= 0:
        raise argparse.ArgumentTypeError('scales must be positive, not %r' % text)
    return scales


def size_type(text):
    """'513x513' -> (513, 513): height x width in pixels, positive integers."""
    parts = text.lower().split('x')
    if len(parts) != 2 or not all(part.isdigit() and int(part) > 0 for part in parts):
        raise argparse.ArgumentTypeError('write a size as HxW, e.g. 513x513, not %r' % text)
    return int(parts[0]), int(parts[1])
