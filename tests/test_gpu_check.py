"The prepared GPU check runs at toy size on the CPU (`--cpu --small`), so that it still works when someone has a GPU."
import os, subprocess, sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

def test_gpu_check_small_mode_on_cpu():
    results = REPO/'bench'/'RESULTS.md'
    before = results.read_text() if results.exists() else None
    env = {**os.environ, 'PYTHONPATH': str(REPO), 'CUDA_VISIBLE_DEVICES': ''}
    result = subprocess.run([sys.executable, str(REPO/'bench'/'gpu_check.py'), '--cpu', '--small'], capture_output=True, text=True,
                            env=env, cwd=REPO, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert '## GPU check' in out and '| no |' in out
    assert "loaders share the caller's tensor (no copy): True" in out and 'second epoch from `last.pth` worked: True' in out
    assert 'judging, 25 excerpts' in out and 'End to end: `run_pipeline`' in out and 'test MAP@3 None' not in out
    assert (results.read_text() if results.exists() else None) == before     # the small mode writes nothing
