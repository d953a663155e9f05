"Installing as in a Kaggle kernel: a wheel built with `pip wheel`, installed without an index, finding data under /kaggle/input."
import subprocess, sys, zipfile
from pathlib import Path
from dcase_selfverify import core
from dcase_selfverify.demo_data import make_demo_dataset

REPO = Path(__file__).resolve().parents[1]

def test_wheel_installs_offline_and_runs(tmp_path):
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', '-w', str(tmp_path/'dist'), str(REPO)],
                   check=True)
    wheel, = (tmp_path/'dist').glob('dcase_selfverify-*.whl')
    names = zipfile.ZipFile(wheel).namelist()
    for module in ('core', 'preprocessing', 'training', 'selfverify', 'evaluation', 'tagging', 'cli', 'review', 'review_render', 'review_server'):
        assert f'dcase_selfverify/{module}.py' in names
    for asset in ('review.html', 'review.css', 'review.js'): assert f'dcase_selfverify/review_assets/{asset}' in names
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith('entry_points.txt'))).decode()
    assert 'dcase-selfverify = dcase_selfverify.cli:main' in entry_points
    site = tmp_path/'site'
    subprocess.run([sys.executable, '-m', 'pip', 'install', '--no-index', '--no-deps', '-q', '--target', str(site), str(wheel)], check=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import dcase_selfverify.cli as cli; "
            "from dcase_selfverify.review_render import page_asset; assert page_asset('review.js').startswith(b\"'use strict'\"); "
            "print(cli.__file__); sys.exit(cli.main(['--help']))")
    result = subprocess.run([sys.executable, '-c', code, str(site)], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0].startswith(str(site))
    assert 'commands:' in result.stdout

def test_default_root_is_kaggle_input(tmp_path, monkeypatch):
    kaggle_input = tmp_path/'kaggle'/'input'
    make_demo_dataset(kaggle_input/'freesound-audio-tagging', layout='kaggle', n_classes=3, clips_per_class=6,
                      test_clips_per_class=2, max_duration=2.0, odd_formats=False, broken_files=False)
    (kaggle_input/'dcase-selfverify-wheel').mkdir()              # other attached data sets are ignored
    monkeypatch.setattr(core, 'KAGGLE_INPUT', kaggle_input)
    ds = core.find_dataset()
    assert ds.layout == 'kaggle' and ds.root == kaggle_input/'freesound-audio-tagging'
    assert len(ds.train) == 18
