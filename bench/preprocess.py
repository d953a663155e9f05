"""Throughput of feature extraction: dcase_selfverify.preprocessing.extract_features against the authors' way.

Run from the repository root: `python bench/preprocess.py` (writes the "## Preprocessing" section of bench/RESULTS.md).
"""
import datetime, importlib.util, multiprocessing, os, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import numpy as np
import pandas as pd
import soundfile as sf
from fastcore.script import call_parse

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from results import cpu_model, write_section
import librosa
from dcase_selfverify.preprocessing import extract_features, _spectrogram_v2, _warm_up

SOX_CHAIN = 'norm -0.1 silence 1 0.025 0.15% norm -0.1 reverse silence 1 0.025 0.15% reverse'.split()

def _load_test_helpers():
    "The varied-clip generator of tests/test_preprocessing.py."
    spec = importlib.util.spec_from_file_location('preprocessing_tests', REPO/'tests'/'test_preprocessing.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def authors_one(path:str, out_dir:str, version:int)->int:
    "The authors' way for one file: a `sox` process writes the clipped wav, librosa loads and resamples it, then the spectrogram."
    clipped = Path(out_dir)/f'{Path(path).stem}.clipped.wav'
    try: subprocess.run(['sox', path, str(clipped), *SOX_CHAIN], check=True, capture_output=True)
    except subprocess.CalledProcessError: clipped = Path(path)       # "if it fails, the original audio is used"
    y, _ = librosa.load(clipped, sr=32000, mono=True)
    if len(y) == 0: y, _ = librosa.load(path, sr=32000, mono=True)
    if version == 1:
        magnitude = np.abs(librosa.stft(y, n_fft=1024, hop_length=192, window='hann', center=True, pad_mode='reflect'))
        weighted = librosa.perceptual_weighting(magnitude ** 2, librosa.fft_frequencies(sr=32000, n_fft=1024), ref=1.0, amin=1e-10, top_db=99.0)
        spec = librosa.feature.melspectrogram(S=weighted, sr=32000, n_mels=128)
    else: spec = _spectrogram_v2(y, 32000)      # stand-in for madmom 0.16.1, which no longer runs
    np.save(Path(out_dir)/f'{Path(path).stem}.npy', spec.astype(np.float32))
    return spec.shape[1]

def _authors_job(args): return authors_one(*args)

def authors_way(paths:list, out_dir:Path, version:int, processes:int)->float:
    "Seconds for the authors' way over `paths`, sequential (processes=1) or with a process pool."
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(p, str(out_dir), version) for p in paths]
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        if processes == 1:
            for job in jobs: _authors_job(job)
        else:
            with multiprocessing.get_context('fork').Pool(processes) as pool: pool.map(_authors_job, jobs, chunksize=1)
    return time.perf_counter() - start

def ours(clips:pd.DataFrame, cache:Path, version:int, workers:int)->float:
    "Seconds for extract_features into an empty cache."
    start = time.perf_counter()
    summary = extract_features(clips, cache, version=version, n_workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    assert summary.status.isin(['ok', 'silent', 'short']).all(), summary[summary.status == 'failed']
    return elapsed

@call_parse
def main(n_clips:int=160,       # number of generated clips (0.3 to 30 s)
         workers:int=2,          # worker processes for our extraction (and the parallel authors' way)
         seed:int=0,             # seed of the clip generator
         write:bool=True,        # write bench/RESULTS.md
        ):
    "Compare clips/s and times-real-time of extract_features with the authors' sox + librosa way."
    helpers = _load_test_helpers()
    work = Path(tempfile.mkdtemp(prefix='bench_preprocess_'))
    try:
        clips = helpers.write_varied_clips(work/'clips', n_clips, seed=seed, min_seconds=0.3, max_seconds=30.0)
        audio_seconds = sum(sf.info(p).duration for p in clips.path)
        with warnings.catch_warnings():      # lazy imports and caches of both ways, so that no timing includes them
            warnings.simplefilter('ignore')
            for version in (1, 2):
                _warm_up(version, 32000)
                (work/'warm').mkdir(exist_ok=True)
                authors_one(clips.path[0], str(work/'warm'), version)
        load = os.getloadavg()[0]
        rows = []
        for version in (1, 2):
            t_ours = ours(clips, work/f'ours{version}', version, workers)
            t_seq = authors_way(list(clips.path), work/f'authors{version}_seq', version, 1)
            t_par = authors_way(list(clips.path), work/f'authors{version}_par', version, workers)
            for name, seconds in [(f'ours, extract_features, {workers} workers', t_ours),
                                  ('authors: sox + librosa per file, sequential', t_seq),
                                  (f"authors: sox + librosa per file, {workers} processes", t_par)]:
                rows.append(dict(version=version, method=name, seconds=round(seconds, 2), clips_per_s=round(n_clips / seconds, 1),
                                 x_real_time=round(audio_seconds / seconds, 1), ours_speedup=round(seconds / t_ours, 2)))
        table = pd.DataFrame(rows)
        print(table.to_string(index=False))
        if write:
            v1 = table[table.version == 1].set_index('method')
            v2 = table[table.version == 2].set_index('method')
            ours1, ours2 = v1.iloc[0], v2.iloc[0]
            text = f"""## Preprocessing

`python bench/preprocess.py` ({datetime.date.today()}): {n_clips} generated clips (tests/test_preprocessing.py `write_varied_clips`, seed {seed}: tones, noise, bursts, decays, chirps, fades with silence and noise floors; 0.3 to 30 s, {audio_seconds:.0f} s of audio in all; mostly 44.1 kHz 16-bit mono, some 22.05/48 kHz, stereo, 24-bit).
Machine: `nproc` = {os.cpu_count()}, {cpu_model()}; load average {load:.2f} at the start (the machine is shared).

Each method starts from the wav files and ends with one spectrogram file per clip. Ours: `extract_features` into an empty cache (numpy SoX-silence clipping, soxr resampling, float16 `.npy` written atomically). Authors' way: one `sox` process per file writing the clipped wav, then `librosa.load(sr=32000)` (librosa 0.11, soxr_hq; the authors' 2018 librosa used resampy, which is slower), the spectrogram and `np.save`; version 2 uses this project's numpy version of madmom's filterbank in place of madmom (which no longer runs), so only the clipping, loading and resampling differ from theirs. Run sequentially as their scripts did, and with the same process count as ours.

| version | method | seconds | clips/s | x real time | ours faster by |
|---|---|---|---|---|---|
""" + ''.join(f"| {r.version} | {r.method} | {r.seconds} | {r.clips_per_s} | {r.x_real_time} | {r.ours_speedup}x |\n" for r in table.itertuples()) + f"""
Aims: at least 3x the authors' way, and at least 200x real time for version 1 on 2 cores. Version 1: {ours1.x_real_time}x real time, {v1.ours_speedup.iloc[1]}x the sequential authors' way, {v1.ours_speedup.iloc[2]}x the authors' way with {workers} processes. Version 2: {ours2.x_real_time}x real time, {v2.ours_speedup.iloc[1]}x / {v2.ours_speedup.iloc[2]}x.
"""
            write_section(REPO/'bench'/'RESULTS.md', text, '## Preprocessing')
            print('wrote', REPO/'bench'/'RESULTS.md')
    finally: shutil.rmtree(work, ignore_errors=True)
