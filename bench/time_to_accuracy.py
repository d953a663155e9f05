"""Time to accuracy on a CPU: validation accuracy (mean over folds) against wall-clock seconds, today's `tiny` against the `cpu` recipe.

Every recipe trains the same folds of the same data set in this one process, fold by fold, the recipes' order alternating
from fold to fold (ABC, CBA, ...) so that the load of a shared machine falls on all of them alike. Each fold model is trained
as the pipeline trains it (`training.train_fold`: checkpoints every epoch, model selection on the verified validation clips);
a callback notes the wall-clock seconds at the end of every epoch (validation included). The accuracy a recipe "reaches" is the
validation accuracy of the epoch the pipeline keeps (lowest validation loss), averaged over the folds.

Recipes: `tiny` (40 epochs, paper schedule), `tiny80` (the same at 80 epochs, the paper schedule's constant part scaled along)
and `cpu` (the new default of the demo; `core.PRESETS['cpu']`).

Data sets: `--data demo` makes the demo data (`demo.DEMO_SETTINGS`, seed 0) under OUT; `--data sounds` builds the real-audio set
with `bench/debian_sounds.py` (needs `apt-get download`); any other value is a data set folder.
Run from the repository root: `python bench/time_to_accuracy.py --data demo` (writes OUT/time_to_accuracy_demo.png and a CSV of every
epoch, and its section of bench/RESULTS.md). OUT (default `bench/out/`) is not committed. Cost on the demo data (one thread): per fold 180 CPU seconds for
`tiny` (measured), twice that for `tiny80`, and about 95 for `cpu` (40 epochs at batch 16 in bf16 autocast with channels_last; measured
2026-12-02): some 40 CPU minutes for four folds of one data set. To spread the folds over processes (or machines sharing OUT), run `--folds 0,1` and `--folds 2,3` side by side
with `--no-write`, then `--collect` to gather their CSVs into one plot and table.
"""
import datetime, json, os, sys, time
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO/'bench'))
from results import cpu_model
from dcase_selfverify.core import Preset, get_preset
from dcase_selfverify.pipeline import open_run, prepare_features, prepare_folds
from dcase_selfverify.training import fold_data, release_learner, scaled_constant_epochs, train_fold

class EpochClock(Callback):
    "Wall-clock and CPU seconds (this process, all threads) since the start of the fit at the end of every epoch (after validation)."
    order = 90
    def before_fit(self): self.start, self.cpu_start, self.seconds, self.cpu_seconds = time.perf_counter(), time.process_time(), [], []
    def after_epoch(self):
        self.seconds.append(time.perf_counter() - self.start)
        self.cpu_seconds.append(time.process_time() - self.cpu_start)

def recipe(name:str)->tuple[Preset, str]:
    "(preset, schedule) of a recipe name: 'tiny', 'tiny80' or a preset name."
    if name == 'tiny80':
        tiny = get_preset('tiny')
        return tiny.replace(name='tiny80', epochs=80, constant_epochs=scaled_constant_epochs(tiny, 80)), 'paper'
    preset = get_preset(name)
    return preset, preset.schedule

def load_data(data:Path, work:Path, presets:list[Preset]):
    "Features and folds of a data set, through the pipeline's own stages."
    ctx = open_run(data, work, presets, device='cpu', progress=False, log=lambda *a: None)
    prepare_features(ctx)
    return ctx, prepare_folds(ctx)

def train_recipe(ctx, folds:pd.DataFrame, name:str, fold:int, folder:Path, seed:int=0)->pd.DataFrame:
    "Train one fold with one recipe; its history with the seconds at each epoch's end."
    preset, schedule = recipe(name)
    data = fold_data(ctx.spectrograms('train', folds.fname, preset), folds, fold, ctx.ds.classes)
    clock = EpochClock()
    learn = train_fold(data, preset, folder, schedule=schedule, device='cpu', seed=seed + fold, progress=False, cbs=[clock])
    history = learn.history.assign(seconds=clock.seconds, cpu_seconds=clock.cpu_seconds, recipe=name, fold=fold)
    release_learner(learn)
    return history

