"Distributed training: two gloo ranks on CPU under torchrun train one fold like one process with the whole batch."
import os, socket, subprocess, sys, textwrap
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from conftest import write_toy_folds
import torch

REPO = Path(__file__).resolve().parents[1]

# Run by torchrun (2 ranks) and by plain python (1 process): one fold, global batch 8, no mixup, and a model without the
# two parts whose behaviour depends on the rank on CPU: dropout (per-rank masks) and batch norm (per-rank statistics, no
# SyncBatchNorm on CPU). Every checkpoint write is logged with the writing rank.
EQUIV_SCRIPT = textwrap.dedent('''
    import os, sys, numpy as np, pandas as pd, torch
    torch.set_num_threads(1)
    import dcase_selfverify.training as training
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.model import build_model
    from dcase_selfverify.distributed import train_fold_distributed
    data_dir, out, log = sys.argv[1], sys.argv[2], sys.argv[3]
    rank = int(os.environ.get("RANK", 0))
    save = training.save_checkpoint
    def logged_save(path, obj):
        with open(log, "a") as f: f.write(f"{rank} {os.path.basename(path)}\\n")
        save(path, obj)
    training.save_checkpoint = logged_save
    def without_dropout_and_bn(module):
        for name, child in module.named_children():
            if isinstance(child, (torch.nn.BatchNorm2d, torch.nn.Dropout)): setattr(module, name, torch.nn.Identity())
            else: without_dropout_and_bn(child)
        return module
    specs = torch.from_numpy(np.load(f"{data_dir}/specs.npy"))
    folds = pd.read_csv(f"{data_dir}/folds.csv")
    preset = get_preset("tiny", epochs=2, constant_epochs=1, batch_size=8, lr=1e-3)
    data = training.fold_data(specs, folds, 0, ["a", "b", "c"])
    torch.manual_seed(0)
    model = without_dropout_and_bn(build_model(preset, 3))
    torch.save(model.state_dict(), f"{out}.initial.pth")
    train_fold_distributed(data, preset, out, mixup=None, progress=False, seed=3, model=model)
''')

@pytest.fixture(scope='module')
def toy_data(tmp_path_factory):
    "32 clips of 3 classes whose energy sits in different frequency bands, 4 folds, 400 frames."
    return write_toy_folds(tmp_path_factory.mktemp('toy'), 32, scripts={'equiv.py': EQUIV_SCRIPT})

def _env():
    env = {k: v for k, v in os.environ.items() if k not in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    return {**env, 'PYTHONPATH': str(REPO), 'OMP_NUM_THREADS': '1'}

def _torchrun(*args):
    "torchrun with 2 ranks on this machine; --standalone picks a free port."
    return [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', *args]

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]

def _check(result):
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

def _weights(path): return torch.load(path, map_location='cpu', weights_only=False)['model']

def test_cli_two_ranks_accelerate(toy_data, tmp_path):
    "The command line under `accelerate launch --multi_gpu` (which starts torchrun's agent; without CUDA the ranks use gloo)."
    out = tmp_path/'run'
    launcher = [sys.executable, '-m', 'accelerate.commands.launch', '--multi_gpu', '--num_processes', '2', '--num_machines', '1',
                '--mixed_precision', 'no', '--dynamo_backend', 'no', '--main_process_port', str(_free_port())]
    command = [*launcher, '-m', 'dcase_selfverify.distributed', '--specs', str(toy_data/'specs.npy'),
               '--folds', str(toy_data/'folds.csv'), '--fold', '1', '--out', str(out), '--preset', 'tiny',
               '--epochs', '2', '--batch-size', '8']
    _check(subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300))
    assert sorted(p.name for p in out.iterdir()) == ['best.pth', 'history.csv', 'last.pth']
    history = pd.read_csv(out/'history.csv')
    assert history.epoch.tolist() == [0, 1]
    assert np.isfinite(history[['train_loss', 'valid_loss']].to_numpy()).all()
    last = torch.load(out/'last.pth', map_location='cpu', weights_only=False)
    assert last['epoch'] == 1 and all(torch.isfinite(v.float()).all() for v in last['model'].values())
    # a rerun resumes at the end: nothing is trained or rewritten
    stamp = (out/'last.pth').stat().st_mtime_ns
    _check(subprocess.run(command, capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300))
    assert (out/'last.pth').stat().st_mtime_ns == stamp

def test_cli_needs_its_options(toy_data, tmp_path):
    result = subprocess.run([sys.executable, '-m', 'dcase_selfverify.distributed', '--specs', str(toy_data/'specs.npy')],
                            capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=120)
    assert result.returncode != 0 and '--folds' in result.stderr

def test_two_ranks_match_one_process(toy_data, tmp_path):
    "2 ranks x batch 4 (DDP, gloo) and 1 process x batch 8 end with the same weights and history; only rank 0 writes."
    runs = {}
    for name, prefix in (('ddp', _torchrun()), ('single', [sys.executable])):
        out, log = tmp_path/name, tmp_path/f'{name}.log'
        _check(subprocess.run([*prefix, str(toy_data/'equiv.py'), str(toy_data), str(out), str(log)],
                              capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300))
        runs[name] = out, log.read_text().split('\n')[:-1]
    (ddp_out, ddp_log), (single_out, single_log) = runs['ddp'], runs['single']
    assert {line.split()[0] for line in ddp_log} == {'0'}            # rank 1 never wrote
    assert sorted(ddp_log) == sorted(single_log)                     # the same files, as often as one process writes them
    ddp_history, single_history = pd.read_csv(ddp_out/'history.csv'), pd.read_csv(single_out/'history.csv')
    pd.testing.assert_frame_equal(ddp_history, single_history, rtol=1e-4, atol=1e-6)
    initial = torch.load(tmp_path/'single.initial.pth', weights_only=False)
    ddp_weights, single_weights = _weights(ddp_out/'last.pth'), _weights(single_out/'last.pth')
    moved = max(float((single_weights[k] - initial[k]).abs().max()) for k in initial)
    assert moved > 1e-3                                              # training changed the weights far more than the tolerance
    # (fastai's own contiguous sharding, rank r taking the r-th part of the epoch, ends about 7e-3 away on this data)
    for key in single_weights: torch.testing.assert_close(ddp_weights[key], single_weights[key], rtol=1e-4, atol=5e-5)
