"""One check of the training stack on a GPU machine: speed of the fastai path against a plain PyTorch loop, device memory,
prediction speed, and a short end-to-end run. Writes the "## GPU check" section of bench/RESULTS.md.

On a machine with one CUDA GPU, from the repository root (about 6 minutes expected on an H200; it must stay under 8):

    pip install -e .                      # with a package registry; then:
    python bench/gpu_check.py

Without a registry (Python 3.12, x86-64; the wheels of fastai, fastcore, librosa, soundfile and their pure-Python
dependencies, see ../shared/gpu-wheels/README.md):

    mkdir -p .whl && cp ../shared/gpu-wheels/*.whl .whl/ && echo /.whl/ >> .git/info/exclude
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    python3 bench/gpu_check.py

What it measures, all in one process:
1. samples/s of a plain PyTorch loop and of the project's fastai path (`training.make_learner(...).fit`) on the paper preset,
   batch 100, bf16 autocast + channels_last, 384-frame excerpts cut on the device from float16 spectrograms, mixup alpha 0.3,
   without and with torch.compile; each path is built (and compiled) once, then timed in interleaved repetitions. The plain
   loop draws its random numbers on the device and never reads a tensor back, so it is the loop's ceiling. Also counted:
   the host synchronisations per training batch of the fastai path (`torch.cuda.set_sync_debug_mode`).
2. peak device memory while training one fold (one epoch, validation and checkpoints included) and one fine-tuning round on
   a random float16 tensor shaped like FSDKaggle2018 (9,473 x 128 x 3,000, 7.3 GB), the memory left after `release_learner`,
   and that no loader copied the tensor.
3. clips/s of self-verification's 25-excerpt judging and of whole-clip test prediction, through `model.predict`.
4. a 2-epoch run of the `paper` preset on the demo data, end to end (features, folds, training, one self-verification round
   of one epoch, test prediction, evaluation).

`python bench/gpu_check.py --cpu --small` runs all of it at toy size on the CPU in well under a minute (tests/test_gpu_check.py
does, so that the script keeps working); it writes to bench/RESULTS.md only with `--write`.
"""
import datetime, io, os, platform, shutil, statistics, subprocess, sys, tempfile, time, warnings, contextlib
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from fastcore.script import call_parse, store_true

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'bench'))
sys.path.insert(0, str(REPO))
from results import BatchTimer, cpu_model, sync, write_section
from dcase_selfverify.core import get_preset
from dcase_selfverify.model import build_model, predict
from dcase_selfverify.training import FoldData, fit_resumable, make_learner, quiet, release_learner, train_fold

def random_data(n_clips:int, n_frames:int, n_classes:int, device, n_valid:int|None=None)->FoldData:
    "Random float16 spectrograms made on `device`; the last `n_valid` clips validate, the others train."
    generator = torch.Generator(device=device).manual_seed(0)
    specs = torch.randn(n_clips, 128, n_frames, generator=generator, device=device, dtype=torch.float16)
    n_valid = n_valid or max(8, n_clips // 10)
    return FoldData(specs, torch.arange(n_clips) % n_classes, np.arange(n_clips - n_valid), np.arange(n_clips - n_valid, n_clips),
                    tuple(f'c{i}' for i in range(n_classes)), np.ones(n_clips, bool))

class PlainLoop:
    "A hand-written training step: device-side excerpts, order and mixup (fastai's MixUp rule), bf16 autocast, torch Adam."
    def __init__(self, data:FoldData, preset, device, fast:bool, compile:bool):
        torch.manual_seed(0)
        self.model = build_model(preset, len(data.classes)).to(device).train()
        if fast: self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model = torch.compile(self.model) if compile else self.model
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=preset.lr, betas=(0.9, 0.999), eps=1e-8)
        self.specs, self.targets = data.specs, data.targets.to(device)
        self.device, self.fast, self.preset = device, fast, preset
        self.generator = torch.Generator(device=device).manual_seed(0)
        self.beta = torch.distributions.Beta(torch.tensor(preset.mixup_alpha, device=device), torch.tensor(preset.mixup_alpha, device=device))
        self.bins = torch.arange(self.specs.shape[1], device=device)[None, :, None]
        self.offsets = torch.arange(preset.excerpt_frames, device=device)[None, :]

    def step(self):
        batch, (n_clips, _, n_frames) = self.preset.batch_size, self.specs.shape
        clips = torch.randint(0, n_clips, (batch,), device=self.device, generator=self.generator)
        starts = torch.randint(0, n_frames - self.preset.excerpt_frames + 1, (batch,), device=self.device, generator=self.generator)
        x = self.specs[clips[:, None, None], self.bins, (starts[:, None] + self.offsets)[:, None, :]].unsqueeze(1).float()
        if self.fast: x = x.contiguous(memory_format=torch.channels_last)
        y = self.targets[clips]
        lam = self.beta.sample((batch,))
        lam = torch.maximum(lam, 1 - lam)
        partner = torch.randperm(batch, device=self.device, generator=self.generator)
        x = torch.lerp(x[partner], x, lam.view(-1, 1, 1, 1))
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=self.fast and str(self.device).startswith('cuda')):
            logits = self.step_model(x)
        logits = logits.float()
        loss = torch.lerp(F.cross_entropy(logits, y[partner], reduction='none'), F.cross_entropy(logits, y, reduction='none'), lam).mean()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def seconds(self, warmup:int, timed:int)->float:
        "Wall time of `timed` steps after `warmup` untimed ones."
        for _ in range(warmup): self.step()
        sync(self.device)
        start = time.perf_counter()
        for _ in range(timed): self.step()
        sync(self.device)
        return time.perf_counter() - start


