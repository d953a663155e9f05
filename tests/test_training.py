"Training: a killed run resumes where it stopped and ends with the same weights as an uninterrupted one."
import contextlib, gc, io, os, signal, subprocess, sys, textwrap, time, weakref
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
    return write_toy_folds(tmp_path_factory.mktemp('toy'), 36, scripts={'train.py': SCRIPT})

def _run(toy_data, out, epochs, **kwargs):
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.Popen([sys.executable, str(toy_data/'train.py'), str(toy_data), str(out), str(epochs)], env=env, **kwargs)

def _weights(path):
    from dcase_selfverify.model import read_checkpoint
    return read_checkpoint(path)['model']          # weights_only=True: checkpoints hold tensors and plain containers only

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
    "The GPU fast path runs on the CPU too: channels_last, and bf16 autocast through `CPUAutocast` (fastai's `MixedPrecision` is CUDA-only)."
    from fastai.callback.fp16 import MixedPrecision
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import CPUAutocast, fold_data, make_learner
    specs = torch.from_numpy(np.load(toy_data/'specs.npy'))
    folds = pd.read_csv(toy_data/'folds.csv')
    data = fold_data(specs, folds, 0, ['a', 'b', 'c'])
    learn = make_learner(data, get_preset('tiny', batch_size=8, n_frames=400), device='cpu', fast=True)
    learn.dls.train.channels_last = True
    x, _ = learn.dls.train.one_batch()
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert learn.model.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(isinstance(cb, MixedPrecision) for cb in learn.cbs)
    assert any(isinstance(cb, CPUAutocast) for cb in learn.cbs)
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
    state = _weights(tmp_path/'best.pth')
    build_model('tiny', 3).load_state_dict(state)                  # loads into an uncompiled network: no `_orig_mod.` prefixes
    assert np.isfinite(learn.history.valid_loss).all()


HOST_READS = ('item', 'cpu', 'tolist', 'numpy', '__float__', '__format__')

@contextlib.contextmanager
def _counting_host_reads():
    "Count calls of the tensor methods that copy values back to the host."
    counts, originals = {name: 0 for name in HOST_READS}, {name: getattr(torch.Tensor, name) for name in HOST_READS}
    def counting(name):
        def wrapper(self, *args, **kwargs):
            counts[name] += 1
            return originals[name](self, *args, **kwargs)
        return wrapper
    for name in HOST_READS: setattr(torch.Tensor, name, counting(name))
    try: yield counts
    finally:
        for name, method in originals.items(): setattr(torch.Tensor, name, method)

def _small_data(n_clips=24, n_train=16, verified=None):
    from dcase_selfverify.training import FoldData
    specs = torch.randn(n_clips, 128, 200, generator=torch.Generator().manual_seed(0)).half()
    return FoldData(specs, torch.arange(n_clips) % 3, np.arange(n_train), np.arange(n_train, n_clips), ('a', 'b', 'c'), verified)

def test_no_host_reads_per_training_batch(tmp_path):
    "Reads of tensors back to the host do not grow with the number of training batches (fastai's own loop: 4 per batch)."
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import fit_resumable, make_learner
    data = _small_data()
    def reads(batches, resumable):
        preset = get_preset('tiny', batch_size=4, epoch_size=4 * batches, n_frames=200, excerpt_frames=192)
        learn = make_learner(data, preset, device='cpu')     # progress bar on, as in a normal run
        with _counting_host_reads() as counts, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if resumable: fit_resumable(learn, tmp_path/f'{batches}', 1, preset.lr, 1)
            else: learn.fit(1)
        return sum(counts.values())
    for resumable in (False, True):           # plain fit, and with the paper schedule and FoldCheckpoint
        few, many = reads(4, resumable), reads(24, resumable)
        assert (many - few) / 20 <= 0.1, (resumable, few, many)

