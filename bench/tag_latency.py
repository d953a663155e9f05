"""Latency of tagging one 30-s clip with a tiny 4-fold ensemble: from the shell, in-process (warm), and the import alone.

Run from the repository root: `python bench/tag_latency.py` (writes the "## Tagging latency" section of bench/RESULTS.md).
`--baseline FOLDER` names a checkout of the code to compare with (default /work/main when it exists): the same commands
run with that checkout first on PYTHONPATH. Each measurement is a fresh process; repetitions are interleaved and the
median is reported, with the load average before and after (the machine may be shared).
"""
import datetime, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np
import soundfile as sf
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO/'bench'))
from results import cpu_model, write_section

# What the thin `tag` command does (cli.tag after the lead's lazy-import rewrite): import only tagging's names, load, tag, print.
THIN_TAG = ("import sys; from dcase_selfverify.tagging import load_ensemble, tag_files, plot_timeline; "
            "print(tag_files(sys.argv[1], load_ensemble(sys.argv[2], 'cpu'), 3).to_string(index=False))")
# The same with torch's intra-op threads set to one: on a shared 2-core machine two threads wait on each other.
THIN_TAG_ONE_THREAD = "import torch; torch.set_num_threads(1); " + THIN_TAG
IMPORT_ONLY = "import dcase_selfverify.tagging"
# In-process: import, load the ensemble, one cold prediction, then warm repetitions of the front end, the networks and both.
IN_PROCESS = """
import json, statistics, sys, time
start = time.perf_counter()
from dcase_selfverify.tagging import load_ensemble
import torch
imported = time.perf_counter()
ensemble = load_ensemble(sys.argv[2], 'cpu')
loaded = time.perf_counter()
ensemble.predict_file(sys.argv[1])
first = time.perf_counter()
def median_of(call, n=int(sys.argv[3]), clock=time.perf_counter):
    times = []
    for _ in range(n):
        begin = clock(); call(); times.append(clock() - begin)
    return statistics.median(times)
specs = ensemble.file_spectrograms(sys.argv[1])
import dcase_selfverify
print(json.dumps({'code': dcase_selfverify.__file__, 'import': imported - start, 'load': loaded - imported, 'first_predict': first - loaded,
                  'predict_file': median_of(lambda: ensemble.predict_file(sys.argv[1])),
                  'predict_file_cpu': median_of(lambda: ensemble.predict_file(sys.argv[1]), clock=time.process_time),
                  'front_end': median_of(lambda: ensemble.file_spectrograms(sys.argv[1])),
                  'networks': median_of(lambda: ensemble.predict_spectrograms(specs)),
                  'networks_one_thread': (torch.set_num_threads(1), median_of(lambda: ensemble.predict_spectrograms(specs)))[1]}))
"""

def make_inputs(folder:Path, seconds:float=30.0)->tuple[Path, Path]:
    "A 30-s 44.1 kHz 16-bit clip (tones and noise after a little silence) and an exported 4-fold `tiny` ensemble of fresh networks."
    from dcase_selfverify.core import FSD_CLASSES, seed_everything
    from dcase_selfverify.model import build_model
    from dcase_selfverify.tagging import export_ensemble
    sr, rng = 44100, np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    signal = 0.3 * np.sin(2 * np.pi * np.where(t < seconds / 2, 440, 1250) * t) + 0.02 * rng.normal(size=len(t))
    signal[:sr // 4] = 0
    clip = folder/'clip.wav'
    sf.write(clip, signal.astype(np.float32), sr, subtype='PCM_16')
    seed_everything(0)
    models = [build_model('tiny', len(FSD_CLASSES)).eval() for _ in range(4)]
    return clip, export_ensemble([('tiny', models)], FSD_CLASSES, folder/'export')

def run_seconds(command:list[str], env:dict, cwd:Path)->tuple[float, float]:
    "Wall-clock and CPU (user + system) seconds of one command, run in `cwd`, which must succeed."
    cpu_before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(command, env=env, cwd=cwd, check=True, capture_output=True)
    wall, cpu_after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)

def code_env(code_root:Path)->dict:
    "The environment that puts `code_root`'s package first."
    return os.environ | {'PYTHONPATH': str(code_root), 'PYTHONWARNINGS': 'ignore'}

def shell_commands(clip:Path, export:Path)->dict[str, list[str]]:
    "The commands timed from the shell."
    console_script = Path(sys.executable).parent/'dcase-selfverify'
    if not console_script.exists(): console_script = Path(shutil.which('dcase-selfverify') or 'dcase-selfverify')
    return {'`dcase-selfverify tag clip.wav --model EXPORT` (the command-line module as it is)':
                [str(console_script), 'tag', str(clip), '--model', str(export), '--device', 'cpu'],
            '`python -c "<thin tag>"`: what the lazy `tag` command does': [sys.executable, '-c', THIN_TAG, str(clip), str(export)],
            '`python -c "<thin tag>"` with `torch.set_num_threads(1)` first': [sys.executable, '-c', THIN_TAG_ONE_THREAD, str(clip), str(export)],
            '`python -c "import dcase_selfverify.tagging"`': [sys.executable, '-c', IMPORT_ONLY],
            '`python -c "import torch"` (for scale)': [sys.executable, '-c', 'import torch'],
            '`python -c "pass"` (interpreter start)': [sys.executable, '-c', 'pass']}

