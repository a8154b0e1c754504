"""Segmentation metrics as the official DeepLab evaluation computes them.

One confusion matrix is accumulated over the whole split (not an average of per-image or per-batch
scores), pixels labelled `ignore_label` are left out, and the mean IoU is TF's `tf.metrics.mean_iou`:
the mean of TP / (TP + FP + FN) over the classes whose denominator is not zero.
"""
import numpy as np

from .data.specs import IGNORE_LABEL


def number_or_none(value):
    """`value`, or None for NaN (JSON has no NaN): an mIoU over no labelled pixel, a class never seen."""
    return None if value != value else value


class ConfusionMatrix:
    """num_classes x num_classes pixel counts; rows are labels, columns predictions."""

    def __init__(self, num_classes, ignore_label=IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_label = ignore_label
        self.counts = np.zeros((num_classes, num_classes), np.int64)

    def update(self, labels, predictions):
        """Add one or more label maps and their predictions (integer arrays of the same shape)."""
        labels = np.asarray(labels).ravel()
        predictions = np.asarray(predictions).ravel()
        if labels.shape != predictions.shape:
            raise ValueError('labels have %d pixels, predictions %d' % (labels.size, predictions.size))
        valid = labels != self.ignore_label
        labels, predictions = labels[valid].astype(np.int64), predictions[valid].astype(np.int64)
        if labels.size and (labels.min() < 0 or labels.max() >= self.num_classes):
            bad = np.unique(labels[(labels < 0) | (labels >= self.num_classes)])
            raise ValueError('label values %s are neither classes 0-%d nor the ignore label %d'
                             % (bad.tolist()[:10], self.num_classes - 1, self.ignore_label))
        if predictions.size and (predictions.min() < 0 or predictions.max() >= self.num_classes):
            raise ValueError('predictions outside classes 0-%d' % (self.num_classes - 1))
        self.counts += np.bincount(labels * self.num_classes + predictions,
                                   minlength=self.num_classes ** 2).reshape(self.num_classes, self.num_classes)

    def merge(self, other):
        """Add the counts of another ConfusionMatrix of the same classes."""
        self.counts += other.counts

    def iou(self):
        """Per-class IoU; NaN for a class that is neither in the labels nor in the predictions."""
        true_positive = np.diag(self.counts).astype(np.float64)
        union = self.counts.sum(0) + self.counts.sum(1) - true_positive
        with np.errstate(divide='ignore', invalid='ignore'):
            return np.where(union > 0, true_positive / np.maximum(union, 1), np.nan)

    def mean_iou(self):
        """Mean IoU over the classes with a non-zero denominator (as tf.metrics.mean_iou)."""
        iou = self.iou()
        present = ~np.isnan(iou)
        return float(iou[present].mean()) if present.any() else float('nan')

    def pixel_accuracy(self):
        """Correct pixels / all counted pixels."""
        total = self.counts.sum()
        return float(np.trace(self.counts) / total) if total else float('nan')
