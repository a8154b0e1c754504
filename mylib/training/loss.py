"""The training loss: softmax cross-entropy over the labelled pixels of the whole batch."""
import mxnet as mx

from ..data.specs import IGNORE_LABEL


def pixel_cross_entropy(logits, labels, ignore_label=IGNORE_LABEL):
    """(sum of -log softmax at the label, number of labelled pixels) of one device's part of a batch.

    logits: N x C x H x W NDArray (at the label's size, as the official training upsamples them);
    labels: N x H x W (float or int) with `ignore_label` where a pixel does not count. Dividing every
    device's sum by the batch's total count gives the mean over the whole batch, as one device would.
    """
    labels = labels.astype(logits.dtype)
    labelled = labels != ignore_label
    log_probabilities = mx.nd.log_softmax(logits, axis=1)
    picked = mx.nd.pick(log_probabilities, mx.nd.where(labelled, labels, mx.nd.zeros_like(labels)), axis=1)
    return -(picked * labelled).sum(), labelled.sum()