def time_shell(commands:dict, roots:dict, repeats:int, cwd:Path)->dict:
    "Median wall and CPU seconds per (command, code root), and the wall times of each repetition; repetitions interleaved."
    times = {(name, label): [] for name in commands for label in roots}
    for _ in range(repeats):
        for name, command in commands.items():
            for label, root in roots.items():
                if label != 'this branch' and '(for scale)' in name or '(interpreter start)' in name and label != 'this branch': continue
                times[name, label].append(run_seconds(command, code_env(root), cwd))
    return {key: (statistics.median(wall for wall, _ in values), statistics.median(cpu for _, cpu in values), [wall for wall, _ in values])
            for key, values in times.items() if values}

def time_in_process(clip:Path, export:Path, roots:dict, repeats:int, cwd:Path)->dict:
    "In-process timings (one fresh process per code root, run in `cwd`)."
    result = {}
    for label, root in roots.items():
        done = subprocess.run([sys.executable, '-c', IN_PROCESS, str(clip), str(export), str(repeats)], env=code_env(root), cwd=cwd,
                              check=True, capture_output=True, text=True)
        result[label] = json.loads(done.stdout.strip().splitlines()[-1])
        if not Path(result[label]['code']).resolve().is_relative_to(Path(root).resolve()): raise RuntimeError(f"{label}: ran {result[label]['code']}, not {root}")
    return result

def report(shell:dict, in_process:dict, roots:dict, loads:tuple, repeats:int, clip_seconds:float)->str:
    "The RESULTS.md section."
    import torch
    labels = list(roots)
    lines = ['## Tagging latency', '',
             f"`python bench/tag_latency.py` ({datetime.date.today().isoformat()}): one {clip_seconds:.0f}-s clip (44.1 kHz 16-bit mono), "
             f"an exported ensemble of 4 `tiny` fold networks (nf=8, version-1 spectrograms), CPU, torch's default threads; "
             f"{repeats} repetitions per command, interleaved, median (seconds).",
             f"Machine: `nproc` = {os.cpu_count()}, {cpu_model()}; Python {platform.python_version()}, torch {torch.__version__}; "
             f"load average {loads[0]:.2f} before, {loads[1]:.2f} after (the machine is shared).",
             f"Code: `this branch` is {REPO}" + ''.join(f"; `{label}` is {root}" for label, root in roots.items() if label != 'this branch') + '. Every command runs in an empty folder, so that `python -c` (which puts the working directory first on `sys.path`) imports the code that PYTHONPATH names.', '',
             'Wall-clock seconds, with the CPU seconds (user + system, all threads) in brackets: under load the wall time grows with '
             'the other jobs on the machine, the CPU time much less.', '',
             '| from the shell | ' + ' | '.join(labels) + ' |', '|---|' + '---|' * len(labels)]
    for name in dict.fromkeys(name for name, _ in shell):
        cells = [f"{shell[name, label][0]:.2f} ({shell[name, label][1]:.2f})" if (name, label) in shell else '' for label in labels]
        lines.append(f'| {name} | ' + ' | '.join(cells) + ' |')
    lines += ['', '| in-process | ' + ' | '.join(labels) + ' |', '|---|' + '---|' * len(labels)]
    for key, name in [('import', 'import tagging'), ('load', 'load_ensemble'), ('first_predict', 'first predict_file (cold)'),
                      ('predict_file', 'predict_file, warm'), ('predict_file_cpu', '  its CPU seconds (all threads)'), ('front_end', '  of which the audio front end'),
                      ('networks', '  of which the 4 networks'), ('networks_one_thread', '  the 4 networks with one torch thread')]:
        lines.append(f'| {name} | ' + ' | '.join(f"{in_process[label][key]:.3f}" for label in labels) + ' |')
    return '\n'.join(lines) + '\n'

@call_parse
def main(repeats:int=5,                   # repetitions per command
         baseline:str='/work/main',       # another checkout to compare with ('' for none)
         write:bool=True,                 # write the section of bench/RESULTS.md
        ):
    "Time tagging one 30-s clip from the shell and in-process, and write bench/RESULTS.md's section."
    roots = {'this branch': REPO}
    if baseline and Path(baseline).resolve() != REPO and (Path(baseline)/'dcase_selfverify').is_dir(): roots['baseline'] = Path(baseline)
    with tempfile.TemporaryDirectory() as folder:
        clip, export = make_inputs(Path(folder))
        load_before = os.getloadavg()[0]
        # `python -c` puts the working directory first on sys.path: run outside any checkout, so that PYTHONPATH picks the code
        shell = time_shell(shell_commands(clip, export), roots, repeats, Path(folder))
        in_process = time_in_process(clip, export, roots, repeats, Path(folder))
        loads = (load_before, os.getloadavg()[0])
        text = report(shell, in_process, roots, loads, repeats, sf.info(clip).duration)
    print(text)
    for (name, label), (*_, values) in shell.items(): print(label, name, [round(v, 2) for v in values])
    if write: write_section(REPO/'bench'/'RESULTS.md', text, '## Tagging latency')