def test_one_copy_of_the_spectrograms_and_released_learners(tmp_path):
    "2 folds of initial training and 2 fine-tuning rounds on the same FoldData never copy the spectrogram tensor."
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import fit_resumable, make_learner, release_learner, train_fold
    data = _small_data()
    specs, pointer = data.specs, data.specs.data_ptr()
    copies, loaders = [], []
    originals = {name: getattr(torch.Tensor, name) for name in ('to', 'clone', 'contiguous', 'float', 'half', 'cpu', 'pin_memory')}
    def watching(name):
        def wrapper(self, *args, **kwargs):
            result = originals[name](self, *args, **kwargs)
            if self.data_ptr() == pointer and self.numel() == specs.numel() and result.data_ptr() != pointer: copies.append(name)
            return result
        return wrapper
    preset = get_preset('tiny', epochs=1, constant_epochs=1, batch_size=4, n_frames=200, excerpt_frames=192, finetune_epochs=1)
    for name in originals: setattr(torch.Tensor, name, watching(name))
    try:
        refs = []
        for fold in range(2):
            learn = train_fold(data, preset, tmp_path/f'fold{fold}', device='cpu', progress=False, seed=fold)
            loaders += [learn.dls.train.specs.data_ptr(), learn.dls.valid.specs.data_ptr()]
            model = learn.model
            for iteration in range(2):     # fine-tuning as self-verification does it: no mixup, same FoldData
                tune = make_learner(data, preset, 'cpu', mixup=None, seed=iteration, model=model)
                fit_resumable(tune, tmp_path/f'fold{fold}'/f'sv{iteration}', 1, preset.finetune_lr, 1, progress=False)
                loaders += [tune.dls.train.specs.data_ptr(), tune.dls.valid.specs.data_ptr()]
                refs.append(weakref.ref(tune))
                release_learner(tune)
                del tune
            refs.append(weakref.ref(learn))
            release_learner(learn)
            del learn, model
    finally:
        for name, method in originals.items(): setattr(torch.Tensor, name, method)
    assert copies == [] and set(loaders) == {pointer}
    assert all(ref() is None for ref in refs)

def test_released_learner_goes_without_a_collection():
    "After release_learner, the last reference going frees the Learner and its model by reference counting alone."
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import make_learner, quiet, release_learner
    gc.collect()
    gc.disable()
    try:
        learn = make_learner(_small_data(), get_preset('tiny', batch_size=4, n_frames=200, excerpt_frames=192), device='cpu')
        with quiet(learn): learn.fit(1)
        learner, model = weakref.ref(learn), weakref.ref(learn.model)
        del learn
        assert learner() is not None                      # fastai's reference cycle keeps it alive
        release_learner(learner())
        assert learner() is None and model() is None
    finally: gc.enable()

def test_custom_loss_gets_the_verified_flags(tmp_path):
    "A loss with a `verified` parameter gets (logits, y, verified) in training, (logits, y) in validation; MixUp mixes both targets."
    import torch.nn.functional as F
    from dcase_selfverify.core import get_preset
    from dcase_selfverify.training import train_fold
    class RecordingLoss:
        y_int, reduction = True, 'mean'
        def __init__(self): self.calls = []
        def __call__(self, logits, targets, verified=None):
            self.calls.append((targets.clone(), None if verified is None else verified.clone(), self.reduction))
            return F.cross_entropy(logits, targets, reduction=self.reduction)
    data = _small_data(verified=np.arange(24) % 4 == 0)
    for mixup in ('fastai', 'authors', None):
        loss = RecordingLoss()
        learn = train_fold(data, get_preset('tiny', epochs=1, batch_size=4, n_frames=200, excerpt_frames=192), tmp_path/str(mixup), device='cpu',
                           progress=False, mixup=mixup, loss_func=loss)
        training = [(y, v, r) for y, v, r in loss.calls if v is not None]
        validation = [(y, v, r) for y, v, r in loss.calls if v is None]
        per_batch = 1 if mixup is None else 2                    # MixUp calls the loss on the batch and on its partners
        assert len(training) == per_batch * len(learn.dls.train) and len(validation) == len(learn.dls.valid)
        assert all(r == ('mean' if mixup is None else 'none') for _, _, r in training)
        flag_of = {int(c): bool(data.verified[c]) for c in data.train_idx}
        for y, v, _ in training:                                 # each clip's class is clip % 3 and its flag clip % 4 == 0
            assert v.dtype == torch.bool and len(v) == len(y)
        own = training[1::per_batch] if mixup else training
        assert sorted(torch.cat([v for _, v, _ in own]).tolist()) == sorted(flag_of.values())
        if mixup == 'authors':
            for (y1, v1, _), (y, v, _) in zip(training[0::2], training[1::2]): assert torch.equal(y1, y.flip(0)) and torch.equal(v1, v.flip(0))