class FastaiLoop:
    "The project's path: `make_learner` (ExcerptDataLoader, DeviceMixUp, AuthorsAdam, DeviceRecorder, progress callback) and `fit`."
    def __init__(self, data:FoldData, preset, device, fast:bool, compile:bool, batches:int):
        self.learn = make_learner(data, preset.replace(epoch_size=(batches + 2) * preset.batch_size), device, mixup='fastai',
                                  fast=fast, compile=compile)
        self.device, self.lr = device, preset.lr

    def seconds(self, warmup:int, timed:int)->float:
        timer = BatchTimer(warmup, timed, self.device)
        with quiet(self.learn): self.learn.fit(1, self.lr, cbs=[timer])
        return timer.seconds

def synchronisations_per_batch(loop:FastaiLoop, batches:int)->float|None:
    "Host waits for the device per training batch of the fastai path, as counted by torch's sync debug mode (CUDA only)."
    if not str(loop.device).startswith('cuda'): return None
    loop.seconds(2, 2)
    counted = {}
    for n in (batches // 4, batches):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            torch.cuda.set_sync_debug_mode('warn')
            try: loop.seconds(1, n)
            finally: torch.cuda.set_sync_debug_mode('default')
        counted[n] = sum('synchroniz' in str(w.message) for w in caught)
    small, large = batches // 4, batches
    return (counted[large] - counted[small]) / (large - small)

def throughput(data, preset, device, fast, compile, warmup, timed, repeats)->dict:
    "Samples/s of both loops, each built once, timed in interleaved repetitions; the fastai path's syncs per batch."
    loops = {'plain': PlainLoop(data, preset, device, fast, compile), 'fastai': FastaiLoop(data, preset, device, fast, compile, warmup + timed)}
    for loop in loops.values(): loop.seconds(warmup, 3)            # build, compile, warm up
    rates = {name: [] for name in loops}
    for _ in range(repeats):
        for name, loop in loops.items(): rates[name].append(timed * preset.batch_size / loop.seconds(warmup, timed))
    syncs = synchronisations_per_batch(loops['fastai'], timed)
    for loop in loops.values():
        if isinstance(loop, FastaiLoop): release_learner(loop.learn)
    del loops
    return {'rates': rates, 'syncs_per_batch': syncs}

def memory_check(data:FoldData, preset, device, folder:Path)->dict:
    "Peak device memory of one fold's epoch (then resumed for a second) and one fine-tuning round on `data`, memory after release, loader copies."
    on_gpu = str(device).startswith('cuda')
    data_bytes = data.specs.numel() * data.specs.element_size()
    if on_gpu: torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    learn = train_fold(data, preset, folder/'fold', epochs=1, device=device, progress=False)
    shared = learn.dls.train.specs.data_ptr() == data.specs.data_ptr() == learn.dls.valid.specs.data_ptr()
    peak_fold = torch.cuda.max_memory_allocated() if on_gpu else None
    release_learner(learn)
    learn = train_fold(data, preset, folder/'fold', epochs=2, device=device, progress=False)   # resumes: optimizer state onto the device
    resumed = learn.history.epoch.tolist() == [0, 1]
    model = learn.model
    release_learner(learn)
    tune = make_learner(data, preset.replace(epoch_size=10 * preset.batch_size), device, mixup=None, model=model)
    fit_resumable(tune, folder/'finetune', 1, preset.finetune_lr, 1, progress=False)
    shared &= tune.dls.train.specs.data_ptr() == data.specs.data_ptr()
    release_learner(tune)
    del model
    seconds = time.perf_counter() - started
    after = torch.cuda.memory_allocated() if on_gpu else None
    return dict(data_bytes=data_bytes, peak_fold=peak_fold, peak=torch.cuda.max_memory_allocated() if on_gpu else None,
                reserved=torch.cuda.max_memory_reserved() if on_gpu else None, after_release=after, shared=shared, resumed=resumed, seconds=seconds)

def prediction_speed(data:FoldData, preset, device, n_judge:int, n_test:int)->dict:
    "Clips/s of 25-excerpt judging and of whole-clip prediction through `model.predict` (a freshly built network)."
    model = build_model(preset, len(data.classes)).to(device)
    speeds = {}
    for name, count, kwargs in (('judging, 25 excerpts', n_judge, dict(n_excerpts=25, excerpt_frames=preset.excerpt_frames)), ('whole clips', n_test, {}),
                                ('whole clips, batch 64', n_test, dict(batch_size=64))):
        indices = np.arange(count) % len(data.specs)
        predict(model, data.specs, indices[:min(count, 64)], device=device, **kwargs)      # warm up
        sync(device)
        start = time.perf_counter()
        probs = predict(model, data.specs, indices, device=device, **kwargs)
        sync(device)
        speeds[name] = count / (time.perf_counter() - start)
        assert probs.shape == (count, len(data.classes)) and np.isfinite(probs).all()
    return speeds

def demo_run(folder:Path, small:bool, device)->dict:
    "A 2-epoch `run` of the `paper` preset (`tiny` when small) on the demo data, end to end; seconds and the test MAP@3."
    try: from dcase_selfverify.pipeline import run_pipeline
    except ImportError: from dcase_selfverify.cli import run_pipeline
    from dcase_selfverify.demo_data import make_demo_dataset
    settings = dict(n_classes=3, clips_per_class=10, test_clips_per_class=2, max_duration=2.0) if small else \
               dict(n_classes=10, clips_per_class=36, test_clips_per_class=8, max_duration=12.0)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', UserWarning)         # the demo data holds unreadable clips on purpose
        data = make_demo_dataset(folder/'data', **settings)
        preset = get_preset('tiny', n_frames=200, excerpt_frames=192, batch_size=8) if small else get_preset('paper')
        metrics = run_pipeline(data, folder/'work', presets=(preset,), epochs=2, iterations=1, finetune_epochs=1,
                               device=device, progress=False, export=False, log=lambda message: None)
    return dict(seconds=time.perf_counter() - started, map3=metrics.get('test', {}).get('map3'), settings=settings)

def machine(device)->dict:
    import fastai
    return dict(cpu=cpu_model(), nproc=os.cpu_count(), gpu=torch.cuda.get_device_name() if str(device).startswith('cuda') else None,
                torch=torch.__version__, cuda=torch.version.cuda, fastai=fastai.__version__, python=platform.python_version(),
                load=os.getloadavg()[0], date=str(datetime.date.today()))

def report(info:dict, setting:str, runs:dict, memory:dict, speeds:dict, demo:dict, total:float)->str:
    "The RESULTS.md section."
    lines = ["## GPU check", "", f"`python bench/gpu_check.py{' --cpu --small' if info['gpu'] is None else ''}` ({info['date']}): "
             f"{info['gpu'] or 'CPU'}; {info['cpu']}, {info['nproc']} CPUs, load average {info['load']:.2f} at the start; "
             f"torch {info['torch']} (CUDA {info['cuda']}), fastai {info['fastai']}, Python {info['python']}. Total {total:.0f} s.", "",
             f"Training throughput ({setting}), samples/s, median of interleaved repetitions:", "",
             "| torch.compile | plain loop | fastai path | fastai / plain | host syncs per batch (fastai) | repetitions plain; fastai |",
             "|---|---|---|---|---|---|"]
    for compiled, run in runs.items():
        plain, fast = statistics.median(run['rates']['plain']), statistics.median(run['rates']['fastai'])
        syncs = 'n/a (CPU)' if run['syncs_per_batch'] is None else f"{run['syncs_per_batch']:.2f}"
        lines.append(f"| {'yes' if compiled else 'no'} | {plain:,.0f} | {fast:,.0f} | **{fast / plain:.2f}** | {syncs} | "
                     f"{', '.join(f'{r:,.0f}' for r in run['rates']['plain'])}; {', '.join(f'{r:,.0f}' for r in run['rates']['fastai'])} |")
    gib = lambda n: 'n/a (CPU)' if n is None else f"{n / 2**30:.2f} GiB"
    lines += ["", f"Memory: one fold (1 epoch, validation, checkpoints; then resumed for a 2nd) and one 10-batch fine-tuning round on a random float16 tensor of "
              f"{memory['data_bytes'] / 2**30:.2f} GiB: peak allocated {gib(memory['peak_fold'])} during the fold, {gib(memory['peak'])} over both, "
              f"peak reserved {gib(memory['reserved'])}; allocated after `release_learner`: {gib(memory['after_release'])}; "
              f"loaders share the caller's tensor (no copy): {memory['shared']}; resuming the fold for a second epoch from `last.pth` worked: "
              f"{memory['resumed']}; {memory['seconds']:.0f} s.", "",
              "Prediction through `model.predict` (the same network, untrained; bf16 autocast on CUDA): " +
              '; '.join(f"{name} {rate:,.0f} clips/s" for name, rate in speeds.items()) + ".", "",
              f"End to end: `run_pipeline` on the demo data ({demo['settings']['n_classes']} classes x {demo['settings']['clips_per_class']} clips, "
              f"preset `{demo['preset']}`, 2 epochs, 1 self-verification round of 1 epoch): {demo['seconds']:.0f} s, test MAP@3 {demo['map3']}."]
    return '\n'.join(lines) + '\n'

@call_parse
def main(cpu:store_true=False,     # run on the CPU even when a GPU is present
         small:store_true=False,   # toy sizes (with --cpu: well under a minute)
         repeats:int=3,            # interleaved repetitions per loop
         compile:str='both',       # 'both', 'no' or 'yes': which torch.compile settings to time
         write:bool=None,          # write bench/RESULTS.md (default: yes unless --small)
        ):
    "Time and check the training stack on this machine's GPU (or, with --cpu --small, exercise this script quickly)."
    device = 'cpu' if cpu or not torch.cuda.is_available() else 'cuda'
    on_gpu, started = device == 'cuda', time.perf_counter()
    if on_gpu: torch.backends.cudnn.benchmark = True
    info = machine(device)
    preset = get_preset('tiny', batch_size=4, n_frames=200, excerpt_frames=192) if small else get_preset('paper')
    warmup, timed = (1, 3) if small else (10, 100 if on_gpu else 10)
    repeats = min(repeats, 2) if small else repeats
    settings = {'both': (False, True), 'no': (False,), 'yes': (True,)}[compile]
    if small and not on_gpu: settings = (False,)               # compiling on a CPU takes minutes
    data = random_data(64 if small else 512, preset.n_frames, 41, device)
    runs = {compiled: throughput(data, preset, device, on_gpu, compiled, warmup, timed, repeats) for compiled in settings}
    setting = (f"preset `{preset.name}` (nf={preset.nf}), batch {preset.batch_size}, {preset.excerpt_frames}-frame excerpts of "
               f"{preset.n_frames}-frame float16 spectrograms on the {device}, mixup alpha {preset.mixup_alpha}, "
               + ('bf16 autocast + channels_last' if on_gpu else 'fp32') + f"; {warmup} warm-up and {timed} timed batches, {repeats} repetitions")
    del data
    with tempfile.TemporaryDirectory() as scratch:
        full = random_data(24, 200, 41, device, n_valid=4) if small else random_data(9473, 3000, 41, device, n_valid=930)
        memory = memory_check(full, preset, device, Path(scratch))
        speeds = prediction_speed(full, preset, device, 4 if small else 2000, 8 if small else 3000)
        del full
        if on_gpu: torch.cuda.empty_cache()
        demo = {**demo_run(Path(scratch), small, device), 'preset': 'tiny' if small else 'paper'}
    text = report(info, setting, runs, memory, speeds, demo, time.perf_counter() - started)
    print(text)
    if write if write is not None else not small: write_section(REPO/'bench'/'RESULTS.md', text, '## GPU check')
