"Training: a killed run resumes where it stopped and ends with the same weights as an uninterrupted one."
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from conftest import write_toy_folds
import torch

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent('''
    import sys, numpy as np, pandas as pd, torch
    torch.set_num_threads(1)
    from dcase_selfverify.training import fold_data, train_fold
    from dcase_selfverify.core import get_preset
    data_dir, out = sys.argv[1], sys.argv[2]
    specs = torch.from_numpy(np.load(f"{data_dir}/specs.npy"))
    folds = pd.read_csv(f"{data_dir}/folds.csv")
    preset = get_preset("tiny", epochs=int(sys.argv[3]), constant_epochs=1, batch_size=8, n_frames=400)
    data = fold_data(specs, folds, 0, ["a", "b", "c"])
    train_fold(data, preset, out, progress=False, device="cpu", seed=3)
''')

@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    "36 clips of 3 classes whose energy sits in different bands, 4 folds."
    folder = write_toy_folds(tmp_path_factory.mktemp('toy'), 36)
    (folder/'train.py').write_text(SCRIPT)
    return folder

def _run(toy_data, out, epochs, **kwargs):
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.Popen([sys.executable, str(toy_data/'train.py'), str(toy_data), str(out), str(epochs)], env=env, **kwargs)

def _weights(path):
    return torch.load(path, map_location='cpu', weights_only=False)['model']

def test_kill_and_resume_matches_uninterrupted(toy_data, tmp_path):
    epochs = 5
    assert _run(toy_data, tmp_path/'straight', epochs).wait() == 0
    killed = tmp_path/'killed'
    proc = _run(toy_data, killed, epochs)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        history = killed/'history.csv'
        if history.exists() and len(pd.read_csv(history)) >= 2: break
        time.sleep(0.05)
    assert proc.poll() is None, 'training finished before it could be killed'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(pd.read_csv(killed/'history.csv'))
    assert done_before < epochs
    assert _run(toy_data, killed, epochs).wait() == 0
    straight_history, resumed_history = pd.read_csv(tmp_path/'straight'/'history.csv'), pd.read_csv(killed/'history.csv')
    assert resumed_history.epoch.tolist() == list(range(epochs))
    pd.testing.assert_frame_equal(straight_history.drop(columns=['time'], errors='ignore'),
                                  resumed_history.drop(columns=['time'], errors='ignore'), rtol=1e-5)
    for name in ('last.pth', 'best.pth'):
        straight, resumed = _weights(tmp_path/'straight'/name), _weights(killed/name)
        for key in straight: torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-6)

def test_fast_path_on_cpu_uses_channels_last(toy_data):
    "The GPU fast path's layout code runs on the CPU too (mixed precision, CUDA-only in fastai, stays off)."
    from fastai.callback.fp16 import MixedPrecision
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import fold_data, make_learner
    specs = torch.from_numpy(np.load(toy_data/'specs.npy'))
    folds = pd.read_csv(toy_data/'folds.csv')
    data = fold_data(specs, folds, 0, ['a', 'b', 'c'])
    learn = make_learner(data, get_preset('tiny', batch_size=8, n_frames=400), device='cpu', fast=True)
    learn.dls.train.channels_last = True
    x, _ = learn.dls.train.one_batch()
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert learn.model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    assert np.isfinite(learn.recorder.values[-1][0])

def test_compiled_training_saves_plain_checkpoints(toy_data, tmp_path):
    "torch.compile (the GPU option) also runs on the CPU; checkpoints hold the plain network's weights."
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.model import build_model
    from dcase_selfverify.training import fold_data, train_fold
    specs = torch.from_numpy(np.load(toy_data/'specs.npy'))
    folds = pd.read_csv(toy_data/'folds.csv')
    learn = train_fold(fold_data(specs, folds, 0, ['a', 'b', 'c']), get_preset('tiny', epochs=1, batch_size=8, n_frames=400),
                       tmp_path, device='cpu', progress=False, compile=True)
    assert type(learn.model).__name__ == 'OptimizedModule'
    state = torch.load(tmp_path/'best.pth', map_location='cpu', weights_only=False)['model']
    build_model('tiny', 3).load_state_dict(state)                  # loads into an uncompiled network: no `_orig_mod.` prefixes
    assert np.isfinite(learn.history.valid_loss).all()
