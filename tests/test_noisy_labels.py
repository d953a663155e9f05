"Noisy-label losses against their formulas, under fastai's mixup reduction protocol, the strategy registry, and the adaptive rule on posteriors with a known answer."
import math
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from dcase_selfverify.noisy_labels import (STRATEGIES, StrategyError, adaptive_thresholds, bootstrap_loss, calibrate, downweight_loss,
                                           estimated_precision, fit_temperature, label_smoothing_loss, loss_masking, lq_loss,
                                           parse_strategies, select_adaptive, strategy)

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
             'loss-masking': np.where(ce > 0.6 * ce.max(), 0.0, ce),
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

def _synthetic(n, sharpen, seed, classes=10, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, scale, (n, classes))
    true = np.exp(logits - logits.max(1, keepdims=True)); true /= true.sum(1, keepdims=True)
    drawn = (rng.random((n, 1)) > true.cumsum(1)).sum(1)
    reported = np.exp(sharpen * (logits - logits.max(1, keepdims=True))); reported /= reported.sum(1, keepdims=True)
    return reported, drawn

def test_temperature_recovers_sharpening():
    probs, classes = _synthetic(20000, 2.0, 0)
    assert abs(fit_temperature(probs, classes) - 2.0) < 0.1

def test_adaptive_rule_meets_target_on_overconfident_posteriors():
    valid, valid_targets = _synthetic(5000, 2.0, 1)
    fresh, fresh_targets = _synthetic(50000, 2.0, 2)
    thresholds, info = adaptive_thresholds(valid, valid_targets)
    calibrated = calibrate(fresh, info['temperature'])
    above = calibrated.max(1) >= thresholds[calibrated.argmax(1)]
    assert above.sum() > 1000
    assert (calibrated.argmax(1) == fresh_targets)[above].mean() >= 0.96
    accepted = select_adaptive(fresh, fresh_targets, thresholds, info['temperature'], per_class=None)
    np.testing.assert_array_equal(accepted, above & (calibrated.argmax(1) == fresh_targets))  # given = truth: right predictions above the bar
    assert estimated_precision(fresh, fresh_targets, accepted, info['temperature']) >= 0.96

def test_rare_class_falls_back_to_fold():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.5, 1.0, 4000)
    predicted = np.r_[np.zeros(3990, int), np.ones(10, int)]
    probs = np.column_stack([np.where(predicted == 0, confidence, 1 - confidence), np.where(predicted == 1, confidence, 1 - confidence)])
    targets = np.where(rng.random(4000) < confidence, predicted, 1 - predicted)
    thresholds, info = adaptive_thresholds(probs, targets, temperature=1.0)
    assert info['source'] == ['class', 'fold'] and thresholds[1] == info['fold_threshold']
    assert abs(info['fold_threshold'] - 0.94) < 0.015 and not math.isinf(thresholds[0])
