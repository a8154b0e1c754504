"""The metrics against hand-computed values."""
import numpy as np
import pytest

from mylib.metrics import ConfusionMatrix

pytestmark = pytest.mark.fast


def test_hand_computed_confusion_matrix_miou_and_accuracy():
    labels = np.array([[0, 0, 1, 1],
                       [2, 2, 255, 1]])
    predictions = np.array([[0, 1, 1, 1],
                            [2, 0, 2, 2]])
    matrix = ConfusionMatrix(3)
    matrix.update(labels, predictions)
    # rows: labels, columns: predictions; the 255 pixel is not counted
    assert matrix.counts.tolist() == [[1, 1, 0],
                                      [0, 2, 1],
                                      [1, 0, 1]]
    # IoU = TP / (TP + FP + FN): class 0: 1 / (1 + 1 + 1); class 1: 2 / (2 + 1 + 1); class 2: 1 / (1 + 1 + 1)
    assert np.allclose(matrix.iou(), [1 / 3, 2 / 4, 1 / 3])
    assert matrix.mean_iou() == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert matrix.pixel_accuracy() == pytest.approx(4 / 7)


def test_one_matrix_over_the_split_not_a_mean_of_per_image_scores():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0]))  # alone: IoU 0.75 and 0 -> mIoU 0.375
    matrix.update(np.array([1, 1]), np.array([1, 1]))              # alone: class 1 only, IoU 1 -> mIoU 1
    # together: class 0: 3 / (3 + 1) = 0.75; class 1: 2 / (2 + 1) = 2/3
    assert matrix.mean_iou() == pytest.approx((0.75 + 2 / 3) / 2)
    assert matrix.mean_iou() != pytest.approx((0.375 + 1) / 2)


def test_absent_class_is_left_out_but_a_false_positive_class_counts():
    matrix = ConfusionMatrix(4)
    matrix.update(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 3]))
    iou = matrix.iou()
    assert np.isnan(iou[2])  # neither labelled nor predicted: not in the mean
    assert iou[3] == 0       # predicted but never labelled: IoU 0, in the mean (tf.metrics.mean_iou)
    assert matrix.mean_iou() == pytest.approx((1 + 0.5 + 0) / 3)


def test_ignored_padding_does_not_count():
    image_labels = np.array([[1, 0], [0, 1]])
    padded = np.full((4, 4), 255)
    padded[:2, :2] = image_labels
    anything = np.zeros((4, 4), int)
    anything[:2, :2] = image_labels
    matrix = ConfusionMatrix(2)
    matrix.update(padded, anything)
    assert matrix.counts.sum() == 4 and matrix.mean_iou() == 1.0


def test_merge_adds_counts():
    first, second = ConfusionMatrix(2), ConfusionMatrix(2)
    first.update(np.array([0, 1]), np.array([0, 0]))
    second.update(np.array([1]), np.array([1]))
    first.merge(second)
    assert first.counts.tolist() == [[1, 0], [1, 1]]


def test_labels_outside_the_classes_are_refused():
    with pytest.raises(ValueError, match=r'label values \[7\]'):
        ConfusionMatrix(3).update(np.array([0, 7]), np.array([0, 1]))
