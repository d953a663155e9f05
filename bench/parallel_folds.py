"""The demo's initial training on a CPU: four folds one after another (torch's default threads), against two folds at a time.

`python bench/parallel_folds.py [--out bench/out/parallel_folds]`, from the repository root. It builds the demo data (`demo.DEMO_SETTINGS`,
seed 0), extracts its features and folds once, then trains the `tiny` preset's four folds twice through the command line, each in a
work folder of its own that starts from the same features and folds:

- baseline: `dcase-selfverify train DATA --preset tiny`, folds one after another in one process, torch's default thread count;
- parallel: the same with `--parallel 2`, two fold processes at a time, each given its share of the cores as its thread count
  (`distributed.run_in_processes`: `OMP_NUM_THREADS` = cores // 2).

It writes the wall-clock seconds of each, their ratio, each fold's kept epoch and validation accuracy, and the machine's load to
its section of bench/RESULTS.md. The demo itself trains folds one after another; this measures what training them side by side
would save. Cost: about 7 minutes for the baseline and 4 to 5 for the parallel run on the 2-core machine.
"""
import datetime, os, shutil, subprocess, sys, time
from pathlib import Path
import pandas as pd
import torch
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO/'bench'))
from results import cpu_model, write_section
from dcase_selfverify.demo import DEMO_SETTINGS
from dcase_selfverify.demo_data import make_demo_dataset
from dcase_selfverify.work_folder import WorkFolder



def command(*args:str):
    "Run one `dcase-selfverify` command; its output goes to this process's."
    subprocess.run(['dcase-selfverify', *map(str, args)], check=True)


def kept_epochs(work:Path)->pd.DataFrame:
    "Each fold's kept epoch (lowest validation loss) and its validation accuracy."
    rows = []
    for fold, run in WorkFolder(work).trained_folds('tiny').items():
        history = pd.read_csv(run.history)
        best = history.loc[history.valid_loss.idxmin()]
        rows.append({'fold': fold, 'kept epoch': int(best.epoch), 'valid loss': round(float(best.valid_loss), 4), 'accuracy': round(float(best.accuracy), 3)})
    return pd.DataFrame(rows)


def table_text(table:pd.DataFrame)->str:
    "A DataFrame as a Markdown table."
    lines = ['| ' + ' | '.join(table.columns) + ' |', '|' + '---|' * len(table.columns)]
    return '\n'.join(lines + ['| ' + ' | '.join(str(v) for v in row) + ' |' for row in table.itertuples(index=False)])


@call_parse
def main(out:str='bench/out/parallel_folds',  # folder for the data and the two work folders (not committed)
         write:bool=True,                      # write the section of bench/RESULTS.md
        ):
    "Train the demo's folds one after another, then two at a time, from the same features and folds; write the times."
    out = Path(out)
    data = make_demo_dataset(out/'data', seed=0, progress=False, **DEMO_SETTINGS)
    base = out/'prepared'
    if not WorkFolder(base).folds_csv.is_file():
        command('prepare', data, '--out', base, '--preset', 'tiny', '--no-progress')
        command('folds', data, '--out', base)
    results, loads = {}, {}
    for name, options in (('baseline', []), ('parallel', ['--parallel', '2'])):
        work = out/name
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(base, work)
        loads[name] = os.getloadavg()[0]
        start = time.perf_counter()
        command('train', data, '--out', work, '--preset', 'tiny', '--no-progress', *options)
        results[name] = (time.perf_counter() - start, kept_epochs(work))
    seconds = {name: s for name, (s, _) in results.items()}
    print(seconds)
    folds = results['baseline'][1].merge(results['parallel'][1], on='fold', suffixes=(' (baseline)', ' (parallel)'))
    text = (f"## Parallel folds on a CPU\n\n`python bench/parallel_folds.py` ({datetime.date.today()}): the demo data (`DEMO_SETTINGS`, seed 0), "
            f"the `tiny` preset's four folds (40 epochs), trained from the same features and folds through `dcase-selfverify train`.\n"
            f"Machine: `nproc` = {os.cpu_count()}, {cpu_model()}; torch {torch.__version__}; 1-minute load average {loads['baseline']:.2f} "
            f"before the baseline, {loads['parallel']:.2f} before the parallel run, {os.getloadavg()[0]:.2f} at the end.\n\n"
            f"| run | wall s (4 folds) |\n|---|---|\n"
            f"| baseline: one fold after another, torch's default threads | {seconds['baseline']:.0f} |\n"
            f"| `--parallel 2`: two fold processes at a time, one thread each | {seconds['parallel']:.0f} |\n\n"
            f"parallel / baseline: {seconds['parallel'] / seconds['baseline']:.2f} of the wall time.\n\n"
            f"Each fold's kept epoch and validation accuracy (one thread sums in another order than two, so the models need not be identical):\n\n"
            f"{table_text(folds)}\n")
    print(text)
    if write: write_section(REPO/'bench'/'RESULTS.md', text, '## Parallel folds on a CPU')
