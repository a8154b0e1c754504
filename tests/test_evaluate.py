"""evaluate.py as a user runs it: the official protocol end to end, hand-computed metrics, devices, errors."""
import json

import mxnet as mx
import numpy as np
import pytest
from helpers import PHOTOS, initialized, official_outputs, one_line_error, run_script, write_segmentation_folder

from mylib import DeepLabV3Plus

SCRIPT = 'evaluate.py'


def test_converted_model_reproduces_the_official_predictions(converted_reference, tmp_path):
    """The four reference photos with the official graph's labels as ground truth: the whole path (dataset,
    padding with the mean pixel, network, cropping, confusion matrix) must agree with the official one."""
    items = {}
    for photo in PHOTOS:
        official = official_outputs(photo)
        image = official['input_uint8']
        items[photo] = (image, official['labels'][0, :image.shape[0], :image.shape[1]])
    root = write_segmentation_folder(tmp_path / 'photos', items, 'val')
    output = tmp_path / 'results.json'
    result = run_script(SCRIPT, '--weights', converted_reference[0], '--dataset', 'folder', '--data-root', root,
                        '--num-classes', '21', '--output', output, '--quiet')
    report = json.loads(output.read_text())
    assert report['images'] == 4 and report['settings']['crop_size'] == [513, 513]
    assert report['pixel_accuracy'] >= 0.999
    assert report['miou'] >= 0.98
    assert 'mean IoU' in result.stdout and 'person' in result.stdout


def constant_predictor(path, label):
    """Weights of a 21-class model that predicts `label` everywhere (zero logits weights, one-hot bias)."""
    net = DeepLabV3Plus(num_classes=21)
    net.initialize()
    net.logits.weight.set_data(mx.nd.zeros(net.logits.weight.shape))
    net.logits.bias.set_data(mx.nd.one_hot(mx.nd.array([label]), 21)[0] * 10)
    net.save_parameters(str(path))
    return path


@pytest.fixture(scope='module')
def small_voc(tmp_path_factory):
    """A VOC 2012 layout with two val images smaller than the crop, labels with 255, on disk as JPEG."""
    root = tmp_path_factory.mktemp('voc')
    rng = np.random.default_rng(0)
    first = np.zeros((20, 30), np.uint8)       # 600 pixels: 300 of class 0, 200 of class 2, 100 ignored
    first[10:, :20] = 2
    first[10:, 20:] = 255
    second = np.full((10, 10), 2, np.uint8)    # 100 pixels: 50 of class 1, 50 of class 2
    second[:5] = 1
    items = {'2007_000001': (rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), first),
             '2007_000002': (rng.integers(0, 256, (10, 10, 3), dtype=np.uint8), second)}
    write_segmentation_folder(root / 'VOC2012', items, 'val', image_format='jpg')
    return root


def test_hand_computed_miou_and_accuracy(small_voc, tmp_path):
    weights = constant_predictor(tmp_path / 'two.params', label=2)
    output = tmp_path / 'results.json'
    run_script(SCRIPT, '--weights', weights, '--data-root', small_voc, '--crop-size', '65x65', '--output', output,
               '--quiet')
    report = json.loads(output.read_text())
    # every labelled pixel is predicted 2: 600 counted (100 ignored, padding not counted)
    # IoU: class 0: 0 / 300; class 1: 0 / 50; class 2: 250 / (250 + 350); 18 absent classes left out
    assert report['iou']['background'] == 0 and report['iou']['aeroplane'] == 0
    assert report['iou']['bicycle'] == pytest.approx(250 / 600)
    assert report['iou']['bird'] is None  # neither labelled nor predicted
    assert 'NaN' not in output.read_text()  # standard JSON
    assert report['miou'] == pytest.approx((0 + 0 + 250 / 600) / 3)
    assert report['pixel_accuracy'] == pytest.approx(250 / 600)
    assert sum(map(sum, report['confusion_matrix'])) == 600
    assert report['settings']['dataset'] == 'voc' and report['settings']['split'] == 'val'


def test_several_devices_give_the_same_confusion_matrix(small_voc, tmp_path):
    weights = tmp_path / 'random.params'
    initialized(DeepLabV3Plus(num_classes=21), seed=5).save_parameters(str(weights))
    reports = []
    for devices in ('cpu', 'cpu:2'):  # the default batch: one image per device
        output = tmp_path / ('%s.json' % devices.replace(':', ''))
        run_script(SCRIPT, '--weights', weights, '--data-root', small_voc, '--crop-size', '65x65', '--gpus', devices,
                   '--output', output, '--quiet')
        reports.append(json.loads(output.read_text()))
    assert reports[1]['settings']['devices'] == ['cpu(0)', 'cpu(1)'] and reports[1]['settings']['batch_size'] == 2
    assert reports[0]['confusion_matrix'] == reports[1]['confusion_matrix']


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path):
    weights = constant_predictor(tmp_path / 'w.params', label=0)
    result = run_script(SCRIPT, '--weights', weights, '--data-root', tmp_path / 'nowhere', check=False)
    one_line_error(result, SCRIPT, str(tmp_path / 'nowhere'), 'pascal_voc.py')


def test_weights_of_another_class_count(small_voc, tmp_path):
    weights = tmp_path / 'five.params'
    net = DeepLabV3Plus(num_classes=5)
    net.initialize()
    net.save_parameters(str(weights))
    result = run_script(SCRIPT, '--weights', weights, '--data-root', small_voc, check=False)
    one_line_error(result, SCRIPT, '21 classes', 'predicts 5')


def test_missing_weights_file(tmp_path):
    result = run_script(SCRIPT, '--weights', tmp_path / 'none.params', check=False)
    one_line_error(result, SCRIPT, 'none.params: no such weights file')


def test_help_shows_the_official_numbers():
    result = run_script(SCRIPT, '--help')
    assert '82.20' in result.stdout and '83.58' in result.stdout and '--scales' in result.stdout
