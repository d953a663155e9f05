"The command line, run as a user runs it: real commands on small data sets in each layout."
import json, os, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from dcase_selfverify.demo_data import make_demo_dataset
from dcase_selfverify.cli import SELF

SMALL = dict(n_classes=3, clips_per_class=12, test_clips_per_class=3, max_duration=4.0)
FAST = ['--preset', 'tiny', '--epochs', '2', '--iterations', '1', '--finetune-epochs', '1', '--no-progress', '--workers', '2']

def cli(*args, timeout=900, check=None):
    "Run `dcase-selfverify ARGS` in a subprocess; return the completed process."
    env = {**os.environ, 'PYTHONUNBUFFERED': '1', 'MPLBACKEND': 'Agg'}
    result = subprocess.run([*SELF, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout, env=env)
    if check is not None: assert result.returncode == check, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result

@pytest.fixture(scope='module')
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    return {layout: make_demo_dataset(root/layout, layout=layout, **SMALL) for layout in ('generic', 'kaggle', 'zenodo')}

@pytest.fixture(scope='module')
def generic_run(datasets, tmp_path_factory):
    "One complete `run` on the generic layout, shared by the tests that read its outputs."
    work = tmp_path_factory.mktemp('work')/'generic'
    result = cli('run', datasets['generic'], '--out', work, *FAST, check=0)
    return work, result

def test_help_lists_every_command():
    result = cli('--help', check=0)
    for command in ('demo', 'run', 'prepare', 'folds', 'train', 'verify', 'predict', 'evaluate', 'submit', 'compare', 'review', 'tag', 'export'):
        assert f'  {command} ' in result.stdout
        sub = cli(command, '--help', check=0)
        assert 'usage: dcase-selfverify ' + command in sub.stdout

def test_unknown_command_and_bad_input_fail_clearly(tmp_path):
    result = cli('frobnicate', check=2)
    assert 'unknown command' in result.stderr
    result = cli('run', tmp_path/'nowhere', '--out', tmp_path/'work', check=2)
    assert 'Data folder not found' in result.stderr and 'Traceback' not in result.stderr
    (tmp_path/'empty').mkdir()
    result = cli('run', tmp_path/'empty', '--out', tmp_path/'work', check=2)
    assert 'No data set found' in result.stderr
    result = cli('run', tmp_path/'empty', '--preset', 'huge', check=2)
    assert 'Unknown preset' in result.stderr

def test_run_generic_layout(generic_run, datasets):
    work, result = generic_run
    metrics = json.loads((work/'metrics.json').read_text())
    assert 0 <= metrics['test']['map3'] <= 1 and 0 <= metrics['test']['accuracy'] <= 1
    assert metrics['test']['accuracy'] <= metrics['test']['map3']
    iterations = metrics['presets']['tiny']['selfverify']
    assert [row['iteration'] for row in iterations] == [0, 1]
    assert all(isinstance(row['n_accepted'], int) for row in iterations)
    audit = pd.read_csv(metrics['presets']['tiny']['audit_csv'])
    assert list(audit.columns) == ['clip', 'fold', 'iteration', 'given_label', 'predicted_label', 'p_given', 'p_predicted', 'accepted']
    test = pd.read_csv(Path(datasets['generic'])/'test.csv')
    submission = pd.read_csv(work/'submission.csv')
    assert submission.fname.tolist() == test.fname.tolist()
    assert all(len(labels.split()) == 3 for labels in submission.label)
    assert str(work/'metrics.json') in result.stdout and 'audit' in result.stdout
    # the demo data's broken files are reported and left out of training, and the empty test clip gets a fallback
    assert metrics['failed_train_clips'] and metrics['test']['failed_clips']

@pytest.mark.parametrize('layout', ['kaggle', 'zenodo'])
def test_run_other_layouts(datasets, tmp_path, layout):
    work = tmp_path/layout
    cli('run', datasets[layout], '--out', work, *FAST, check=0)
    metrics = json.loads((work/'metrics.json').read_text())
    assert metrics['layout'] == layout
    assert metrics['classes'] == (Path(datasets[layout])/'classes.txt').read_text().split()
    assert {'map3', 'accuracy', 'both'} <= set(metrics['test'])

def test_killed_run_resumes_to_the_same_result(generic_run, datasets, tmp_path):
    work = tmp_path/'killed'
    env = {**os.environ, 'PYTHONUNBUFFERED': '1'}
    proc = subprocess.Popen([*SELF, 'run', str(datasets['generic']), '--out', str(work), *FAST],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not (work/'tiny'/'fold_1'/'last.pth').exists(): time.sleep(0.1)
    assert proc.poll() is None, 'the run ended before it could be killed'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work/'metrics.json').exists()
    cli('run', datasets['generic'], '--out', work, *FAST, check=0)
    straight = json.loads((generic_run[0]/'metrics.json').read_text())
    resumed = json.loads((work/'metrics.json').read_text())
    assert resumed['test']['map3'] == pytest.approx(straight['test']['map3'], abs=1e-9)
    for resumed_row, straight_row in zip(resumed['presets']['tiny']['selfverify'], straight['presets']['tiny']['selfverify'], strict=True):
        assert resumed_row == pytest.approx(straight_row)
    pd.testing.assert_frame_equal(pd.read_csv(work/'submission.csv'), pd.read_csv(generic_run[0]/'submission.csv'))

def test_rerun_with_other_settings_is_refused(generic_run, datasets):
    work, _ = generic_run
    result = cli('run', datasets['generic'], '--out', work, '--preset', 'tiny', '--epochs', '3', '--no-progress', check=2)
    assert 'other settings' in result.stderr

def test_stage_commands(datasets, tmp_path):
    data, work = datasets['generic'], tmp_path/'stages'
    cli('prepare', data, '--out', work, '--no-progress', check=0)
    assert (work/'features'/'train'/'v1'/'summary.csv').exists()
    result = cli('folds', data, '--out', work, check=0)
    assert 'verified' in result.stdout and (work/'folds.csv').exists()
    cli('predict', data, '--out', work, '--preset', 'tiny', check=2)            # nothing trained yet: a clear error
    cli('train', data, '--out', work, '--preset', 'tiny', '--epochs', '2', '--no-progress', '--parallel', '2', check=0)
    assert all((work/'tiny'/f'fold_{k}'/'best.pth').exists() for k in range(4))
    result = cli('verify', data, '--out', work, '--preset', 'tiny', '--epochs', '2', '--iterations', '1', '--finetune-epochs', '1', '--no-progress', check=0)
    printed = [Path(line.rsplit('audit ', 1)[1]) for line in result.stdout.splitlines() if 'kept iteration' in line and 'audit ' in line]
    assert printed == [work/'tiny'/'selfverify'/'audit.csv'] and printed[0].exists(), result.stdout
    cli('predict', data, '--out', work, '--preset', 'tiny', check=0)
    result = cli('evaluate', data, '--out', work, check=0)
    assert 'MAP@3' in result.stdout and (work/'test_scores.json').exists()
    cli('submit', data, '--out', work, '--path', tmp_path/'my_submission.csv', check=0)
    assert len(pd.read_csv(tmp_path/'my_submission.csv')) == len(pd.read_csv(Path(data)/'test.csv'))

def test_tag_and_export(generic_run, tmp_path):
    work, _ = generic_run
    folder = tmp_path/'to_tag'
    folder.mkdir()
    sr = 44100
    sf.write(folder/'short.wav', 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(0.2 * sr)) / sr), sr)
    sf.write(folder/'long_stereo.wav', 0.1 * np.random.default_rng(0).normal(size=(sr * 20, 2)), sr, subtype='PCM_24')
    (folder/'corrupt.wav').write_bytes(b'RIFF\x00\x00not really audio')
    result = cli('tag', folder, '--model', work/'export', '--csv', tmp_path/'tags.csv', '--json', tmp_path/'tags.json',
                 '--timeline', tmp_path/'timeline.png', check=1)                # one unreadable file: exit 1, others tagged
    table = pd.read_csv(tmp_path/'tags.csv', keep_default_na=False)
    assert sorted(table.fname) == ['corrupt.wav', 'long_stereo.wav', 'short.wav']
    assert (table.error != '').tolist() == [name == 'corrupt.wav' for name in table.fname]
    assert len(json.loads((tmp_path/'tags.json').read_text())) == 3
    assert (tmp_path/'timeline.png').stat().st_size > 1000
    good = cli('tag', folder/'short.wav', '--model', work/'export', check=0)
    assert 'short.wav' in good.stdout
    cli('export', '--out', work, '--dest', tmp_path/'model', '--format', 'torch', '--onnx', check=0)
    assert (tmp_path/'model'/'config.json').exists() and list((tmp_path/'model').glob('*.onnx'))

