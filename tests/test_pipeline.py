"The pipeline layer on small real data: one copy of the spectrograms, the strategy comparison, label corrections."
import json
from pathlib import Path
import numpy as np
import pandas as pd
import pytest

import dcase_selfverify.pipeline as pipeline
import dcase_selfverify.training as training
from dcase_selfverify.core import get_preset
from dcase_selfverify.corrections import record_decision
from dcase_selfverify.demo_data import make_demo_dataset
from dcase_selfverify.work_folder import WorkFolderError

SMALL = dict(n_classes=3, clips_per_class=12, test_clips_per_class=3, max_duration=4.0)
QUIET = dict(device='cpu', progress=False, log=lambda message: None)

def tiny(**changes):
    "The tiny network, two epochs, one fine-tuning epoch per self-verification round."
    settings = dict(n_frames=1000, epochs=2, constant_epochs=1, finetune_epochs=1, finetune_constant_epochs=1)
    return get_preset('tiny', **{**settings, **changes})

@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp('data')/'small', **SMALL)

def test_one_copy_of_the_spectrograms_over_folds_and_rounds(data, tmp_path, monkeypatch):
    "Two folds of initial training and two self-verification rounds read one tensor, loaded once."
    loads, pointers = [], []
    real_load, real_loaders = pipeline.load_features, training.make_dataloaders
    def counting_load(*args, **kwargs):
        loads.append(args[1:])
        return real_load(*args, **kwargs)
    def recording_loaders(data, *args, **kwargs):
        dls = real_loaders(data, *args, **kwargs)
        pointers.extend([data.specs.data_ptr(), dls.train.specs.data_ptr(), dls.valid.specs.data_ptr()])
        return dls
    monkeypatch.setattr(pipeline, 'load_features', counting_load)
    monkeypatch.setattr(training, 'make_dataloaders', recording_loaders)
    ctx = pipeline.open_run(data, tmp_path/'work', [tiny(sv_iterations=2)], **QUIET)
    pipeline.prepare_features(ctx)
    folds = pipeline.prepare_folds(ctx)
    member = pipeline.train_preset(ctx, folds, ctx.presets[0], fold_ids=[0, 1])
    assert member.selfverify.table.iteration.max() == 2
    specs = ctx.spectrograms('train', folds.fname, ctx.presets[0])
    assert len(loads) == 1, loads
    assert len(pointers) == 3 * (2 + 2 * 2)            # 2 initial trainings + 2 rounds x 2 folds of fine-tuning
    assert set(pointers) == {specs.data_ptr()}

COMPARED = ['verified-only', 'all', 'lq', 'selfverify']   # every loss is tested in test_noisy_labels; here the mechanics
RULES = ['paper', 'cleanlab', 'certified']

def test_compare_strategies_rules_and_controls(data, tmp_path):
    from dcase_selfverify.compare import compare_strategies, demo_truth
    preset = tiny(sv_iterations=1, epochs=1, constant_epochs=1)
    truth = demo_truth(data)
    table = compare_strategies(data, tmp_path/'work', preset, strategies=COMPARED, rules=RULES, truth=truth, **QUIET)
    expected = ['verified-only', 'all', 'lq', 'selfverify (paper)', 'selfverify (cleanlab)', 'selfverify (certified)',
                'control: fine-tune on verified + all unverified', 'control: fine-tune on verified only']
    assert table.row.tolist() == expected
    assert table.judged.tolist() == ['initial'] * 3 + ['kept'] * 3 + ['last'] * 2
    assert pd.read_csv(tmp_path/'work'/'comparison.csv').row.tolist() == expected and (tmp_path/'work'/'comparison.png').stat().st_size > 1000
    rows = table.set_index('row')
    folds = pd.read_csv(tmp_path/'work'/'folds.csv')
    unverified = folds[~folds.manually_verified.astype(bool)]
    assert rows.loc['verified-only', 'n_trusted'] == 0 and rows.loc['control: fine-tune on verified only', 'n_trusted'] == 0
    assert rows.loc['all', 'n_trusted'] == len(unverified) and rows.loc['control: fine-tune on verified + all unverified', 'n_trusted'] == len(unverified)
    right = (unverified.label.to_numpy() == unverified.fname.map(truth.set_index('fname').true_label).to_numpy()).mean()
    assert rows.loc['all', 'label_precision'] == pytest.approx(right)
    assert ((table.valid_accuracy >= 0) & (table.valid_accuracy <= 1) & (table.test_map3 >= table.test_accuracy)).all()
    assert (table.seconds > 0).all() and rows.loc['all', 'd_valid_accuracy'] == 0
    # the Lq models sit in their own folder; 'all' and 'selfverify' share theirs; each rule has its own self-verification folder
    assert (tmp_path/'work'/'tiny_lq'/'fold_0'/'best.pth').exists() and not (tmp_path/'work'/'tiny_all').exists()
    assert {p.name for p in (tmp_path/'work'/'tiny').glob('selfverify*')} == {
        'selfverify', 'selfverify_cleanlab', 'selfverify_certified', 'selfverify_accept-all', 'selfverify_accept-none'}
    certified = json.loads((tmp_path/'work'/'tiny'/'selfverify_certified'/'rule_01.json').read_text())
    assert certified['rule'] == 'certified' and certified['n_valid'] == int(folds.manually_verified.sum())
    assert 0 < certified['rho_upper'] <= 1 and certified['sets_tested'] >= 0

def test_corrections_change_the_training_table(data, tmp_path):
    "A relabelled clip trains with its new label as a verified clip, a dropped one not at all; the run records the file."
    train = pd.read_csv(Path(data)/'train.csv')
    unverified = train[~train.manually_verified.astype(bool)].fname.tolist()
    relabelled, dropped = unverified[0], unverified[1]
    old_label = train.set_index('fname').label[relabelled]
    new_label = next(c for c in sorted(train.label.unique()) if c != old_label)
    decisions = tmp_path/'review'/'decisions.csv'
    record_decision(decisions, {'clip': relabelled, 'given_label': old_label, 'decision': 'relabel', 'new_label': new_label})
    record_decision(decisions, {'clip': dropped, 'given_label': '', 'decision': 'drop', 'new_label': ''})
    metrics = pipeline.run_pipeline(data, tmp_path/'work', [tiny()], iterations=1, corrections=decisions, export=False, **QUIET)
    folds = pd.read_csv(tmp_path/'work'/'folds.csv').set_index('fname')
    assert folds.label[relabelled] == new_label and bool(folds.manually_verified[relabelled])
    assert dropped not in folds.index
    run = json.loads((tmp_path/'work'/'run.json').read_text())
    assert run['corrections']['file'] == str(decisions.resolve()) and len(run['corrections']['sha256']) == 64
    assert metrics['corrections']['relabelled'] == {relabelled: [old_label, new_label]} and metrics['corrections']['dropped'] == [dropped]
    # later stages reapply the recorded corrections; a changed decisions file is refused
    ctx, table = pipeline.stage_context(data, tmp_path/'work', 'tiny', progress=False)
    assert table.set_index('fname').label[relabelled] == new_label
    record_decision(decisions, {'clip': unverified[2], 'given_label': '', 'decision': 'drop', 'new_label': ''})
    with pytest.raises(WorkFolderError, match='other settings'):
        pipeline.run_pipeline(data, tmp_path/'work', [tiny()], iterations=1, corrections=decisions, export=False, **QUIET)
