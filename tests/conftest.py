"Shared test data."
from pathlib import Path
import numpy as np
import pandas as pd

def write_toy_folds(folder:Path, n_clips:int, n_frames:int=400)->Path:
    "`specs.npy` with `n_clips` clips of 3 classes whose energy sits in different bands, and `folds.csv` with 4 folds."
    rng = np.random.default_rng(0)
    labels = np.arange(n_clips) % 3
    specs = rng.normal(0, 1, (n_clips, 128, n_frames)).astype(np.float16)
    for i, label in enumerate(labels): specs[i, 40 * label:40 * label + 30] += 2
    np.save(folder/'specs.npy', specs)
    pd.DataFrame({'fname': [f'{i}.wav' for i in range(n_clips)], 'label': np.array(['a', 'b', 'c'])[labels],
                  'manually_verified': np.arange(n_clips) % 2 == 0,
                  'fold': (np.arange(n_clips) // 3) % 4}).to_csv(folder/'folds.csv', index=False)
    return folder
