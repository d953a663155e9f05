"Shared by the benchmark scripts: the machine they ran on, and their own section of bench/RESULTS.md."
import platform, re, time
from pathlib import Path
import torch
from fastai.callback.core import Callback, CancelFitException

def cpu_model()->str:
    "The CPU's model name."
    cpuinfo = Path('/proc/cpuinfo')
    match = re.search(r'model name\s*:\s*(.*)', cpuinfo.read_text()) if cpuinfo.exists() else None
    return match.group(1).strip() if match else (platform.processor() or 'unknown')

def write_section(path:Path, text:str, heading:str):
    "Replace (or append) the section under `heading` of RESULTS.md, leaving every other section as it is."
    old = path.read_text() if path.exists() else '# Benchmark results\n'
    pattern = re.compile(rf'^{re.escape(heading)}\n.*?(?=^## |\Z)', re.S | re.M)
    new = pattern.sub(lambda m: text, old) if pattern.search(old) else old.rstrip('\n') + '\n\n' + text
    path.write_text(new)

def sync(device):
    "Wait for the GPU's queued work (a no-op on the CPU), so that a clock reading means what it says."
    if str(device).startswith('cuda'): torch.cuda.synchronize()

class BatchTimer(Callback):
    "Time `timed` training batches after `warmup` ones, then stop the fit (no validation); the seconds end up in `seconds`."
    order = 100
    def __init__(self, warmup:int, timed:int, device): self.warmup, self.timed, self.device, self.count = warmup, timed, device, 0
    def after_batch(self):
        if not self.training: return
        self.count += 1
        if self.count == self.warmup:
            sync(self.device)
            self.start = time.perf_counter()
        elif self.count == self.warmup + self.timed:
            sync(self.device)
            self.seconds = time.perf_counter() - self.start
            raise CancelFitException
