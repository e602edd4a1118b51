"""COCO evaluation: result conversion by hand, AP 1 for the ground truth
itself and 0 for detections far away, the empty case, the evaluator
extension with a fake model, alone and inside a trainer, and validation
files that differ from the model: other categories, no info, licenses or
areas."""
import json
import os

import chainer
import numpy
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

from utils.data.coco_dataset import COCODataset, DatasetError
from utils.data.coco_eval import (STAT_NAMES, COCOEvaluator, coco_results,
                                  evaluate_coco)
from utils.data.synthetic_coco import make_synthetic_coco

H, W = 48, 64


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    json_path = make_synthetic_coco(str(root), n_images=8, height=H,
                                    width=W, n_classes=3, seed=0)
    return json_path, COCODataset(json_path, str(root / 'images'))


def _gt_masks(segms):
    """(R, H, W) bool of the dataset's polygons, rasterised by pycocotools
    (as COCOeval rasterises the ground truth)."""
    out = numpy.zeros((len(segms), H, W), bool)
    for i, s in enumerate(segms):
        if isinstance(s, numpy.ndarray):
            out[i] = s
        else:
            rle = mask_util.merge(mask_util.frPyObjects(
                [p.tolist() for p in s], H, W))
            out[i] = mask_util.decode(rle).astype(bool)
    return out


class GroundTruthModel:
    """Answers each image with its ground truth, score 1, and records the
    ``train`` config it was called under. ``extra_label``: also one 4 x 4
    box of that label in the top left corner of every image."""

    def __init__(self, dataset, shift=0., extra_label=None):
        self.answers = {}
        for i in range(len(dataset)):
            img, bbox, label, segms = dataset[i]
            mask = _gt_masks(segms)
            if shift:
                mask[:] = False
            bbox = bbox + shift
            if extra_label is not None:
                bbox = numpy.concatenate([bbox, [[0, 0, 3, 3]]])
                label = numpy.append(label, extra_label)
                corner = numpy.zeros((1, H, W), bool)
                corner[0, :4, :4] = True
                mask = numpy.concatenate([mask, corner])
            self.answers[img.tobytes()] = (bbox, label, mask)
        self.train_flags = []

    def predict(self, imgs):
        self.train_flags.append(chainer.config.train)
        bbox, label, mask = self.answers[imgs[0].tobytes()]
        return ([bbox], [label], [numpy.ones(len(label), numpy.float32)],
                [mask])


def _results(dataset, model):
    out = []
    for image_id, i in zip(dataset.image_ids, range(len(dataset))):
        bboxes, labels, scores, masks = model.predict([dataset[i][0]])
        out += coco_results(image_id, bboxes[0], labels[0], scores[0],
                            masks[0], dataset.class_ids)
    return out


def test_coco_results_hand_case():
    mask = numpy.zeros((1, 30, 20), bool)
    mask[0, 20:24, 10:15] = True
    res = coco_results(5, numpy.array([[10, 20, 14, 23]], numpy.float32),
                       numpy.array([2]), numpy.array([0.5]), mask,
                       (1, 3, 7))
    assert len(res) == 1
    r = res[0]
    assert (r['image_id'], r['category_id'], r['score']) == (5, 3, 0.5)
    assert r['bbox'] == [10, 20, 5, 4]
    # detectron2's boxes have no "+1": the same corners are 4 x 3.
    assert coco_results(5, numpy.array([[10, 20, 14, 23]]), [1], [1.], None,
                        (1,), box_offset=0)[0]['bbox'] == [10, 20, 4, 3]
    assert isinstance(r['segmentation']['counts'], str)
    json.dumps(res)
    rle = dict(r['segmentation'], counts=r['segmentation']['counts']
               .encode('ascii'))
    numpy.testing.assert_array_equal(mask_util.decode(rle), mask[0])
    assert 'segmentation' not in coco_results(
        5, numpy.zeros((1, 4)), [1], [1.], None, (1,))[0]


def test_ground_truth_gives_ap_1(data):
    json_path, ds = data
    results = _results(ds, GroundTruthModel(ds))
    stats, summaries = evaluate_coco(COCO(json_path), results)
    for t in ('bbox', 'segm'):
        assert len(stats[t]) == 12
        assert stats[t][:3] == [1.0, 1.0, 1.0]  # AP, AP50, AP75
        assert 'Average Precision  (AP) @[ IoU=0.50:0.95' in summaries[t]


