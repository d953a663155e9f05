"""Training throughput: the fastai path (make_learner + fit: ExcerptDataLoader, MixUp, AuthorsAdam) against a plain PyTorch loop.

Both train the same network on the same batch size, cut the same random excerpts from one float16 spectrogram tensor with
one indexing operation, and mix each batch the same way (lambda ~ Beta(alpha, alpha), mixed inputs, loss mixed with lambda).
CPU: preset `tiny`, batch 32, fp32. CUDA: preset `paper`, batch 100, bf16 autocast + channels_last (`--compile` adds torch.compile).
Run from the repository root: `python bench/train_throughput.py` (writes the "## Training throughput" section of bench/RESULTS.md).
"""
import datetime, os, statistics, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch
import torch.nn.functional as F
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from results import BatchTimer, cpu_model, sync, write_section
from dcase_selfverify.core import get_preset
from dcase_selfverify.model import build_model
from dcase_selfverify.training import FoldData, make_learner, quiet

def synthetic_data(n_clips:int, n_frames:int, n_classes:int, device)->FoldData:
    "Random float16 spectrograms (on `device`) and labels; all clips train, a few validate."
    generator = torch.Generator().manual_seed(0)
    specs = torch.randn(n_clips, 128, n_frames, generator=generator).half().to(device)
    targets = torch.arange(n_clips) % n_classes
    return FoldData(specs, targets, np.arange(n_clips), np.arange(min(8, n_clips)), tuple(f'c{i}' for i in range(n_classes)))


def probe_model(n_classes:int)->torch.nn.Module:
    "A network with almost no compute: what remains of a step's time is the training loop's own overhead."
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, n_classes))

def fastai_rate(data, preset, device, fast, compile, warmup, timed, probe=False)->float:
    "Samples/s of `make_learner(...).fit` (MixUp 'fastai', AuthorsAdam, EpochSeed, Recorder, metrics; no progress bar)."
    preset = preset.replace(epoch_size=(warmup + timed + 1) * preset.batch_size)
    torch.manual_seed(0)
    model = probe_model(len(data.classes)) if probe else None
    learn = make_learner(data, preset, device, mixup='fastai', seed=0, fast=fast, compile=compile, model=model)
    timer = BatchTimer(warmup, timed, device)
    with quiet(learn): learn.fit(1, preset.lr, cbs=[timer])
    return timed * preset.batch_size / timer.seconds

def plain_rate(data, preset, device, fast, compile, warmup, timed, probe=False)->float:
    "Samples/s of a plain loop: the same excerpt cutting, mixup, model, Adam settings and autocast."
    torch.manual_seed(0)
    model = (probe_model(len(data.classes)) if probe else build_model(preset, len(data.classes))).to(device)
    if fast: model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr, betas=(0.9, 0.999), eps=1e-8)
    step_model = torch.compile(model) if compile else model
    specs, targets = data.specs, data.targets.to(device)
    beta = torch.distributions.Beta(torch.tensor(preset.mixup_alpha), torch.tensor(preset.mixup_alpha))
    generator = torch.Generator().manual_seed(0)
    n_clips, n_bins, n_frames = specs.shape
    bins = torch.arange(n_bins, device=device)[None, :, None]
    offsets = torch.arange(preset.excerpt_frames, device=device)[None, :]
    batch_size = preset.batch_size
    model.train()
    def step():
        clips = torch.randperm(n_clips, generator=generator)[:batch_size].to(device)
        starts = torch.randint(0, n_frames - preset.excerpt_frames + 1, (batch_size,), generator=generator).to(device)
        x = specs[clips[:, None, None], bins, (starts[:, None] + offsets)[:, None, :]].unsqueeze(1).float()
        if fast: x = x.contiguous(memory_format=torch.channels_last)
        y = targets[clips]
        lam = beta.sample((batch_size,)).to(device)
        partner = torch.randperm(batch_size, device=device)
        lam = torch.maximum(lam, 1 - lam)
        x = torch.lerp(x[partner], x, lam.view(-1, 1, 1, 1))
        with torch.autocast('cuda', dtype=torch.bfloat16, enabled=fast):
            logits = step_model(x)
        logits = logits.float()
        loss = (lam * F.cross_entropy(logits, y, reduction='none') + (1 - lam) * F.cross_entropy(logits, y[partner], reduction='none')).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    for _ in range(warmup): step()
    sync(device)
    start = time.perf_counter()
    for _ in range(timed): step()
    sync(device)
    return timed * batch_size / (time.perf_counter() - start)

def activation_bytes(preset_name:str, batch:int, frames:int)->tuple[int, int]:
    "(bytes of the tensors autograd saves for backward, bytes of the parameters) of one fp32 forward pass on the CPU."
    torch.manual_seed(0)
    model = build_model(get_preset(preset_name), 41).train()
    saved = {}
    def pack(tensor):
        if not isinstance(tensor, torch.nn.Parameter):
            storage = tensor.untyped_storage()
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor
    x = torch.randn(batch, 1, 128, frames)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = model(x).logsumexp(1).mean()
    del loss
    return sum(saved.values()), sum(p.numel() * p.element_size() for p in model.parameters())

