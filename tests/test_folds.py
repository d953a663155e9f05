"Fold split checks: the real FSDKaggle2018 metadata (in reference/, required) and a tiny data set with a 2-clip class."
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from dcase_selfverify.core import read_train_csv
from dcase_selfverify.folds import make_folds, save_folds, load_folds
from conftest import class_balance

META_CSV = Path(__file__).resolve().parents[1]/'reference'/'fsdkaggle2018-meta'/'train_post_competition.csv'


@pytest.fixture(scope='module')
def real_train():
    return read_train_csv(META_CSV)


@pytest.fixture(scope='module')
def real_folds(real_train):
    return make_folds(real_train)


def test_every_clip_in_one_validation_fold(real_train, real_folds):
    assert len(real_folds) == len(real_train)
    assert set(real_folds.fname) == set(real_train.fname)
    assert set(real_folds.fold) == {0, 1, 2, 3}
    validation = np.concatenate([np.flatnonzero(real_folds.fold.values == k) for k in range(4)])
    assert np.array_equal(np.sort(validation), np.arange(len(real_folds)))


def test_verified_per_fold(real_train, real_folds):
    counts = real_folds[real_folds.manually_verified].fold.value_counts()
    assert set(counts) <= {927, 928}
    assert counts.sum() == real_train.manually_verified.sum()


def test_class_shares_within_one_clip(real_folds):
    for name, subset in [('verified', real_folds[real_folds.manually_verified]),
                         ('unverified', real_folds[~real_folds.manually_verified]), ('all', real_folds)]:
        counts = pd.crosstab(subset.label, subset.fold)
        share = counts.sum(axis=1).values[:, None] / 4
        assert np.abs(counts.values - share).max() <= 1, name
    assert (class_balance(real_folds) <= 1).all()


def test_same_split_every_time(real_train, real_folds):
    again = make_folds(real_train.sample(frac=1.0, random_state=3))
    assert again.fname.tolist() == real_folds.fname.tolist()
    assert again.fold.tolist() == real_folds.fold.tolist()


def test_tiny_dataset_with_two_clip_class(tmp_path):
    train = pd.DataFrame({'fname': [f'c{i}.wav' for i in range(11)],
                          'label': ['Bark'] * 5 + ['Meow'] * 4 + ['Gong'] * 2,
                          'manually_verified': [True] * 3 + [False] * 2 + [True, True, False, False] + [True, True]})
    folds = make_folds(train)
    assert set(folds.fold) <= {0, 1, 2, 3}
    assert (class_balance(folds) <= 1).all()
    gong_folds = folds[folds.label == 'Gong'].fold
    assert gong_folds.nunique() == 2
    save_folds(folds, tmp_path/'folds.csv')
    reloaded = load_folds(tmp_path/'folds.csv', train)
    assert reloaded.fold.tolist() == folds.fold.tolist()
    with pytest.raises(ValueError, match='without a fold'):
        load_folds(tmp_path/'folds.csv', pd.concat([train, train.head(1).assign(fname='extra.wav')]))
