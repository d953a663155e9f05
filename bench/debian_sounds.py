"""A small real-audio data set with noisy labels, built from recorded drum and keyboard sounds that Debian packages ship.

Sources (fixed list, Debian 12 "bookworm" as this machine's apt sees it; `apt-get download`, about 17 MB, unpacked with
`dpkg-deb -x`, nothing installed):
- `hydrogen-data`: the GMRockKit drum kit of the Hydrogen drum machine (recorded acoustic drums, several velocity layers per
  piece: `Kick-Hard.wav`, `HatOpen-Soft.wav`, `Crash-Med.wav`, ...);
- `lmms-common`: LMMS's drum samples (`usr/share/lmms/samples/drums`: `kick01.ogg`, `snare_acoustic01.ogg`, `hihat_closed02.ogg`, ...);
- `bucklespring-data`: recordings of an IBM Model M keyboard, one press (`<key>-0.wav`) and one release (`<key>-1.wav`) per key.
Not used: MIDI soundfont renderings and desktop sound themes (kept for independent checks).

Labels come from the sources' own file names (`CLASS_RULES`: the first regular expression that matches the lower-cased stem):
Kick, Snare, Rimshot (side stick and rim shots), Hi-hat, Tom, Cymbal (crash, ride, splash, ride bell), Key_press, Key_release.
Stems matching none (claps, cowbell, shakers, zaps, ...) are left out. Sources are grouped by piece (the stem without its velocity
or number suffix, e.g. `Kick-Hard` -> `kick`); about a fifth of each class's groups (at least one, where a class has three or more)
feed only the test clips, the rest only the training clips.

A clip is a short recording of one class: a log-normal duration (median 2 s, as the demo data), hits at random onsets (0.7 to 4
per second), each a random source of the class at a random gain (-12 to 0 dB) and playback speed (0.9x to 1.1x), over a faint white
noise floor (-60 to -40 dB of the peak), peak-normalised, 44.1 kHz 16-bit mono.
Label noise as `demo_data` injects it, at FSDKaggle2018's rates: 40% of each class's training clips are verified; among the
unverified ones a per-class share drawn from `NOISE_RATE_RANGE` (5% to 35%) carries a wrong label, made in one of
`NOISE_KINDS` (similar 60%: a confusable class from `SIMILAR`; uniform 20%: any other class; mixed 20%: the clip also holds the
labelled class's sound 3 to 10 dB quieter), and 10% of the correctly labelled unverified clips hold a faint (-20 to -10 dB) second class.

Writes the generic layout: `train.csv` (fname,label,manually_verified), `train/`, `test.csv` (fname,label), `test/`, and `truth.csv`
(`demo_data.TRUTH_COLUMNS`'s first columns: fname, split, label, true_label, manually_verified, noise_kind, mixed_with, mix_db),
plus `sources.csv` (every source file, its class, group and split) and `manifest.json` (package versions, seed, counts).
`python bench/debian_sounds.py OUT` (seed 0: 8 classes, 40 training and 10 test clips per class). Nothing built is committed.
"""
import json, re, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import soundfile as sf
import soxr
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dcase_selfverify.core import save_csv, save_json
from dcase_selfverify.demo_data import DURATION_MEDIAN, DURATION_SIGMA, MIN_DURATION, NOISE_KINDS, NOISE_RATE_RANGE

PACKAGES = ('hydrogen-data', 'lmms-common', 'bucklespring-data')
SOURCE_DIRS = ('usr/share/hydrogen/data/drumkits/GMRockKit', 'usr/share/lmms/samples/drums', 'usr/share/buckle/wav')
CLASS_RULES = (   # (class, regular expression on the lower-cased file stem); the first match wins
    ('Rimshot', r'^(snarerimshot|sidestick|snare_rim|rim|nasty_rim)'), ('Snare', r'^snare'),
    ('Kick', r'^(kick|bassdrum)'), ('Hi-hat', r'^(hat|hihat)'), ('Tom', r'^tom'),
    ('Cymbal', r'^(crash|ride|24ride|splash|bell)'), ('Key_press', r'^[0-9a-f]{2}-0$'), ('Key_release', r'^[0-9a-f]{2}-1$'))
SIMILAR = {'Kick': ('Tom', 'Snare'), 'Snare': ('Rimshot', 'Tom', 'Kick'), 'Rimshot': ('Snare', 'Key_press'), 'Hi-hat': ('Cymbal', 'Snare'),
           'Tom': ('Kick', 'Snare'), 'Cymbal': ('Hi-hat',), 'Key_press': ('Key_release', 'Rimshot'), 'Key_release': ('Key_press',)}