def machine()->dict:
    return dict(nproc=subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip(), cpu=cpu_model(),
                torch=torch.__version__, load=os.getloadavg(),
                gpu=torch.cuda.get_device_name() if torch.cuda.is_available() else None)

@call_parse
def main(warmup:int=None,        # untimed batches before each timing (default: 3 CPU, 20 CUDA)
         batches:int=None,       # timed batches per repeat (default: 20 CPU, 100 CUDA)
         repeats:int=3,          # repeats; the median is reported
         compile:bool=False,     # torch.compile both (CUDA)
         activations:bool=True,  # measure the paper network's activation memory (CPU, batch 100 x 384 frames)
         write:bool=True,        # write the section of bench/RESULTS.md
        ):
    "Time training samples/s of the fastai path and of a plain PyTorch loop, in this process."
    on_gpu = torch.cuda.is_available()
    device = 'cuda' if on_gpu else 'cpu'
    preset = get_preset('paper') if on_gpu else get_preset('tiny', batch_size=32)
    warmup = warmup or (20 if on_gpu else 3)
    batches = batches or (100 if on_gpu else 10)
    if not on_gpu: torch.set_num_threads(int(subprocess.run(['nproc'], capture_output=True, text=True).stdout))
    info = machine()
    data = synthetic_data(512 if on_gpu else 256, 3000, 41, device)
    rates = {'plain': [], 'fastai': [], 'plain, probe network': [], 'fastai, probe network': []}
    for _ in range(repeats):       # interleaved so that a change of load hits both
        rates['plain'].append(plain_rate(data, preset, device, on_gpu, compile, warmup, batches))
        rates['fastai'].append(fastai_rate(data, preset, device, on_gpu, compile, warmup, batches))
    for _ in range(repeats):       # the loops' own cost per batch, with a network that computes almost nothing
        rates['plain, probe network'].append(plain_rate(data, preset, device, on_gpu, False, warmup, 10 * batches, probe=True))
        rates['fastai, probe network'].append(fastai_rate(data, preset, device, on_gpu, False, warmup, 10 * batches, probe=True))
    median = {k: statistics.median(v) for k, v in rates.items()}
    overhead_ms = 1000 * preset.batch_size * (1 / median['fastai, probe network'] - 1 / median['plain, probe network'])
    ratio = median['fastai'] / median['plain']
    setting = (f"preset `{preset.name}` (nf={preset.nf}), batch {preset.batch_size}, {preset.excerpt_frames}-frame excerpts of 3,000-frame "
               f"float16 spectrograms held on the {device}, mixup alpha {preset.mixup_alpha}, "
               + ('bf16 autocast + channels_last' if on_gpu else 'fp32') + (', torch.compile' if compile else ''))
    rows = [f"| {name} | {median[name]:.1f} | {1000 * preset.batch_size / median[name]:.2f} | {', '.join(f'{r:.1f}' for r in rates[name])} |" for name in rates]
    table = '\n'.join(['| path | samples/s (median) | ms per batch | repeats (samples/s) |', '|---|---|---|---|', *rows])
    print(table, f'\nfastai/plain = {ratio:.2f}; fastai overhead {overhead_ms:.2f} ms per batch')
    dataset_bytes = 9473 * 128 * 3000 * 2
    lines = ["## Training throughput", "",
             f"`python bench/train_throughput.py` ({datetime.date.today()}): {setting}; {warmup} warm-up batches, then {batches} timed batches, "
             f"{repeats} repeats (plain and fastai interleaved, same process), median.",
             f"Machine: `nproc` = {info['nproc']}, {info['cpu']}" + (f", {info['gpu']}" if info['gpu'] else '') +
             f"; torch {info['torch']}; load average {info['load'][0]:.2f} at the start (the machine is shared).", "",
             table, "", f"fastai / plain = **{ratio:.2f}** on the real network. With the probe network (one 3x3 convolution with stride 4, "
             f"pooling and a linear layer: almost no compute; {10 * batches} timed batches) the difference of the two loops' time per batch, "
             f"fastai's own cost, is {overhead_ms:.2f} ms per batch.", "",
             f"Device memory of the full FSDKaggle2018 training set: 9,473 clips x 128 bins x 3,000 frames x 2 bytes (float16) = "
             f"{dataset_bytes:,} bytes = {dataset_bytes / 1e9:.2f} GB ({dataset_bytes / 2**30:.2f} GiB)."]
    if activations:
        saved, params = activation_bytes('paper', 100, 384)
        print(f'activations saved for backward: {saved / 2**30:.2f} GiB; parameters {params / 2**20:.1f} MiB')
        lines.append(f"Activation memory of the paper network (nf=64), measured on the CPU: one fp32 forward pass of a batch of 100 x 384-frame "
                     f"excerpts in training mode keeps {saved:,} bytes ({saved / 2**30:.2f} GiB) of tensors for the backward pass "
                     f"(distinct storages recorded by `torch.autograd.graph.saved_tensors_hooks`, parameters excluded); the parameters "
                     f"take {params / 2**20:.1f} MiB (Adam adds twice that).")
    if write: write_section(REPO/'bench'/'RESULTS.md', '\n'.join(lines) + '\n', '## Training throughput')
