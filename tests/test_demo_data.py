"Tests of the synthetic FSDKaggle2018-shaped demo data set."
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import soundfile as sf

from dcase_selfverify.core import find_dataset, read_train_csv
from dcase_selfverify.demo_data import (DEMO_CLASSES, LAYOUTS, MANIFEST, MIN_DURATION, NOISE_RATE_RANGE, SIMILAR, demo_classes,
                                        make_demo_dataset, plan_demo_dataset, read_truth)

TINY = dict(n_classes=3, clips_per_class=8, test_clips_per_class=2, max_duration=1.0)


def file_hashes(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    "One tiny demo data set per layout."
    base = tmp_path_factory.mktemp('demo')
    return {layout: make_demo_dataset(base / layout, layout=layout, **TINY) for layout in LAYOUTS}


def test_same_seed_same_bytes(tmp_path, datasets):
    "Same seed, same bytes, whether the clips are rendered by worker processes (the fixture's default) or in this process."
    again = make_demo_dataset(tmp_path / 'again', layout='kaggle', workers=0, **TINY)
    first, second = file_hashes(datasets['kaggle']), file_hashes(again)
    assert len(first) > 30
    assert first == second
    other = file_hashes(make_demo_dataset(tmp_path / 'other', layout='kaggle', seed=1, **TINY))
    assert not any(first[p] == other.get(p) for p in first if p.endswith('.wav'))


def test_layouts_found(datasets):
    for layout, root in datasets.items():
        dataset = find_dataset(root, classes=demo_classes(3))
        truth = read_truth(root)
        assert dataset.layout == layout
        assert dataset.root == root
        train_truth = truth[truth.split == 'train'].set_index('fname')
        given = dataset.train.set_index('fname')
        assert sorted(given.index) == sorted(train_truth.index)
        assert (given.label == train_truth.label.reindex(given.index)).all()
        assert (given.manually_verified == train_truth.manually_verified.reindex(given.index).astype(bool)).all()
        scored = dataset.test[dataset.test.usage != 'Ignored']
        assert set(scored.usage) <= {'Public', 'Private'}
        assert (scored.set_index('fname').label == truth.set_index('fname').true_label.reindex(scored.fname)).all()
    assert find_dataset(datasets['generic']).classes == demo_classes(3)
    kaggle_test = find_dataset(datasets['kaggle'], classes=demo_classes(3)).test
    assert (kaggle_test.usage == 'Ignored').sum() >= 2
    assert kaggle_test[kaggle_test.usage == 'Ignored'].label.isna().all()


def test_same_audio_in_every_layout(datasets):
    truth = read_truth(datasets['generic'])
    for row in truth.itertuples():
        files = [root / LAYOUTS[layout][0 if row.split == 'train' else 1] / row.fname for layout, root in datasets.items()]
        assert len({f.read_bytes() for f in files}) == 1


def test_truth_consistency():
    truth = plan_demo_dataset()
    train = truth[truth.split == 'train']
    assert truth.fname.is_unique
    assert len(train) == 12 * 40 and (truth.split == 'test').sum() == 12 * 10
    assert set(train.true_label) == set(demo_classes(12))
    assert abs(train.manually_verified.mean() - 0.4) < 0.02
    verified = train[train.manually_verified == 1]
    assert (verified.label == verified.true_label).all()
    unverified = train[train.manually_verified == 0]
    assert ((unverified.noise_kind == 'none') == (unverified.label == unverified.true_label)).all()
    rates = (unverified.label != unverified.true_label).groupby(unverified.true_label).mean()
    assert rates.between(*NOISE_RATE_RANGE).all()
    assert rates.std() > 0.02  # per-class rates differ
    assert set(unverified.noise_kind) == {'none', 'similar', 'uniform', 'mixed'}
    similar = unverified[unverified.noise_kind == 'similar']
    assert all(row.label in SIMILAR[row.true_label] for row in similar.itertuples())
    mixed = unverified[unverified.noise_kind == 'mixed']
    assert (mixed.label == mixed.mixed_with).all()
    test = truth[truth.split == 'test']
    assert (test.label == test.true_label).all()
    assert (test.usage == 'Public').sum() == 24
    readable = truth[~truth.format.isin(['empty', 'corrupt'])]
    assert readable.duration.between(MIN_DURATION, 30.0).all()
    assert readable.duration.max() > 4 * readable.duration.median()  # a long tail


def test_plan_depends_on_seed_only():
    pd.testing.assert_frame_equal(plan_demo_dataset(seed=3), plan_demo_dataset(seed=3))
    assert not plan_demo_dataset(seed=3).fname.equals(plan_demo_dataset(seed=4).fname)


def test_files_match_truth(datasets):
    root = datasets['generic']
    truth = read_truth(root)
    for row in truth[~truth.format.isin(['empty', 'corrupt'])].itertuples():
        info = sf.info(root / LAYOUTS['generic'][0 if row.split == 'train' else 1] / row.fname)
        assert abs(info.duration - row.duration) < 1e-3
        assert MIN_DURATION <= info.duration <= TINY['max_duration']


def test_broken_files_unreadable(datasets):
    root = datasets['zenodo']
    truth = read_truth(root)
    broken = truth[truth.format.isin(['empty', 'corrupt'])]
    assert sorted(zip(broken.split, broken.format)) == [('test', 'empty'), ('train', 'corrupt'), ('train', 'empty')]
    listed = set(read_train_csv(root / 'FSDKaggle2018.meta' / 'train_post_competition.csv', DEMO_CLASSES).fname)
    listed |= set(pd.read_csv(root / 'FSDKaggle2018.meta' / 'test_post_competition_scoring_clips.csv').fname)
    for row in broken.itertuples():
        assert row.fname in listed
        path = root / LAYOUTS['zenodo'][0 if row.split == 'train' else 1] / row.fname
        if row.format == 'corrupt':
            with pytest.raises(sf.LibsndfileError): sf.read(path)
        else:
            assert sf.info(path).frames == 0
            assert sf.read(path)[0].size == 0


def test_odd_formats_really_odd(datasets):
    root = datasets['kaggle']
    truth = read_truth(root)
    expected = {'pcm16': (44100, 1, 'PCM_16'), 'stereo': (44100, 2, 'PCM_16'), 'pcm24': (44100, 1, 'PCM_24'),
                'sr22050': (22050, 1, 'PCM_16'), 'sr48000': (48000, 1, 'PCM_16')}
    assert set(truth.format) == set(expected) | {'empty', 'corrupt'}
    for row in truth[truth.format.isin(expected)].itertuples():
        info = sf.info(root / LAYOUTS['kaggle'][0 if row.split == 'train' else 1] / row.fname)
        assert (info.samplerate, info.channels, info.subtype) == expected[row.format]
        assert info.format == 'WAV'


def test_rerun_and_refusals(tmp_path, datasets):
    root = datasets['generic']
    before = (root / MANIFEST).stat().st_mtime_ns
    assert make_demo_dataset(root, **TINY) == root
    assert (root / MANIFEST).stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match='overwrite=True'): make_demo_dataset(root, seed=5, **TINY)
    (tmp_path / 'mine').mkdir()
    (tmp_path / 'mine' / 'keep.txt').write_text('x')
    with pytest.raises(FileExistsError, match='not a demo data set'): make_demo_dataset(tmp_path / 'mine', **TINY)
    assert (tmp_path / 'mine' / 'keep.txt').read_text() == 'x'
    with pytest.raises(ValueError, match='synthesis recipes'): make_demo_dataset(tmp_path / 'big', n_classes=len(DEMO_CLASSES) + 1)
    with pytest.raises(ValueError, match='Unknown layout'): make_demo_dataset(tmp_path / 'bad', layout='tar')
    assert not (tmp_path / 'big').exists() and not (tmp_path / 'bad').exists()


def test_overwrite_replaces(tmp_path):
    root = make_demo_dataset(tmp_path / 'demo', **TINY)
    first = file_hashes(root)
    make_demo_dataset(root, seed=2, overwrite=True, **TINY)
    assert file_hashes(root) != first
    assert read_truth(root).seed.tolist() == plan_demo_dataset(seed=2, n_classes=3, clips_per_class=8, test_clips_per_class=2,
                                                               max_duration=1.0).seed.tolist()
    assert [p.name for p in tmp_path.iterdir()] == ['demo']
