"""The same measurements on torchvision, the side-by-side reference.

    python bench/torchvision_ref.py inference [--size 800 1216] [--json OUT]
    python bench/torchvision_ref.py roi_align --cases CASES.npz [--json OUT]
    python bench/torchvision_ref.py train [--batch 2 8] [--freeze-at K]
                                          [--json OUT]

Runs in any Python with torch and torchvision (the GPU machines have them
preinstalled); it imports neither chainer nor this project, and torch is
never a dependency of the project. ``bench/compare.py`` puts its JSON next
to ours and prints the ratios.

* inference: ``maskrcnn_resnet50_fpn`` with random weights and the class
  logits biased to class 1, so that 100 detections and their masks are
  computed, as ``bench/inference.py`` does for our models. Stages are timed
  as ``GeneralizedRCNN.forward`` runs them: transform, backbone (+FPN),
  RPN, box head (+ postprocess), mask head, paste.
* roi_align: ``torchvision.ops.roi_align(aligned=False)`` forward and
  backward on the very inputs ``bench/roi_align.py --save-cases`` wrote.
* train: images/s and peak device memory of the training step of
  ``maskrcnn_resnet50_fpn`` (SGD, 800 x 1216 images, synthetic boxes and
  masks) at each batch size. From scratch (``--freeze-at 0``) as
  ``maskrcnn_resnet50_fpn(weights=None)`` builds it: BatchNorm, every layer
  trained. ``--freeze-at K`` builds it as torchvision does for ImageNet
  weights: FrozenBatchNorm2d and ``trainable_backbone_layers = 5 - K``
  (K = 2, torchvision's default of 3, is Detectron's FREEZE_AT 2).
"""
import argparse
import json
import resource
import time

import torch
import torchvision
from torchvision.models import resnet50
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.models.detection.roi_heads import maskrcnn_inference

STAGES = ('prepare', 'backbone', 'rpn', 'box head', 'mask head', 'paste')


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def _model(device):
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    cls = model.roi_heads.box_predictor.cls_score
    with torch.no_grad():
        cls.weight.normal_(0, 1e-6)
        cls.bias.zero_()
        cls.bias[1] = 5.
    return model.to(device).eval()


@torch.no_grad()
def stage_times(model, img, device):
    t = [time.perf_counter()]
    images, _ = model.transform([img.to(device)])
    _sync(device)
    t.append(time.perf_counter())
    features = model.backbone(images.tensors)
    _sync(device)
    t.append(time.perf_counter())
    proposals, _ = model.rpn(images, features)
    _sync(device)
    t.append(time.perf_counter())
    rh = model.roi_heads
    x = rh.box_head(rh.box_roi_pool(features, proposals, images.image_sizes))
    logits, deltas = rh.box_predictor(x)
    boxes, scores, labels = rh.postprocess_detections(
        logits, deltas, proposals, images.image_sizes)
    _sync(device)
    t.append(time.perf_counter())
    x = rh.mask_head(rh.mask_roi_pool(features, boxes, images.image_sizes))
    masks = maskrcnn_inference(rh.mask_predictor(x), labels)
    _sync(device)
    t.append(time.perf_counter())
    result = [{'boxes': boxes[0], 'labels': labels[0], 'scores': scores[0],
               'masks': masks[0]}]
    model.transform.postprocess(result, images.image_sizes,
                                [tuple(img.shape[1:])])
    _sync(device)
    t.append(time.perf_counter())
    row = {s: t[i + 1] - t[i] for i, s in enumerate(STAGES)}
    row['total'] = t[-1] - t[0]
    row['detections'] = int(len(boxes[0]))
    return row