def summary(histories:pd.DataFrame, recipes:list[str])->pd.DataFrame:
    "One row per recipe: epochs, seconds per fold, the kept epochs and their validation accuracy (mean over folds)."
    rows = []
    for name in recipes:
        runs = histories[histories.recipe == name]
        per_fold = [(fold, h.reset_index(drop=True)) for fold, h in runs.groupby('fold')]
        kept = [h.loc[h.valid_loss.idxmin()] for _, h in per_fold]
        n_epochs = len(per_fold[0][1])
        last = max(1, int(np.ceil(0.1 * n_epochs)))
        rows.append({'recipe': name, 'epochs': n_epochs, 'folds': len(per_fold),
                     'wall_s_per_fold': np.mean([h.seconds.iloc[-1] for _, h in per_fold]),
                     'cpu_s_per_fold': np.mean([h.cpu_seconds.iloc[-1] for _, h in per_fold]),
                     'kept_accuracy': np.mean([k.accuracy for k in kept]), 'kept_valid_loss': np.mean([k.valid_loss for k in kept]),
                     'kept_map3': np.mean([k.map3 for k in kept]),
                     'best_epochs': ' '.join(str(int(k.epoch)) for k in kept),
                     'folds_best_in_last_10pct': sum(int(k.epoch) >= n_epochs - last for k in kept)})
    return pd.DataFrame(rows).set_index('recipe')

def plot(histories:pd.DataFrame, recipes:list[str], path:Path, title:str):
    "Mean validation accuracy and loss over the folds against mean wall-clock seconds, one line per recipe."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for name in recipes:
        curve = histories[histories.recipe == name].groupby('epoch')[['seconds', 'accuracy', 'valid_loss']].mean()
        axes[0].plot(curve.seconds, curve.accuracy, '-', label=name)
        axes[1].plot(curve.seconds, curve.valid_loss, '-', label=name)
    axes[0].set_ylabel('validation accuracy (mean over folds)'); axes[1].set_ylabel('validation loss (mean over folds)')
    for ax in axes: ax.set_xlabel('wall-clock seconds per fold'); ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