SR = 44100

def fetch_sources(folder:Path)->pd.DataFrame:
    "Download and unpack `PACKAGES` into `folder` (once); one row per source file with its class and group."
    folder.mkdir(parents=True, exist_ok=True)
    versions = {}
    for package in PACKAGES:
        debs = sorted(folder.glob(f'{package}_*.deb'))
        if not debs:
            subprocess.run(['apt-get', 'download', package], cwd=folder, check=True, capture_output=True)
            debs = sorted(folder.glob(f'{package}_*.deb'))
        versions[package] = debs[-1].name.split('_')[1]
        if not (folder/package).is_dir(): subprocess.run(['dpkg-deb', '-x', str(debs[-1]), str(folder/package)], check=True)
    rows = []
    for package, sub in zip(PACKAGES, SOURCE_DIRS):
        for path in sorted((folder/package/sub).iterdir()):
            if path.suffix.lower() not in ('.wav', '.ogg', '.flac'): continue
            stem = path.stem.lower()
            label = next((name for name, rule in CLASS_RULES if re.search(rule, stem)), None)
            if label is None: continue
            group = stem.split('-')[0] if label.startswith('Key') else re.sub(r'([-_]?(hardest|hard|med|softest|soft|\d+))+$', '', stem)
            rows.append(dict(package=package, path=str(path), stem=path.stem, label=label, group=f'{package}:{group}'))
    sources = pd.DataFrame(rows)
    sources.attrs['versions'] = versions
    return sources

def split_sources(sources:pd.DataFrame, rng:np.random.Generator)->pd.DataFrame:
    "Mark about a fifth of each class's source groups (at least one where there are three or more) as test-only."
    sources = sources.assign(split='train')
    for label, part in sources.groupby('label'):
        groups = sorted(part.group.unique())
        n_test = max(1, round(0.2 * len(groups))) if len(groups) >= 3 else 0
        test = set(rng.choice(groups, n_test, replace=False)) if n_test else set()
        sources.loc[part.index[part.group.isin(test)], 'split'] = 'test'
    return sources

def read_source(path:str)->np.ndarray:
    "A source file as mono float64 at `SR` (soxr resamples the few 22.05 kHz ones)."
    y, sr = sf.read(path, dtype='float64', always_2d=True)
    return y.mean(1) if sr == SR else soxr.resample(y.mean(1), sr, SR)

def _hits(rng:np.random.Generator, pool:list[np.ndarray], n:int)->np.ndarray:
    "Hits of random sources of one class at random onsets, gains and speeds, filling `n` samples."
    out, now = np.zeros(n), 0.0
    rate = rng.uniform(0.7, 4.0)
    while now * SR < n:
        source = pool[rng.integers(len(pool))]
        speed = rng.uniform(0.9, 1.1)
        hit = np.interp(np.arange(0, len(source) - 1, speed), np.arange(len(source)), source)
        start = int(now * SR)
        length = min(len(hit), n - start)
        out[start:start + length] += 10 ** (rng.uniform(-12, 0) / 20) * hit[:length]
        now += rng.exponential(1 / rate) + 0.05
    return out

def render(rng:np.random.Generator, pools:dict, label:str, duration:float, mixed_with:str='', mix_db:float=0.0)->np.ndarray:
    "One clip of class `label`, with `mixed_with`'s sound `mix_db` dB below it if given; peak-normalised."
    n = max(int(duration * SR), 1)
    clip = _hits(rng, pools[label], n)
    if mixed_with:
        other = _hits(rng, pools[mixed_with], n)
        clip += other * (np.abs(clip).max() / max(np.abs(other).max(), 1e-9)) * 10 ** (mix_db / 20)
    peak = max(np.abs(clip).max(), 1e-9)
    clip += rng.standard_normal(n) * peak * 10 ** (rng.uniform(-60, -40) / 20)
    return clip / np.abs(clip).max() * 10 ** (rng.uniform(-6, -1) / 20)