def test_far_away_gives_ap_0(data):
    json_path, ds = data
    results = _results(ds, GroundTruthModel(ds, shift=1000.))
    stats, _ = evaluate_coco(COCO(json_path), results)
    assert stats['bbox'][0] == stats['segm'][0] == 0.0
    assert stats['bbox'][8] == stats['segm'][8] == 0.0  # AR100


def test_no_results(data):
    json_path, _ = data
    stats, summaries = evaluate_coco(COCO(json_path), [], ('bbox',))
    assert list(stats) == ['bbox'] and 'Average Recall' in summaries['bbox']
    assert stats['bbox'][0] == 0.0
    assert set(stats['bbox']) <= {0.0, -1.0}


def test_evaluator_alone(data, tmp_path, capsys):
    json_path, ds = data
    model = GroundTruthModel(ds)
    ev = COCOEvaluator(ds, model, json_path, str(tmp_path))
    result = ev.evaluate(iteration=7)
    assert model.train_flags == [False] * len(ds)
    assert chainer.config.train  # restored
    assert result['validation/main/bbox/AP'] == 1.0
    assert result['validation/main/segm/AP'] == 1.0
    assert len(result) == 24
    out = capsys.readouterr().out
    assert 'iteration 7' in out and out.count('Average Precision') == 12
    with open(str(tmp_path / 'detections_iter_7.json')) as f:
        dets = json.load(f)
    n_gt = sum(len(ds[i][2]) for i in range(len(ds)))
    assert len(dets) == n_gt
    assert {d['category_id'] for d in dets} <= {1, 3, 7}
    with open(str(tmp_path / 'coco_eval_iter_7.json')) as f:
        saved = json.load(f)
    assert saved['segm']['AP'] == 1.0 and list(saved['bbox']) == \
        list(STAT_NAMES)


def test_evaluator_with_iterator(data, tmp_path):
    json_path, ds = data
    model = GroundTruthModel(ds)
    it = chainer.iterators.SerialIterator(ds, 3, repeat=False,
                                          shuffle=False)
    ev = COCOEvaluator(it, model, json_path, str(tmp_path),
                       iou_types=('bbox',), verbose=False)
    for _ in range(2):  # the iterator is reset each time
        assert ev.evaluate()['validation/main/bbox/AP'] == 1.0
    assert os.path.isfile(str(tmp_path / 'coco_eval.json'))
    with pytest.raises(ValueError, match='repeat=False'):
        COCOEvaluator(chainer.iterators.SerialIterator(ds, 2), model,
                      json_path, str(tmp_path))


class _StepUpdater(chainer.training.Updater):
    """Counts iterations, trains nothing."""

    def __init__(self):
        self.iteration = 0

    epoch = property(lambda self: 0)
    epoch_detail = property(lambda self: self.iteration / 100.)
    previous_epoch_detail = None
    is_new_epoch = False

    def connect_trainer(self, trainer):
        pass

    def finalize(self):
        pass

    def get_optimizer(self, name):
        raise KeyError(name)

    def get_all_optimizers(self):
        return {}

    def update(self):
        self.iteration += 1

    def serialize(self, serializer):
        pass


def test_evaluator_in_trainer(data, tmp_path):
    json_path, ds = data
    trainer = chainer.training.Trainer(_StepUpdater(), (2, 'iteration'),
                                       str(tmp_path))
    ev = COCOEvaluator(ds, GroundTruthModel(ds), json_path, str(tmp_path),
                       verbose=False)
    trainer.extend(ev, trigger=(2, 'iteration'))
    log = chainer.training.extensions.LogReport(trigger=(2, 'iteration'))
    trainer.extend(log)
    trainer.run()
    assert log.log[-1]['validation/main/bbox/AP'] == 1.0
    assert log.log[-1]['validation/main/segm/AP50'] == 1.0
    assert os.path.isfile(str(tmp_path / 'detections_iter_2.json'))
    assert not os.path.isfile(str(tmp_path / 'detections_iter_1.json'))


def _variant(data, tmp_path, edit):
    """A copy of the module's synthetic validation file, changed by
    ``edit(dict)``, beside the same images."""
    json_path, ds = data
    with open(json_path) as f:
        d = json.load(f)
    edit(d)
    path = tmp_path / 'val.json'
    path.write_text(json.dumps(d))
    return str(path), os.path.join(os.path.dirname(json_path), 'images')


