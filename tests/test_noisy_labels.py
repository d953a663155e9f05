"Noisy-label losses against their formulas, under fastai's mixup reduction protocol (and Iqbal et al.'s mixed weights), and the strategy registry."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dcase_selfverify.noisy_labels import (STRATEGIES, StrategyError, bootstrap_loss, downweight_loss, label_smoothing_loss, loss_masking,
                                           lq_loss, parse_strategies, strategy)

def _batch(seed=0, n=12, classes=5):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, classes, generator=generator) * 2
    targets = torch.randint(0, classes, (n,), generator=generator)
    verified = torch.arange(n) % 3 == 0
    return logits, targets, verified

def _reference(name, logits, targets, verified):
    "Per-sample losses written out in numpy."
    z = logits.double().numpy()
    logp = z - z.max(1, keepdims=True)
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    p, t, v = np.exp(logp), targets.numpy(), verified.numpy()
    rows, onehot = np.arange(len(t)), np.eye(z.shape[1])[t]
    ce = -logp[rows, t]
    noisy = {'label-smoothing': 0.9 * ce - 0.1 / z.shape[1] * logp.sum(1),
             'lq': (1 - p[rows, t] ** 0.7) / 0.7,
             'bootstrap-soft': -((0.95 * onehot + 0.05 * p) * logp).sum(1),
             'bootstrap-hard': -((0.8 * onehot + 0.2 * np.eye(z.shape[1])[p.argmax(1)]) * logp).sum(1),
             'loss-masking': np.where(ce > 0.8 * ce.max(), 0.0, ce),
             'downweight': 0.65 * ce}[name]
    return np.where(v, ce, noisy)

LOSSES = ['label-smoothing', 'lq', 'bootstrap-soft', 'bootstrap-hard', 'loss-masking', 'downweight']

@pytest.mark.parametrize('name', LOSSES)
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_losses_match_formula(name, seed):
    logits, targets, verified = _batch(seed)
    loss = strategy(name).make_loss()
    expected = _reference(name, logits, targets, verified)
    assert torch.allclose(loss(logits, targets, verified), torch.tensor(expected.mean(), dtype=torch.float32), atol=1e-5)
    loss.reduction = 'none'
    np.testing.assert_allclose(loss(logits, targets, verified).numpy(), expected, atol=1e-5)
    loss.reduction = 'sum'
    assert abs(float(loss(logits, targets, verified)) - expected.sum()) < 1e-4
    loss.reduction = 'mean'
    all_verified = torch.ones_like(verified)
    assert torch.allclose(loss(logits, targets), F.cross_entropy(logits, targets), atol=1e-6)      # verified=None: all verified
    assert torch.allclose(loss(logits, targets, all_verified), F.cross_entropy(logits, targets), atol=1e-6)

@pytest.mark.parametrize('name', LOSSES)
def test_mixup_protocol(name):
    "fastai's MixHandler.lf: lerp of the two none-reduced losses, then the loss's own reduction."
    from fastai.layers import NoneReduce
    logits, targets, verified = _batch(3)
    loss = strategy(name).make_loss()
    shuffle, lam = torch.randperm(len(targets)), torch.rand(len(targets))
    with NoneReduce(loss) as none_loss:
        mixed = torch.lerp(none_loss(logits, targets[shuffle], verified[shuffle]), none_loss(logits, targets, verified), lam)
    assert loss.reduction == 'mean' and loss.y_int
    expected = lam.numpy() * _reference(name, logits, targets, verified) + (1 - lam.numpy()) * _reference(name, logits, targets[shuffle], verified[shuffle])
    np.testing.assert_allclose(mixed.numpy(), expected, atol=1e-5)

def test_registry():
    assert set(STRATEGIES) == {'verified-only', 'all', 'selfverify', *LOSSES}
    assert [s.name for s in parse_strategies('all,lq+selfverify')] == ['all', 'lq+selfverify']
    assert strategy('downweight+selfverify').selfverify and not strategy('downweight').selfverify
    with pytest.raises(StrategyError): strategy('nope')

def test_downweight_mixes_weights_like_iqbal_et_al():
    "Under the training's mixup callbacks the down-weighting loss multiplies the mixed-target loss by the mixed weight."
    from types import SimpleNamespace
    from dcase_selfverify.training import DeviceMixUp, ReversalMixUp
    logits, targets, verified = _batch(5)
    shuffle, lam = torch.randperm(len(targets)), torch.rand(len(targets))
    ce, ce_shuffled = (F.cross_entropy(logits, labels, reduction='none') for labels in (targets, targets[shuffle]))   # one prediction, two targets
    weights = torch.where(verified, 1.0, 0.65)
    expected = torch.lerp(weights[shuffle], weights, lam) * torch.lerp(ce_shuffled, ce, lam)
    for callback in (DeviceMixUp(0.3), ReversalMixUp(0.3)):
        callback.learn = SimpleNamespace(training=True)
        callback.old_lf, callback.yb1, callback.lam = downweight_loss(), (targets[shuffle], verified[shuffle]), lam
        assert torch.allclose(callback.lf(logits, targets, verified), expected.mean(), atol=1e-6)
        callback.old_lf = lq_loss()                     # a loss without `mixup_loss`: fastai's mixing of the two losses
        with __import__('fastai.layers', fromlist=['NoneReduce']).NoneReduce(callback.old_lf) as none_loss:
            plain = torch.lerp(none_loss(logits, targets[shuffle], verified[shuffle]), none_loss(logits, targets, verified), lam).mean()
        assert torch.allclose(callback.lf(logits, targets, verified), plain, atol=1e-6)
