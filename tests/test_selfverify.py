"Self-verification on a toy data set: the cumulative mode keeps clips once accepted, the default decides afresh."
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import write_toy_folds
from dcase_selfverify.core import get_preset
from dcase_selfverify.training import fold_data, train_fold
from dcase_selfverify.selfverify import self_verify

@pytest.fixture(scope='module')
def initial_models(tmp_path_factory):
    folder = write_toy_folds(tmp_path_factory.mktemp('toy'), 48)
    specs = torch.from_numpy(np.load(folder/'specs.npy'))
    folds = pd.read_csv(folder/'folds.csv')
    preset = get_preset('tiny', epochs=2, constant_epochs=1, batch_size=8, n_frames=400, finetune_epochs=1, finetune_constant_epochs=1,
                        sv_threshold=0.0, sv_per_class=2)
    checkpoints = {}
    for fold in range(4):
        train_fold(fold_data(specs, folds, fold, ['a', 'b', 'c']), preset, folder/f'fold_{fold}', progress=False, device='cpu', seed=fold)
        checkpoints[fold] = folder/f'fold_{fold}'/'best.pth'
    return specs, folds, preset, checkpoints

@pytest.mark.parametrize('cumulative', [False, True])
def test_cumulative_mode(initial_models, tmp_path, cumulative):
    specs, folds, preset, checkpoints = initial_models
    result = self_verify(folds, specs, ['a', 'b', 'c'], checkpoints, tmp_path, preset, 'authors', iterations=2,
                         cumulative=cumulative, device='cpu', log=lambda message: None)
    decisions = [pd.read_csv(tmp_path/f'decisions_{i:02d}.csv') for i in (1, 2)]
    accepted = [set(d.fname[d.accepted]) for d in decisions]
    assert all(len(a) <= 2 * 3 for a in accepted)                        # at most per_class clips per class
    table = result.table.set_index(['iteration', 'fold'])
    verified = folds.manually_verified.to_numpy()
    for fold in range(4):
        outside = folds.fold.to_numpy() != fold
        trusted = accepted[1] | (accepted[0] if cumulative else set())
        expected = int((outside & (verified | folds.fname.isin(trusted).to_numpy())).sum())
        assert table.loc[(2, fold), 'n_train'] == expected