def _categories_of(dets, ds, model_ids):
    """Detection count per category id, and per category id the count
    the dataset's instances say (label k is model_ids[k - 1])."""
    got, want = {}, {}
    for d in dets:
        got[d['category_id']] = got.get(d['category_id'], 0) + 1
    for i in range(len(ds)):
        for lb in ds.get_example(i)[2]:
            c = model_ids[lb - 1]
            want[c] = want.get(c, 0) + 1
    return got, want


def test_val_file_with_an_extra_category(data, tmp_path):
    # The model knows ids 1, 3, 7; the file adds 5 (between 3 and 7) and
    # one instance of it, a copy of the first polygon instance. Label 3
    # stays id 7, and category 5, which the model cannot predict, is not
    # scored: the ground truth answers still give AP 1.
    def add_five(d):
        d['categories'].append({'id': 5, 'name': 'five'})
        first = next(a for a in d['annotations'] if not a['iscrowd'])
        d['annotations'].append(dict(first, id=1000, category_id=5))
    path, images = _variant(data, tmp_path, add_five)
    ds = COCODataset(path, images, class_ids=(1, 3, 7))
    assert ds.skipped['unknown_class'] == 1
    ev = COCOEvaluator(ds, GroundTruthModel(ds), path, str(tmp_path),
                       class_ids=(1, 3, 7), verbose=False)
    result = ev.evaluate()
    assert result['validation/main/bbox/AP'] == 1.0
    assert result['validation/main/segm/AP'] == 1.0
    with open(str(tmp_path / 'detections.json')) as f:
        got, want = _categories_of(json.load(f), ds, (1, 3, 7))
    assert got == want and 5 not in got and got.get(7, 0) >= 1


def test_val_file_without_a_category(data, tmp_path, capsys):
    # The file lacks category 3 and its instances. The model's label 2 (id
    # 3) is still written as id 3, and not scored: AP stays 1.
    def drop_three(d):
        d['categories'] = [c for c in d['categories'] if c['id'] != 3]
        d['annotations'] = [a for a in d['annotations']
                            if a['category_id'] != 3]
    path, images = _variant(data, tmp_path, drop_three)
    ds = COCODataset(path, images, class_ids=(1, 3, 7))
    assert ds.class_names == ('red', '3', 'blue')
    model = GroundTruthModel(ds, extra_label=2)
    ev = COCOEvaluator(ds, model, path, str(tmp_path), class_ids=(1, 3, 7))
    assert "the model's categories [3] are not in" in capsys.readouterr().out
    result = ev.evaluate()
    assert result['validation/main/bbox/AP'] == 1.0
    assert result['validation/main/segm/AP'] == 1.0
    with open(str(tmp_path / 'detections.json')) as f:
        got, want = _categories_of(json.load(f), ds, (1, 3, 7))
    assert 3 not in want and got == {**want, 3: len(ds)}  # one per image
    with pytest.raises(DatasetError, match=r"none of the model's category "
                                           r"ids \[3\]"):
        COCOEvaluator(ds, model, path, str(tmp_path), class_ids=(3,))


def test_val_file_without_info_and_licenses(data, tmp_path):
    # pycocotools' loadRes copies the ground truth's 'info'.
    def strip(d):
        del d['info'], d['licenses']
    path, images = _variant(data, tmp_path, strip)
    ds = COCODataset(path, images)
    results = _results(ds, GroundTruthModel(ds))
    stats, _ = evaluate_coco(COCO(path), results, ('bbox',))
    assert stats['bbox'][0] == 1.0
    ev = COCOEvaluator(ds, GroundTruthModel(ds), path, str(tmp_path),
                       verbose=False)
    assert ev.evaluate()['validation/main/segm/AP'] == 1.0


def test_val_file_without_areas(data, tmp_path):
    # COCOeval reads each ground truth area (for APs, APm, APl).
    def strip(d):
        for a in d['annotations']:
            del a['area']
    path, images = _variant(data, tmp_path, strip)
    ds = COCODataset(path, images)
    ev = COCOEvaluator(ds, GroundTruthModel(ds), path, str(tmp_path),
                       verbose=False)
    result = ev.evaluate()
    assert result['validation/main/bbox/AP'] == 1.0
    assert result['validation/main/segm/AP'] == 1.0
    # The filled areas are the pixel counts the generator stored.
    with open(data[0]) as f:
        stored = {a['id']: a['area'] for a in json.load(f)['annotations']}
    assert {i: a['area'] for i, a in ev.coco_gt.anns.items()} == stored