def inference(args, device):
    model = _model(device)
    g = torch.Generator().manual_seed(0)
    img = torch.rand((3,) + tuple(args.size), generator=g)  # 0..1 RGB
    runs = [stage_times(model, img, device)
            for _ in range(args.repeat + 1)][1:]
    row = {k: sorted(r[k] for r in runs)[len(runs) // 2] for k in runs[0]}
    row.update(arch='torchvision-fpn', backend=device.type,
               peak_mb=_peak_mb(device))
    print(('{:<16s}' + ' {:>9.1f}' * 7 + ' {:>5d}').format(
        row['arch'], *[row[s] * 1e3 for s in STAGES + ('total',)],
        row['detections']))
    return [row]


def roi_align(args, device):
    import numpy
    from torchvision.ops import roi_align as tv_roi_align
    if not args.cases:
        raise SystemExit('roi_align needs --cases NPZ from bench/roi_align.py '
                         '--save-cases NPZ')
    data = numpy.load(args.cases)
    rows = []
    for i, name in enumerate(data['names']):
        calls, j = [], 0
        while 'c{}_{}_x'.format(i, j) in data.files:
            x = torch.from_numpy(data['c{}_{}_x'.format(i, j)]).to(device)
            rois = torch.from_numpy(data['c{}_{}_rois'.format(i, j)])
            rois = torch.cat([torch.zeros(len(rois), 1), rois], 1).to(device)
            outsize, scale, ratio = data['c{}_{}_meta'.format(i, j)]
            calls.append((x.requires_grad_(True), rois, int(outsize),
                          float(scale), int(ratio)))
            j += 1
        fwd, bwd = [], []
        for run in range(args.repeat + 1):
            tf = tb = 0.
            for x, rois, outsize, scale, ratio in calls:
                x.grad = None
                _sync(device)
                t0 = time.perf_counter()
                y = tv_roi_align(x, rois, outsize, scale, ratio,
                                 aligned=False)
                _sync(device)
                t1 = time.perf_counter()
                y.backward(torch.ones_like(y))
                _sync(device)
                tf, tb = tf + t1 - t0, tb + time.perf_counter() - t1
            if run:
                fwd.append(tf)
                bwd.append(tb)
        fwd, bwd = sorted(fwd)[len(fwd) // 2], sorted(bwd)[len(bwd) // 2]
        rows.append({'case': str(name), 'backend': 'torchvision-' +
                     device.type, 'forward_ms': fwd * 1e3,
                     'backward_ms': bwd * 1e3})
        print('{:<42} forward {:8.1f} ms  backward {:8.1f} ms'.format(
            name, fwd * 1e3, bwd * 1e3))
    return rows


def _train_model(freeze_at):
    """``maskrcnn_resnet50_fpn`` from scratch, or (``freeze_at`` > 0) with
    the frozen layers torchvision gives it for ImageNet weights."""
    if not freeze_at:
        return maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
    backbone = resnet50(weights=None, norm_layer=FrozenBatchNorm2d)
    return MaskRCNN(_resnet_fpn_extractor(backbone, 5 - freeze_at), 91)


def train(args, device):
    rows = []
    for batch in args.batch:
        torch.manual_seed(0)
        model = _train_model(args.freeze_at).to(device)
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9)
        h, w = args.size
        images = [torch.rand(3, h, w, device=device) for _ in range(batch)]
        targets = []
        for _ in range(batch):
            boxes = torch.tensor([[100., 120., 400., 500.],
                                  [600., 200., 900., 700.]], device=device)
            masks = torch.zeros(2, h, w, dtype=torch.uint8, device=device)
            masks[0, 120:500, 100:400] = 1
            masks[1, 200:700, 600:900] = 1
            targets.append({'boxes': boxes, 'masks': masks,
                            'labels': torch.tensor([1, 2], device=device)})
        if device.type == 'cuda':
            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(args.repeat + 1):
            _sync(device)
            t0 = time.perf_counter()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
        sec = sorted(times)[len(times) // 2]
        rows.append({'arch': 'torchvision-fpn', 'backend': device.type,
                     'batch': batch, 'freeze_at': args.freeze_at,
                     'images_per_s': batch / sec,
                     'peak_mb': _peak_mb(device)})
        print('batch {:3d}: {:7.2f} images/s, peak {:8.0f} MB'.format(
            batch, batch / sec, rows[-1]['peak_mb']))
    return rows


def _peak_mb(device):
    if device.type == 'cuda':
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.


def main():
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('what', choices=('inference', 'roi_align', 'train'))
    p.add_argument('--size', type=int, nargs=2, default=(800, 1216))
    p.add_argument('--batch', type=int, nargs='+', default=(2, 8))
    p.add_argument('--repeat', type=int, default=2)
    p.add_argument('--freeze-at', type=int, default=0, choices=range(6),
                   help='train: frozen stem and res2..resK (Detectron)')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--threads', type=int, default=None,
                   help='torch CPU threads (default: torch\'s choice)')
    p.add_argument('--cases', default=None,
                   help='roi_align inputs from bench/roi_align.py '
                        '--save-cases')
    p.add_argument('--json', default=None)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print('torch {} torchvision {} on {} ({} threads)'.format(
        torch.__version__, torchvision.__version__, device,
        torch.get_num_threads()))
    rows = {'inference': inference, 'roi_align': roi_align,
            'train': train}[args.what](args, device)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)


if __name__ == '__main__':
    main()
