"""Every selection rule on the same first round of self-verification: the candidates and the verified validation clips of a work
folder's initial fold models (trained on all clips), judged once with K excerpts as self-verification judges them, then each
rule's choice and, where the data set knows the truth (`truth.csv`, as the demo data does), its label precision.

    python tools/rules_first_round.py DATA WORK [--preset tiny] [--seed S]

`--seed S` judges the models of a comparison's training seed S (`WORK/seed_S/`, or WORK itself for the first seed) with the
excerpts its first round drew.
"""
import argparse, json
import numpy as np
import pandas as pd
import torch
from dcase_selfverify.core import get_preset, label_indices
from dcase_selfverify.model import load_model
from dcase_selfverify.preprocessing import load_features
from dcase_selfverify.rules import SELECTION_RULES, Evidence, certified_threshold, make_rule
from dcase_selfverify.selfverify import candidate_table, judge_candidates, judge_validation
from dcase_selfverify.work_folder import WorkFolder

def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('data'); parser.add_argument('work'); parser.add_argument('--preset', default='tiny')
    parser.add_argument('--seed', type=int, default=0, help='training seed of a comparison (its models in WORK/seed_S unless S is the run seed)')
    args = parser.parse_args()
    work = WorkFolder(args.work)
    folds, preset = pd.read_csv(work.folds_csv), get_preset(args.preset)
    classes = sorted(folds.label.unique())
    specs = torch.from_numpy(load_features(work.features('train'), folds.fname, preset.version, preset.n_frames))
    candidates = candidate_table(folds, classes)
    fold_ids = sorted(folds.fold.unique())
    run_seed = work.read_run().get('seed', 0)
    models_folder = work.for_run('' if args.seed == run_seed else f'seed_{args.seed}')
    models = {f: load_model(models_folder.fold(preset, f)/'best.pth', preset, len(classes)) for f in fold_ids}
    targets, verified = label_indices(folds.label, classes), folds.manually_verified.astype(bool).to_numpy()
    validation = {f: (np.flatnonzero((folds.fold == f).to_numpy() & verified), targets[(folds.fold == f).to_numpy() & verified]) for f in fold_ids}
    probs = judge_candidates(models, specs, candidates, preset, seed=1000 * args.seed + 1, device='cpu')   # the excerpts of iteration 1
    evidence = Evidence(candidates.given.to_numpy(), probs, *judge_validation(models, specs, validation, preset, 1000 * args.seed + 1, 'cpu'))
    truth_file = f'{args.data}/truth.csv'
    truth = pd.read_csv(truth_file).set_index('fname').true_label if __import__('os').path.exists(truth_file) else None
    right = folds.label.to_numpy()[candidates.row.to_numpy()] == candidates.fname.map(truth).to_numpy() if truth is not None else None
    print(f"validation accuracy {(evidence.valid_probs.argmax(1) == evidence.valid_targets).mean():.3f} on {len(evidence.valid_targets)} clips; "
          f"{len(candidates)} candidates" + (f", label precision of all {right.mean():.3f}" if right is not None else ''))
    for name in SELECTION_RULES:
        accepted, _ = make_rule(name).select(evidence)
        precision = f", label precision {right[accepted].mean():.3f}" if right is not None and accepted.any() else ''
        print(f"{name}: {int(accepted.sum())} accepted{precision}")
    _, info, scan = certified_threshold(evidence)
    print('certified rule:', json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in info.items()}))
    for row in scan.itertuples():   # the fixed sequence of sets it tested, the last one the first that failed (if any)
        chosen = evidence.agrees & (evidence.probs.max(1) >= row.threshold)
        wrong = f", {int((~right[chosen]).sum())} in fact wrong" if right is not None else ''
        print(f"  threshold {row.threshold:.3f}: {row.accepted} clips, {row.disagreeing} confident disagreements, {row.valid_errors_above} of "
              f"{row.valid_above} validation clips above it wrong (e_U {row.error_upper:.3f}), at most {row.wrong_upper:.2f} wrong labels, "
              f"certified precision {row.precision_lower:.3f}{wrong}")
    errors = evidence.valid_probs.argmax(1) != evidence.valid_targets
    print('most confident validation errors:', np.sort(evidence.valid_probs.max(1)[errors])[::-1][:5].round(3).tolist())

if __name__ == '__main__': main()