def test_demo_quick_writes_a_report(tmp_path):
    "The README's main job, shortened: from nothing to a report folder."
    result = cli('demo', '--out', tmp_path/'demo', '--quick', '--no-progress', check=0)
    report = tmp_path/'demo'/'report'
    for name in ('metrics.json', 'summary.md', 'per_class_f1.png', 'confusion_matrix.png', 'selfverify_precision.png',
                 'silence_clipping.png', 'label_audit.csv'):
        assert (report/name).exists(), name
    metrics = json.loads((report/'metrics.json').read_text())
    assert 0 <= metrics['test']['map3'] <= 1
    precision = metrics['presets']['cpu']['selfverify_precision']   # the demo trains the `cpu` preset
    assert [row['iteration'] for row in precision] == [1, 2]
    assert 'synthetic' in (report/'summary.md').read_text()
    assert str(report/'summary.md') in result.stdout and 'self-verification iteration 2' in result.stdout

def test_a_bug_shows_its_traceback(tmp_path):
    "Only the project's user errors become one line and status 2; any other exception is a bug: traceback, status 1."
    (tmp_path/'broken_module.py').write_text("from fastcore.script import call_parse\n\n@call_parse\n"
                                             "def broken(data:str): # anything\n    raise KeyError('an internal key')\n")
    (tmp_path/'broken_command.py').write_text("import sys\nimport dcase_selfverify.cli as cli\nfrom broken_module import broken\n"
                                              "cli.COMMANDS['broken'] = broken\nsys.argv = ['dcase-selfverify', 'broken', 'x']\ncli.console()\n")
    result = subprocess.run([sys.executable, str(tmp_path/'broken_command.py')], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert 'Traceback' in result.stderr and "KeyError: 'an internal key'" in result.stderr

@pytest.fixture(scope='module')
def tiny_export(tmp_path_factory):
    "An exported ensemble of one untrained tiny network: enough to see how `tag` treats files it cannot read."
    from dcase_selfverify.model import build_model
    from dcase_selfverify.tagging import export_ensemble
    return export_ensemble([('tiny', [build_model('tiny', 3)])], ['a', 'b', 'c'], tmp_path_factory.mktemp('model')/'export')

def test_tag_missing_file_is_one_line(tiny_export, tmp_path):
    "A file that does not exist is the user's to fix: one line on stderr, status 2."
    result = cli('tag', tmp_path/'missing.wav', '--model', tiny_export, check=2)
    assert result.stderr.strip().splitlines() == [f"dcase-selfverify tag: error: {tmp_path/'missing.wav'}: no such file or folder"]

@pytest.mark.parametrize('name,content,reason', [('empty.wav', b'', 'empty file (0 bytes)'),
                                                 ('notes.wav', b'this is text, not audio\n' * 20, 'cannot decode audio')])
def test_tag_unreadable_file_keeps_its_row(tiny_export, tmp_path, name, content, reason):
    "An empty file and a text file named .wav are tagged as far as possible: their row says why, status 1, no traceback."
    (tmp_path/name).write_bytes(content)
    result = cli('tag', tmp_path/name, '--model', tiny_export, '--csv', tmp_path/'tags.csv', check=1)
    assert 'Traceback' not in result.stderr, result.stderr
    rows = pd.read_csv(tmp_path/'tags.csv', keep_default_na=False)
    assert rows.fname.tolist() == [str(tmp_path/name)] and reason in rows.error[0]
    assert reason in result.stdout

def test_user_errors_are_one_line(tmp_path):
    for args, message in ((['run', tmp_path/'nowhere'], 'Data folder not found'), (['run', tmp_path, '--preset', 'huge'], 'Unknown preset'),
                          (['train', tmp_path, '--folds', 'a,b'], 'comma-separated fold numbers'),
                          (['tag', tmp_path/'x.wav', '--model', tmp_path/'no_model'], 'No exported ensemble')):
        result = cli(*args, check=2)
        assert message in result.stderr and 'Traceback' not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

def test_run_with_a_strategy_and_a_rule(datasets, tmp_path):
    "`run --strategy NAME --rule NAME`: Lq initial training, then self-verification with the certified rule; `verify` prints paths that exist."
    work = tmp_path/'lq'
    result = cli('run', datasets['generic'], '--out', work, *FAST, '--strategy', 'lq+selfverify', '--rule', 'certified',
                 '--target-precision', '0.9', '--alpha', '0.1', check=0)
    metrics = json.loads((work/'metrics.json').read_text())
    assert metrics['strategy']['name'] == 'lq+selfverify' and metrics['strategy']['loss'] == 'lq_loss'
    rule = json.loads((work/'tiny_lq'/'selfverify_certified'/'rule_01.json').read_text())
    assert (rule['rule'], rule['target_precision'], rule['alpha']) == ('certified', 0.9, 0.1)
    assert metrics['presets']['tiny']['audit_csv'] == str(work/'tiny_lq'/'selfverify_certified'/'audit.csv')
    assert 'kept iteration' in result.stdout
    verify = cli('verify', datasets['generic'], '--out', work, '--preset', 'tiny', '--epochs', '2', '--iterations', '1', '--finetune-epochs', '1',
                 '--strategy', 'lq+selfverify', '--rule', 'certified', '--target-precision', '0.9', '--alpha', '0.1', '--no-progress', check=0)
    audit = verify.stdout.strip().split('audit ')[-1]
    assert Path(audit).exists(), verify.stdout
    result = cli('run', datasets['generic'], '--out', tmp_path/'bad', *FAST, '--strategy', 'magic', check=2)
    assert 'Unknown strategy' in result.stderr


@pytest.mark.parametrize('args, message', [
    (['run', '{data}', '--rule', 'bogus'], "Unknown rule 'bogus'; choose one of paper, authors, cleanlab, certified"),
    (['verify', '{data}', '--rule', 'bogus'], 'Unknown rule'),
    (['compare', '{data}', '--rules', 'paper,bogus'], 'Unknown rule'),
    (['run', '{data}', '--rule', 'certified', '--target-precision', '1.5'], '--target-precision must be between 0 and 1'),
    (['compare', '{data}', '--alpha', '0'], '--alpha must be between 0 and 1'),
    (['compare', '{data}', '--seeds', '0'], '--seeds must be at least 1')])
def test_bad_rules_fail_before_any_work(datasets, tmp_path, args, message):
    "A wrong rule or rule setting is one line, exit status 2, and nothing is written."
    work = tmp_path/'untouched'
    result = cli(*[a.format(data=datasets['generic']) for a in args], '--out', work, check=2)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not work.exists()