def plan(rng:np.random.Generator, classes:list[str], clips_per_class:int, test_clips_per_class:int, verified_share:float=0.4)->pd.DataFrame:
    "Every clip's given and true label, verification flag and noise, as `demo_data` decides them."
    rows, count = [], 0
    for label in classes:
        order = rng.permutation(clips_per_class)
        n_verified = int(round(verified_share * clips_per_class))
        unverified = order[n_verified:]
        rate = rng.uniform(*NOISE_RATE_RANGE)
        low, high = int(np.ceil(NOISE_RATE_RANGE[0] * len(unverified))), int(np.floor(NOISE_RATE_RANGE[1] * len(unverified)))
        noisy = set(rng.choice(unverified, int(np.clip(round(rate * len(unverified)), low, high)), replace=False).tolist())
        others = [c for c in classes if c != label]
        for i in range(clips_per_class):
            row = dict(split='train', label=label, true_label=label, manually_verified=int(i in order[:n_verified]),
                       noise_kind='none', mixed_with='', mix_db=0.0)
            if i in noisy:
                kind = str(rng.choice(list(NOISE_KINDS), p=list(NOISE_KINDS.values())))
                pool = list(SIMILAR[label]) if kind == 'similar' or (kind == 'mixed' and rng.random() < 0.5) else others
                row.update(noise_kind=kind, label=str(rng.choice(pool)))
                if kind == 'mixed': row.update(mixed_with=row['label'], mix_db=round(rng.uniform(-10, -3), 2))
            elif not row['manually_verified'] and rng.random() < 0.1:
                row.update(mixed_with=str(rng.choice(others)), mix_db=round(rng.uniform(-20, -10), 2))
            rows.append(row)
        rows += [dict(split='test', label=label, true_label=label, manually_verified=1, noise_kind='none', mixed_with='', mix_db=0.0)
                 for _ in range(test_clips_per_class)]
    truth = pd.DataFrame(rows)
    truth.insert(0, 'fname', [f'{i:05d}_{int(h):08x}.wav' for i, h in enumerate(rng.integers(0, 16 ** 8, len(truth)))])
    truth['duration'] = np.round(np.clip(np.exp(rng.normal(np.log(DURATION_MEDIAN), DURATION_SIGMA, len(truth))), MIN_DURATION, 12.0), 3)
    return truth

def build(out:Path, seed:int=0, clips_per_class:int=40, test_clips_per_class:int=10)->Path:
    "Build the data set in `out` (skipped when its manifest says it was built with the same settings)."
    out = Path(out)
    settings = dict(packages=list(PACKAGES), seed=seed, clips_per_class=clips_per_class, test_clips_per_class=test_clips_per_class)
    if (out/'manifest.json').is_file() and json.loads((out/'manifest.json').read_text())['settings'] == settings: return out
    rng = np.random.default_rng(seed)
    sources = fetch_sources(out.parent/'debs')
    versions = sources.attrs['versions']
    classes = [name for name, _ in CLASS_RULES]
    audio = {}
    for path in sources.path:
        try: audio[path] = read_source(path)
        except sf.LibsndfileError: pass   # lmms-common's kick04.ogg is a WAV with a malformed header: left out
    sources = split_sources(sources[sources.path.isin(audio)].reset_index(drop=True), rng)
    pools = {split: {label: [audio[p] for p in part.path] for label, part in sources[sources.split == split].groupby('label')}
             for split in ('train', 'test')}
    pools['test'] = {label: pools['test'].get(label, pools['train'][label]) for label in classes}
    truth = plan(rng, classes, clips_per_class, test_clips_per_class)
    for row in truth.itertuples():
        clip = render(rng, pools[row.split], row.true_label, row.duration, row.mixed_with, row.mix_db)
        (out/row.split).mkdir(parents=True, exist_ok=True)
        sf.write(out/row.split/row.fname, clip, SR, subtype='PCM_16')
    train, test = truth[truth.split == 'train'], truth[truth.split == 'test']
    save_csv(out/'train.csv', train[['fname', 'label', 'manually_verified']])
    save_csv(out/'test.csv', test[['fname', 'label']])
    save_csv(out/'truth.csv', truth)
    save_csv(out/'sources.csv', sources)
    save_json(out/'manifest.json', dict(settings=settings, versions=versions, n_sources=sources.groupby(['label', 'split']).size().unstack(fill_value=0).to_dict('index'),
                                        wrong_labels=int((train.label != train.true_label).sum()), unverified=int((train.manually_verified == 0).sum())))
    return out

@call_parse
def main(out:str='bench/out/debian_sounds', # folder of the data set (the packages go beside it, in `debs/`)
         seed:int=0,                        # seed of every random decision
         clips_per_class:int=40,            # training clips per class
         test_clips_per_class:int=10,       # test clips per class
        ):
    "Build the real-audio data set and print its manifest."
    folder = build(Path(out), seed, clips_per_class, test_clips_per_class)
    print((folder/'manifest.json').read_text())
