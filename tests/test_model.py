"VGGGap checks: exact parameter counts, forward cost, input checks, variable lengths, a tiny training step."
import pytest
import torch
from torch import nn
from dcase_selfverify.model import (VGGGap, build_model, count_parameters, conv_flops, output_size, step_frames,
                                    MIN_FRAMES)


def test_exact_parameter_counts():
    assert count_parameters(VGGGap(n_classes=41, nf=64)) == {'trainable': 14_855_570, 'bn_running_stats': 9_554,
                                                              'total': 14_865_124}
    assert count_parameters(VGGGap(n_classes=41, nf=48))['trainable'] == 8_362_306
    assert count_parameters(build_model('spec1_1'))['trainable'] == 8_362_306
    assert count_parameters(build_model('paper'))['total'] == 14_865_124


def test_forward_flops_match_facts():
    assert conv_flops(384, nf=64) == pytest.approx(9.68e9, rel=0.01)
    assert conv_flops(3000, nf=64) == pytest.approx(75.9e9, rel=0.01)


def test_too_short_and_wrong_bins():
    model = VGGGap(nf=8).eval()
    with pytest.raises(ValueError, match=f'MIN_FRAMES={MIN_FRAMES}'):
        model(torch.randn(1, 1, 128, MIN_FRAMES - 1))
    with pytest.raises(ValueError, match='frequency bins'):
        model(torch.randn(1, 1, 96, 384))
    assert output_size(MIN_FRAMES) == 1 and output_size(MIN_FRAMES - 1) < 1


@pytest.mark.parametrize('frames', [MIN_FRAMES, 384, 777, 3000])
def test_variable_lengths(frames):
    model = VGGGap(n_classes=7, nf=8).eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, 128, frames))
        maps = model.class_maps(torch.randn(2, 1, 128, frames))
    assert logits.shape == (2, 7)
    assert maps.shape == (2, 7, output_size(frames))
    assert len(step_frames(maps.shape[-1])) == maps.shape[-1]


def test_class_maps_average_to_logits():
    model = VGGGap(nf=8).eval()
    batch = torch.randn(2, 1, 128, 500)
    with torch.no_grad():
        torch.testing.assert_close(model.class_maps(batch).mean(-1), model(batch), rtol=1e-5, atol=1e-5)


def test_tiny_forward_backward():
    torch.manual_seed(0)
    model = build_model('tiny').train()
    inputs, targets = torch.randn(8, 1, 128, 384), torch.randint(0, 41, (8,))
    loss = nn.functional.cross_entropy(model(inputs), targets)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_channels_last_same_output():
    torch.manual_seed(0)
    model = VGGGap(nf=8).eval()
    batch = torch.randn(2, 1, 128, 384)
    with torch.no_grad():
        expected = model(batch)
        result = model.to(memory_format=torch.channels_last)(batch.to(memory_format=torch.channels_last))
    torch.testing.assert_close(result, expected, rtol=1e-4, atol=1e-4)