def results_text(name:str, info:dict, table:pd.DataFrame)->str:
    "The section of bench/RESULTS.md for one data set."
    side_by_side = f" ({info['processes']} processes side by side; the load figures are the highest of them)" if info['processes'] > 1 else ''
    lines = [f"## Time to accuracy ({name})", '',
             f"`python bench/time_to_accuracy.py --data {name} --folds {info['folds']} --threads {info['threads']}` ({info['date']}): {info['data']}.",
             f"Machine: `nproc` = {info['nproc']}, {info['cpu']}; torch {torch.__version__}, {info['threads']} torch thread(s); "
             f"load average {info['load_start'][0]:.2f} at the start, {info['load_end'][0]:.2f} at the end (1-minute; the machine is shared). "
             f"All recipes of a fold trained in one process{side_by_side}, fold by fold, their order alternating. "
             "Seconds are per fold and include every epoch's validation; CPU seconds are the process's, all threads.", '',
             '| recipe | epochs | folds | wall s / fold | CPU s / fold | accuracy (kept epoch, mean over folds) | valid loss | MAP@3 | kept epochs | folds with the kept epoch in the last 10% |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for recipe, r in table.iterrows():
        lines.append(f"| {recipe} | {r.epochs} | {r.folds} | {r.wall_s_per_fold:.0f} | {r.cpu_s_per_fold:.0f} | {r.kept_accuracy:.3f} | "
                     f"{r.kept_valid_loss:.3f} | {r.kept_map3:.3f} | {r.best_epochs} | {r.folds_best_in_last_10pct} of {r.folds} |")
    if {'tiny', 'cpu'} <= set(table.index):
        ratio = table.wall_s_per_fold['cpu'] / table.wall_s_per_fold['tiny']
        cpu_ratio = table.cpu_s_per_fold['cpu'] / table.cpu_s_per_fold['tiny']
        lines += ['', f"cpu / tiny: wall time {ratio:.2f}, CPU time {cpu_ratio:.2f}; accuracy {table.kept_accuracy['cpu']:.3f} against "
                  f"{table.kept_accuracy['tiny']:.3f}" + (f" (tiny80: {table.kept_accuracy['tiny80']:.3f})" if 'tiny80' in table.index else '') + '.']
    return '\n'.join(lines) + '\n\n'

def data_folder(data:str, out:Path)->tuple[Path, str]:
    "The data set folder (built if needed) and its name in RESULTS.md."
    if data == 'demo':
        from dcase_selfverify.demo import DEMO_SETTINGS
        from dcase_selfverify.demo_data import make_demo_dataset
        return make_demo_dataset(out/'demo'/'data', seed=0, progress=False, **DEMO_SETTINGS), 'demo'
    if data == 'sounds':
        from debian_sounds import build
        return build(out/'debian_sounds'), 'sounds'
    return Path(data), Path(data).name

@call_parse
def main(data:str='demo',              # 'demo', 'sounds' (bench/debian_sounds.py) or a data set folder
         recipes:str='tiny,tiny80,cpu', # recipes, comma-separated
         folds:str='0,1,2,3',           # folds, comma-separated
         threads:int=0,                 # torch threads (0: torch's default)
         out:str='bench/out',           # data, work folders, the plots and the CSVs (not committed)
         collect:bool=False,            # train nothing: gather every CSV of this data set under OUT (runs of other folds in other processes)
         write:bool=True,               # write the data set's section of bench/RESULTS.md
        ):
    "Train every recipe on the same folds in this process; plot validation accuracy against seconds; write RESULTS.md."
    out = Path(out)
    if threads: torch.set_num_threads(threads)
    load_start = os.getloadavg()
    folder, name = data_folder(data, out)
    names = recipes.split(',')
    ctx, table = load_data(folder, out/name/'work', [recipe(n)[0] for n in names])
    if collect:
        parts = [pd.read_csv(p) for p in sorted(out.glob(f'time_to_accuracy_{name}_folds*.csv'))]
        histories = pd.concat(parts, ignore_index=True)
        meta = [json.loads(p.read_text()) for p in sorted(out.glob(f'time_to_accuracy_{name}_folds*.json'))]
        folds = ','.join(str(f) for f in sorted(histories.fold.unique()))
        load_start = tuple(max(m['load_start'][i] for m in meta) for i in range(3))
        load_end = tuple(max(m['load_end'][i] for m in meta) for i in range(3))
        processes, threads = len(meta), meta[0].get('threads', torch.get_num_threads())
    else:
        histories = []
        for i, fold in enumerate(int(f) for f in folds.split(',')):
            for n in (names if i % 2 == 0 else names[::-1]):
                history = train_recipe(ctx, table, n, fold, out/name/'runs'/n/f'fold_{fold}')
                histories.append(history)
                kept = history.loc[history.valid_loss.idxmin()]
                print(f"{n} fold {fold}: kept epoch {int(kept.epoch)} of {len(history)}, accuracy {kept.accuracy:.3f}, "
                      f"{history.seconds.iloc[-1]:.0f} s (CPU {history.cpu_seconds.iloc[-1]:.0f} s), load {os.getloadavg()[0]:.2f}", flush=True)
                pd.concat(histories).to_csv(out/f"time_to_accuracy_{name}_folds{folds.replace(',', '')}.csv", index=False)
        histories = pd.concat(histories, ignore_index=True)
        load_end, processes, threads = os.getloadavg(), 1, torch.get_num_threads()
        (out/f"time_to_accuracy_{name}_folds{folds.replace(',', '')}.json").write_text(json.dumps(dict(load_start=load_start, load_end=load_end, threads=threads)))
    histories = histories[histories.recipe.isin(names)]
    result = summary(histories, names)
    print(result.round(3).to_string())
    info = dict(date=datetime.date.today().isoformat(), folds=folds, threads=threads, nproc=os.cpu_count(), cpu=cpu_model(),
                load_start=load_start, load_end=load_end, processes=processes,
                data=f"{len(table)} training clips, {len(ctx.ds.classes)} classes, folder `{folder}`")
    plot(histories, names, out/f'time_to_accuracy_{name}.png', f"{name}: {info['date']}, load {load_start[0]:.1f}")
    if write:
        from results import write_section
        write_section(REPO/'bench'/'RESULTS.md', results_text(name, info, result), f"## Time to accuracy ({name})")
