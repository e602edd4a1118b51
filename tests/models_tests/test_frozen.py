"""Frozen stages (``--freeze-at``) cost no backward work: no gradient of
their weights, no input gradient of the first trained layer (Detectron's
StopGradient), counted in im2col / col2im calls; the trained weights get
the gradients of a run without the cut, in float64."""
import chainer
import chainer.functions as F
import numpy
import pytest

import functions.conv_columns as cc
from models.resnet import ResNetBody
from tests.helpers import tiny_training as tiny
from utils.training.build import build_optimizer
from utils.training.subdivision_updater import SubdivisionUpdater


def _count_columns(monkeypatch):
    """Calls of im2col (each feeds a weight gradient in the backward pass)
    and col2im (each an input gradient), both layouts."""
    calls = {'im2col': 0, 'col2im': 0}
    for name in ('im2col', 'im2col_folded', 'col2im', 'col2im_folded'):
        def counted(*args, _key=name.split('_')[0], _f=getattr(cc, name)):
            calls[_key] += 1
            return _f(*args)
        monkeypatch.setattr(cc, name, counted)
    return calls


def _body_backward(body, x, monkeypatch):
    """Calls during the backward pass of a weighted sum of every stage's
    output (as an FPN reads them), and each parameter's gradient."""
    rng = numpy.random.RandomState(1)
    body.cleargrads()
    outs = body(x)
    loss = sum(F.sum(h * rng.randn(*h.shape)) for h in outs)
    calls = _count_columns(monkeypatch)
    loss.backward()
    monkeypatch.undo()
    return calls, {name: None if p.grad is None else p.grad.copy()
                   for name, p in body.namedparams()}


@pytest.mark.parametrize('frozen,im2col,col2im', [
    # By hand: the stem and 4 convs per stage (branch1 in each first block:
    # the channels change), 17 convs. Each trained conv makes one im2col
    # for its weights; one col2im unless its input needs no gradient: the
    # image, and the first block of the stage after the frozen ones, read
    # by branch2a and branch1.
    (0, 17, 16), (1, 16, 14), (2, 12, 10), (3, 8, 6)])
def test_frozen_stages_skip_their_backward(monkeypatch, frozen, im2col,
                                           col2im):
    numpy.random.seed(0)
    with chainer.using_config('dtype', numpy.float64):
        body = ResNetBody(50, 5, 'affine', width=4, blocks=(1, 1, 1, 1))
    rng = numpy.random.RandomState(0)
    for _, link in body.namedlinks():
        if hasattr(link, 'scale'):   # affine norms, not the identity
            link.scale[...] = rng.uniform(0.5, 2, link.scale.shape)
            link.bias[...] = rng.randn(*link.bias.shape)
    x = rng.randn(2, 3, 64, 64)
    _, reference = _body_backward(body, x, monkeypatch)  # no cut
    body.frozen_stages = frozen
    calls, grads = _body_backward(body, x, monkeypatch)
    assert calls == {'im2col': im2col, 'col2im': col2im}
    stages = ['conv1', 'res2', 'res3', 'res4', 'res5'][:frozen]
    for name, grad in grads.items():
        if name.split('/')[1] in stages:
            assert grad is None, name
        else:
            numpy.testing.assert_allclose(grad, reference[name], rtol=1e-12,
                                          atol=0, err_msg=name)


def _train_step(freeze_at, cut, monkeypatch, dtype=numpy.float64,
                samples=tiny.ALL_SAMPLES):
    """One step of the tiny chain with ``freeze_at``; ``cut=False`` undoes
    the graph cut (the behaviour before it). Returns the chain, the
    im2col / col2im calls of the step and the loss."""
    batch = tiny.examples(2)
    with chainer.using_config('dtype', dtype):
        chain = tiny.chain(**samples)
        optimizer, _ = build_optimizer(chain, 0.01, 1e-4, freeze_at,
                                       dtype == chainer.mixed16)
        if not cut:
            chain.model.extractor.body.frozen_stages = 0
        updater = SubdivisionUpdater(tiny.OneBatch(batch), optimizer,
                                     tiny.batcher())
        calls = _count_columns(monkeypatch)
        observation = tiny.update_once(updater, chain)
        monkeypatch.undo()
    return chain, calls, float(observation['main/loss'])


