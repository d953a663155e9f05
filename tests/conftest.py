"Shared test data and the helpers that check results against references (SoX, librosa, madmom, balanced folds)."
from __future__ import annotations
from pathlib import Path
import numpy as np
import pandas as pd

def write_toy_folds(folder:Path, n_clips:int, n_frames:int=400, scripts:dict[str, str]|None=None)->Path:
    "`specs.npy` with `n_clips` clips of 3 classes whose energy sits in different bands, `folds.csv` with 4 folds, and `scripts` (name -> text)."
    rng = np.random.default_rng(0)
    labels = np.arange(n_clips) % 3
    specs = rng.normal(0, 1, (n_clips, 128, n_frames)).astype(np.float16)
    for i, label in enumerate(labels): specs[i, 40 * label:40 * label + 30] += 2
    np.save(folder/'specs.npy', specs)
    pd.DataFrame({'fname': [f'{i}.wav' for i in range(n_clips)], 'label': np.array(['a', 'b', 'c'])[labels],
                  'manually_verified': np.arange(n_clips) % 2 == 0,
                  'fold': (np.arange(n_clips) // 3) % 4}).to_csv(folder/'folds.csv', index=False)
    for name, text in (scripts or {}).items(): (folder/name).write_text(text)
    return folder


def sox_bounds(original:np.ndarray, # the signal SoX was given (mono)
               clipped:np.ndarray,  # SoX's output for it (mono)
              )->tuple[int, int]|None: # [start, end) of `clipped` within `original`, or None when it is empty
    "Locate SoX's clipped output within its input by cross-correlation (for checks against SoX)."
    if len(clipped) == 0: return None
    if len(clipped) >= len(original): return 0, len(original)
    from scipy.signal import correlate
    score = correlate(np.asarray(original, np.float64), np.asarray(clipped, np.float64), mode='valid', method='fft')
    start = int(np.argmax(score))
    return start, start + len(clipped)


def relative_error(ours:np.ndarray, theirs:np.ndarray)->float:
    "max |ours - theirs| / max |theirs|: the error measure of the fixture checks."
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    if ours.shape != theirs.shape: raise ValueError(f"shapes differ: {ours.shape} vs {theirs.shape}")
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def class_balance(folds:pd.DataFrame)->pd.Series:
    "Largest |clips of a class in a fold - its share count/n_folds| among verified, unverified and all clips."
    n_folds = int(folds.fold.max()) + 1
    parts = {'verified': folds[folds.manually_verified], 'unverified': folds[~folds.manually_verified], 'all': folds}
    def worst(part):
        if not len(part): return 0.0
        counts = pd.crosstab(part.label, part.fold).reindex(columns=range(n_folds), fill_value=0)
        return float((counts.sub(counts.sum(axis=1) / n_folds, axis=0)).abs().values.max())
    return pd.Series({name: worst(part) for name, part in parts.items()})
