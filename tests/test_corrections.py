"Decisions files: concurrent writers in separate processes lose nothing; a corrected clip changes the training table."
import multiprocessing
from pathlib import Path
import pandas as pd
import pytest

from dcase_selfverify.core import DatasetError, find_dataset
from dcase_selfverify.corrections import (DECISION_COLUMNS, apply_corrections, read_corrections, record_decision)
from dcase_selfverify.demo_data import make_demo_dataset

def _write_many(path:str, writer:int, n:int):
    for i in range(n):
        decision = ('keep', 'drop', 'skip', 'relabel')[i % 4]
        record_decision(path, {'clip': f'w{writer}_{i}.wav', 'decision': decision,
                               'new_label': 'Cello' if decision == 'relabel' else ''})

def test_concurrent_processes_lose_no_decision(tmp_path):
    path = tmp_path/'review'/'decisions.csv'
    context = multiprocessing.get_context('spawn')
    writers = [context.Process(target=_write_many, args=(str(path), writer, 30)) for writer in range(4)]
    for process in writers: process.start()
    for process in writers: process.join(120)
    assert [process.exitcode for process in writers] == [0] * 4
    written = read_corrections(path, ['Cello'])
    assert sorted(written['clip']) == sorted(f'w{w}_{i}.wav' for w in range(4) for i in range(30))
    assert list(written.columns) == list(DECISION_COLUMNS)
    assert not list(path.parent.glob('.decisions.csv.*.tmp'))            # no temporary file left behind

def test_same_clip_latest_decision_wins(tmp_path):
    path = tmp_path/'decisions.csv'
    for decision in ('keep', 'relabel', 'drop'):
        record_decision(path, {'clip': 'a.wav', 'decision': decision, 'new_label': 'cello' if decision == 'relabel' else None}, ['Cello'])
    assert pd.read_csv(path)['decision'].tolist() == ['drop']

def test_a_corrected_clip_changes_the_training_table(tmp_path):
    data = make_demo_dataset(tmp_path/'data', n_classes=3, clips_per_class=6, test_clips_per_class=1, max_duration=2.0,
                             odd_formats=False, broken_files=False)
    ds = find_dataset(data)
    unverified = ds.train[~ds.train.manually_verified]
    relabelled, dropped = unverified.iloc[0], unverified.iloc[1]
    new_label = next(c for c in ds.classes if c != relabelled.label)
    path = tmp_path/'decisions.csv'
    record_decision(path, {'clip': relabelled.fname, 'given_label': relabelled.label, 'decision': 'relabel', 'new_label': new_label}, ds.classes)
    record_decision(path, {'clip': dropped.fname, 'given_label': dropped.label, 'decision': 'drop'}, ds.classes)
    table, report = apply_corrections(ds.train, read_corrections(path, ds.classes))
    row = table.set_index('fname').loc[relabelled.fname]
    assert (row.label, row.manually_verified) == (new_label, True)
    assert dropped.fname not in set(table.fname) and len(table) == len(ds.train) - 1
    assert report['relabelled'] == {relabelled.fname: [relabelled.label, new_label]} and report['dropped'] == [dropped.fname]
    unchanged = table[~table.fname.isin([relabelled.fname])].reset_index(drop=True)
    expected = ds.train[~ds.train.fname.isin([relabelled.fname, dropped.fname])].reset_index(drop=True)
    pd.testing.assert_frame_equal(unchanged, expected)

@pytest.mark.parametrize('text,message', [
    ('clip,decision\nx.wav,keep\n', "lacks column(s) ['new_label']"),
    ('clip,decision,new_label\nx.wav,maybe,\n', "unknown decision 'maybe'"),
    ('clip,decision,new_label\nx.wav,relabel,Banjo\n', "new_label 'Banjo' is not one of the 1 classes"),
])
def test_bad_files_fail_with_one_line(tmp_path, text, message):
    (tmp_path/'d.csv').write_text(text)
    with pytest.raises(DatasetError, match='^[^\n]*$') as error: read_corrections(tmp_path/'d.csv', ['Cello'])
    assert message in str(error.value)
    with pytest.raises(DatasetError, match='not found'): read_corrections(tmp_path/'missing.csv', ['Cello'])

def test_unknown_clip_is_an_error():
    table = pd.DataFrame({'fname': ['a.wav'], 'label': ['Cello'], 'manually_verified': [False]})
    corrections = pd.DataFrame({'clip': ['b.wav'], 'given_label': [''], 'decision': ['drop'], 'new_label': ['']})
    with pytest.raises(DatasetError, match="not in the training table, e.g. 'b.wav'"): apply_corrections(table, corrections)