def test_training_step_with_the_stem_and_res2_frozen(monkeypatch):
    with chainer.using_config('dtype', numpy.float64):
        before = tiny.chain(**tiny.ALL_SAMPLES)
    cut, cut_calls, cut_loss = _train_step(2, True, monkeypatch)
    full, full_calls, full_loss = _train_step(2, False, monkeypatch)
    # By hand (fpn-tiny: blocks (1, 1, 1, 1), branch1 everywhere): the stem
    # and res2's 4 convs make no weight gradient; res2's 4 convs and the
    # three readers of C2 (res3's branch2a and branch1, the FPN's lateral
    # 1x1) no input gradient.
    assert full_calls['im2col'] - cut_calls['im2col'] == 5
    assert full_calls['col2im'] - cut_calls['col2im'] == 7
    assert cut_loss == full_loss
    old = dict(before.namedparams())
    frozen = ('/model/extractor/body/conv1/', '/model/extractor/body/res2/')
    for (name, a), (_, b) in zip(sorted(cut.namedparams()),
                                 sorted(full.namedparams())):
        if name.startswith(frozen):   # (their .grad: zeros + decay)
            numpy.testing.assert_array_equal(a.array, old[name].array)
            numpy.testing.assert_array_equal(b.array, old[name].array)
        else:
            numpy.testing.assert_allclose(a.grad, b.grad, rtol=1e-12,
                                          atol=0, err_msg=name)
            numpy.testing.assert_array_equal(a.array, b.array)


@pytest.mark.slow
def test_mixed16_step_with_frozen_stages(monkeypatch):
    chain, _, loss = _train_step(2, True, monkeypatch, chainer.mixed16, {})
    with chainer.using_config('dtype', chainer.mixed16):
        before = tiny.chain()
    assert numpy.isfinite(loss)
    body, old = chain.model.extractor.body, before.model.extractor.body
    assert body.conv1.conv.W.dtype == numpy.float16
    numpy.testing.assert_array_equal(body.conv1.conv.W.array,
                                     old.conv1.conv.W.array)
    changed = body.res3[0].branch2b.conv.W
    assert changed.update_rule._fp32_param is not None
    assert not numpy.array_equal(changed.array,
                                 old.res3[0].branch2b.conv.W.array)


def test_mobilenet_frozen_blocks_give_outputs_without_a_graph():
    from models.mobilenet import MobileNetV1Body
    body = MobileNetV1Body('affine')
    x = numpy.random.RandomState(2).randn(1, 3, 32, 32).astype('f')
    outs = body(x)
    body.frozen_stages = 2   # conv1 .. conv3_1, whose output is C2
    cut = body(x)
    for a, b in zip(outs, cut):
        numpy.testing.assert_array_equal(a.array, b.array)
    assert outs[0].creator is not None
    assert cut[0].creator is None and not cut[0].requires_grad
    assert cut[1].creator is not None and cut[1].requires_grad


def test_frozen_batch_norm_still_updates_its_running_averages(monkeypatch):
    # 'bn' in a frozen stage: the forward pass (batch statistics, running
    # averages) is the uncut one; only its backward pass is skipped.
    import copy
    numpy.random.seed(0)
    with chainer.using_config('dtype', numpy.float64):
        body = ResNetBody(50, 5, 'bn', width=4, blocks=(1, 1, 1, 1))
    cut = copy.deepcopy(body)
    cut.frozen_stages = 2
    x = numpy.random.RandomState(0).randn(2, 3, 64, 64)
    _, reference = _body_backward(body, x, monkeypatch)
    calls, grads = _body_backward(cut, x, monkeypatch)
    assert calls == {'im2col': 12, 'col2im': 10}
    norm, cut_norm = body.res2[0].branch2b.norm, cut.res2[0].branch2b.norm
    assert (norm.avg_mean != 0).all()
    numpy.testing.assert_array_equal(cut_norm.avg_mean, norm.avg_mean)
    numpy.testing.assert_array_equal(cut_norm.avg_var, norm.avg_var)
    for name, grad in grads.items():
        if name.startswith(('/conv1/', '/res2/')):
            assert grad is None, name
        else:
            numpy.testing.assert_allclose(grad, reference[name], rtol=1e-12,
                                          atol=0, err_msg=name)
