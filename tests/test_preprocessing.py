"""Tests of dcase_selfverify.preprocessing: reference fixtures, SoX on generated clips, bad inputs, the feature cache.

Relative error of a spectrogram = max |ours - reference| / max |reference| over the whole array (`relative_error`).
"""
import os, shutil, signal, subprocess, sys, textwrap, time
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dcase_selfverify.preprocessing import (AudioError, FeatureCacheError, SILENCE_PEAK, SOX_PEAK, clip_features, clip_silence,
                                            content_bounds, extract_features, fix_length, load_audio, load_features, read_audio,
                                            resample, spectrogram)
from conftest import relative_error, sox_bounds

FIXTURES = REPO/'reference'   # outputs of SoX, librosa and madmom on small inputs (reference/README.md)
AUDIO_NAMES = ['empty', 'noise_burst', 'pluck_padded', 'quiet_tone', 'silence', 'speech', 'stereo48k_24bit', 'sweep',
               'tone22k', 'very_short']
FIXTURE_NAMES = [name for name in AUDIO_NAMES if name != 'empty']   # madmom and librosa fail on the empty file
SOX_CHAIN = 'norm -0.1 silence 1 0.025 0.15% norm -0.1 reverse silence 1 0.025 0.15% reverse'.split()

@pytest.fixture(scope='module')
def sox():
    "The SoX program (Debian package `sox`): required, so its absence fails these tests instead of skipping them."
    program = shutil.which('sox')
    if program is None: pytest.fail('the SoX program `sox` is not on PATH: install it (Debian/Ubuntu: apt-get install sox)')
    return program


# ---------------------------------------------------------------- generated audio
def synth_clip(kind:str, seconds:float, sr:int, rng:np.random.Generator)->np.ndarray:
    "A varied test signal: content of some `kind` with leading/trailing silence or a low noise floor."
    n = max(int(seconds * sr), 1)
    t = np.arange(n) / sr
    lead, tail = (rng.uniform(0, 0.35) * seconds for _ in range(2))
    envelope = ((t >= lead) & (t <= seconds - tail)).astype(np.float64)
    freq = rng.uniform(80, 6000)
    if kind == 'tone': content = np.sin(2 * np.pi * freq * t + rng.uniform(0, 6.3))
    elif kind == 'noise': content = rng.normal(0, 0.3, n)
    elif kind == 'decay':
        onset = lead
        content = np.sin(2 * np.pi * freq * t) * np.exp(-np.clip(t - onset, 0, None) * rng.uniform(2, 30)) * (t >= onset)
        envelope = np.ones(n)
    elif kind == 'chirp': content = np.sin(2 * np.pi * (freq + 2000 * t / seconds) * t)
    elif kind == 'bursts':
        content = rng.normal(0, 0.3, n) * (np.sin(2 * np.pi * rng.uniform(1, 6) * t) > 0.6)
    elif kind == 'fade':
        content = np.sin(2 * np.pi * freq * t) * np.minimum(1, np.maximum(0, (t - lead) / max(seconds / 3, 1e-3)))
        envelope = (t <= seconds - tail).astype(np.float64)
    else: raise ValueError(kind)
    y = rng.uniform(0.05, 0.9) * content * envelope
    floor = rng.choice([0.0, 1e-5, 1e-4, 5e-4])   # none, far below, below and near SoX's 0.15 % threshold
    return (y + rng.normal(0, floor, n)).clip(-1, 1)

def write_varied_clips(folder:Path, n:int, seed:int=0, min_seconds:float=0.3, max_seconds:float=6.0)->pd.DataFrame:
    "Write `n` varied 16-bit clips (mostly 44.1 kHz mono, some 22.05/48 kHz, stereo or 24-bit); return fname, path."
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    kinds = ['tone', 'noise', 'decay', 'chirp', 'bursts', 'fade']
    rows = []
    for i in range(n):
        sr = int(rng.choice([44100] * 6 + [22050, 48000]))
        seconds = float(np.exp(rng.uniform(np.log(min_seconds), np.log(max_seconds))))
        y = synth_clip(kinds[i % len(kinds)], seconds, sr, rng)
        if i % 9 == 4: y = np.stack([y, 0.5 * y], axis=1)
        path = folder/f'clip{i:03d}.wav'
        sf.write(path, y, sr, subtype='PCM_24' if i % 7 == 3 else 'PCM_16')
        rows.append(dict(fname=path.name, path=str(path)))
    return pd.DataFrame(rows)

def run_sox(sox:str, src:Path, dst:Path):
    subprocess.run([sox, str(src), str(dst), *SOX_CHAIN], check=True, capture_output=True)


# ---------------------------------------------------------------- fixtures
def test_fixture_folders_complete():
    "Every reference file is there: a missing one is an error, never a skipped check."
    for folder in ['audio', 'audio32k', 'sox_clipped']:
        assert sorted(p.stem for p in (FIXTURES/folder).glob('*.wav')) == AUDIO_NAMES, folder
    for folder in ['librosa_v1', 'madmom_v2']:
        assert sorted(p.stem for p in (FIXTURES/folder).glob('*.npy')) == FIXTURE_NAMES, folder

@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_spectrogram_v1_matches_librosa_fixture(name):
    y = load_audio(FIXTURES/'audio32k'/f'{name}.wav')
    reference = np.load(FIXTURES/'librosa_v1'/f'{name}.npy')
    ours = spectrogram(y, 32000, version=1)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert relative_error(ours, reference) < 1e-4

@pytest.mark.parametrize('name', FIXTURE_NAMES)
def test_spectrogram_v2_matches_madmom_fixture(name):
    y = load_audio(FIXTURES/'audio32k'/f'{name}.wav')
    reference = np.load(FIXTURES/'madmom_v2'/f'{name}.npy').T
    ours = spectrogram(y, 32000, version=2)
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert relative_error(ours, reference) < 1e-3

def test_relative_error_detects_differences():
    reference = np.linspace(0, 2, 100).reshape(4, 25)
    assert relative_error(reference, reference) == 0
    assert relative_error(reference * 1.01, reference) == pytest.approx(0.01)
    with pytest.raises(ValueError, match='shapes differ'): relative_error(reference[:, :3], reference)

@pytest.mark.parametrize('name', AUDIO_NAMES)
def test_clip_silence_matches_sox_fixture(name):
    src = FIXTURES/'audio'/f'{name}.wav'
    if name == 'empty':
        with pytest.raises(AudioError, match='no samples'): read_audio(src)
        return
    y, sr = read_audio(src)
    sox_out, _ = read_audio(FIXTURES/'sox_clipped'/f'{name}.wav')
    ours = content_bounds(y, sr)
    if name == 'silence':   # 1-LSB dither: no content for us, amplified noise for SoX (documented difference)
        assert np.abs(y).max() <= SILENCE_PEAK and ours is None
        np.testing.assert_array_equal(clip_silence(y, sr), y)
        return
    theirs = sox_bounds(y, sox_out)
    assert abs(ours[0] - theirs[0]) <= 0.010 * sr and abs(ours[1] - theirs[1]) <= 0.010 * sr, (ours, theirs)
    clipped = clip_silence(y, sr)
    assert len(clipped) == ours[1] - ours[0]
    assert np.abs(clipped).max() == pytest.approx(SOX_PEAK, rel=1e-5)
    # the clipped signal is SoX's output up to its 16-bit dither (for stereo, SoX's peak is over both channels)
    if ours == theirs and sf.info(src).channels == 1: assert np.abs(clipped - sox_out).max() < 3 / 32768


# ---------------------------------------------------------------- SoX on varied clips
def _sox_agreement(sox:str, clips:pd.DataFrame, folder:Path)->pd.DataFrame:
    rows = []
    for fname, path in zip(clips.fname, clips.path):
        try: y, sr = read_audio(path)
        except AudioError: continue
        out = folder/f'sox_{fname}'
        run_sox(sox, Path(path), out)
        sox_out = sf.read(out, dtype='float32', always_2d=True)[0].mean(axis=1)
        ours, theirs = content_bounds(y, sr), sox_bounds(y, sox_out)
        if ours is None or theirs is None:
            # both see no content, or ours sees digital silence (documented)
            agree = (ours is None and theirs is None) or (ours is None and np.abs(y).max() <= SILENCE_PEAK)
        else: agree = abs(ours[0] - theirs[0]) <= 0.010 * sr and abs(ours[1] - theirs[1]) <= 0.010 * sr
        rows.append(dict(fname=fname, sr=sr, n=len(y), ours=ours, sox=theirs, agree=agree))
    return pd.DataFrame(rows)

def test_clip_silence_matches_sox_on_generated_clips(sox, tmp_path):
    clips = write_varied_clips(tmp_path/'clips', 48, seed=1)
    table = _sox_agreement(sox, clips, tmp_path)
    assert len(table) == 48
    assert table.agree.mean() >= 0.95, table[~table.agree]
    assert table.ours.map(lambda b: b is not None and b[0] > 0).sum() >= 10    # the set really has leading silence to cut

def test_clip_silence_matches_sox_on_demo_dataset(sox, tmp_path):
    from dcase_selfverify.core import find_dataset
    from dcase_selfverify.demo_data import make_demo_dataset
    root = make_demo_dataset(tmp_path/'demo', seed=0, n_classes=6, clips_per_class=8, test_clips_per_class=1, max_duration=8.0)
    train = find_dataset(root, check_files=False).train
    table = _sox_agreement(sox, train, tmp_path)
    assert len(table) >= 30
    assert table.agree.mean() >= 0.95, table[~table.agree]


# ---------------------------------------------------------------- bad and odd inputs
def test_missing_empty_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match='nothere.wav: file not found'): load_audio(tmp_path/'nothere.wav')
    (tmp_path/'zero.wav').write_bytes(b'')
    with pytest.raises(AudioError, match=r'zero.wav: empty file \(0 bytes\)'): load_audio(tmp_path/'zero.wav')
    sf.write(tmp_path/'header_only.wav', np.zeros(0), 44100, subtype='PCM_16')
    with pytest.raises(AudioError, match='header_only.wav: no samples'): load_audio(tmp_path/'header_only.wav')
    (tmp_path/'corrupt.wav').write_bytes(os.urandom(5000))
    with pytest.raises(AudioError, match='corrupt.wav: cannot decode audio'): load_audio(tmp_path/'corrupt.wav')
    good = np.sin(np.arange(44100) / 10) * 0.5
    sf.write(tmp_path/'truncated.wav', good, 44100, subtype='PCM_16')
    raw = (tmp_path/'truncated.wav').read_bytes()
    (tmp_path/'garbled.wav').write_bytes(raw[:20] + b'\xff' * 30 + raw[50:])
    with pytest.raises(AudioError, match='garbled.wav'): load_audio(tmp_path/'garbled.wav')
    with pytest.raises(AudioError, match='corrupt.wav'): clip_features(tmp_path/'corrupt.wav')

def test_formats_are_read_as_float32_mono(tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, (48000, 2))
    sf.write(tmp_path/'stereo24.wav', stereo, 48000, subtype='PCM_24')
    y, sr = read_audio(tmp_path/'stereo24.wav')
    assert (y.dtype, y.shape, sr) == (np.float32, (48000,), 48000)
    np.testing.assert_allclose(y, stereo.mean(axis=1), atol=2 / 2 ** 23)
    assert load_audio(tmp_path/'stereo24.wav').shape == (32000,)
    sf.write(tmp_path/'low.wav', rng.uniform(-0.5, 0.5, 22050), 22050, subtype='PCM_16')
    assert load_audio(tmp_path/'low.wav').shape == (32000,)
    assert load_audio(tmp_path/'low.wav', sr=None).shape == (22050,)
    sf.write(tmp_path/'float.flac', rng.uniform(-0.5, 0.5, 44100), 44100)
    assert load_audio(tmp_path/'float.flac').shape == (32000,)
    nan = np.zeros(1000); nan[10] = np.nan
    sf.write(tmp_path/'nan.wav', nan, 44100, subtype='FLOAT')
    with pytest.raises(AudioError, match='NaN'): load_audio(tmp_path/'nan.wav')

@pytest.mark.parametrize('version', [1, 2])
def test_silent_short_and_tiny_clips(tmp_path, version):
    from dcase_selfverify.preprocessing import _clip_features
    sf.write(tmp_path/'silent.wav', np.zeros(44100), 44100, subtype='PCM_16')
    spec, info = _clip_features(tmp_path/'silent.wav', version)
    assert info['status'] == 'silent' and spec.shape[0] == 128 and np.isfinite(spec).all()
    assert np.ptp(spec, axis=1).max() < 1e-5                       # no content: constant over time (up to float32 rounding)
    if version == 2: assert spec.max() == 0
    tone = 0.5 * np.cos(2 * np.pi * 1000 * np.arange(2205) / 44100)  # 50 ms
    sf.write(tmp_path/'50ms.wav', tone, 44100, subtype='PCM_16')
    spec, info = _clip_features(tmp_path/'50ms.wav', version)
    assert info['status'] == 'ok' and spec.shape[1] == (1 + 1600 // 192 if version == 1 else 1600 // 128 + (1600 % 128 > 0))
    sf.write(tmp_path/'20ms.wav', tone[:882], 44100, subtype='PCM_16')   # below one window, and no 25 ms of content
    spec, info = _clip_features(tmp_path/'20ms.wav', version)
    assert info['status'] == 'short' and spec.shape[1] >= 1 and np.isfinite(spec).all()
    assert clip_silence(np.zeros(0, np.float32), 32000).shape == (0,)
    with pytest.raises(ValueError, match='empty signal'): spectrogram(np.zeros(0, np.float32), version=version)

def test_clip_silence_cuts_a_padded_tone():
    sr = 44100
    tone = 0.2 * np.cos(2 * np.pi * 300 * np.arange(sr) / sr)
    y = np.concatenate([np.zeros(sr // 2), tone, np.zeros(sr // 3)]).astype(np.float32)
    assert content_bounds(y, sr) == (sr // 2, sr // 2 + sr)
    clipped = clip_silence(y, sr)
    assert len(clipped) == sr and np.abs(clipped).max() == pytest.approx(SOX_PEAK, rel=1e-6)
    with pytest.raises(ValueError, match='mono'): content_bounds(np.zeros((10, 2)), sr)

def test_fix_length():
    spec = np.arange(10, dtype=np.float16).reshape(2, 5)
    np.testing.assert_array_equal(fix_length(spec, 12)[0], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1])
    np.testing.assert_array_equal(fix_length(spec, 3), spec[:, :3])
    assert fix_length(spec, 12).dtype == np.float16
    with pytest.raises(ValueError, match='at least one frame'): fix_length(np.zeros((128, 0)))


# ---------------------------------------------------------------- the feature cache
def _arrays(folder:Path)->dict:
    return {p.name: np.load(p) for p in sorted(folder.glob('*.npy'))}

def test_extract_features_summary_and_load(tmp_path):
    clips = write_varied_clips(tmp_path/'clips', 6, seed=3, max_seconds=3)
    sf.write(tmp_path/'clips'/'silent.wav', np.zeros(20000), 44100, subtype='PCM_16')
    (tmp_path/'clips'/'broken.wav').write_bytes(b'RIFFjunk' * 10)
    extra = pd.DataFrame(dict(fname=['silent.wav', 'broken.wav', 'absent.wav'],
                              path=[str(tmp_path/'clips'/n) for n in ['silent.wav', 'broken.wav', 'absent.wav']]))
    clips = pd.concat([clips, extra], ignore_index=True)
    with pytest.warns(UserWarning, match='2 of 9 clips failed'):
        summary = extract_features(clips, tmp_path/'cache', version=2, n_workers=2, progress=False)
    assert summary.fname.tolist() == clips.fname.tolist()
    assert summary.status.tolist() == ['ok'] * 6 + ['silent', 'failed', 'failed']
    assert 'broken.wav' in summary.error[7] and 'file not found' in summary.error[8]
    assert list(summary.columns) == ['fname', 'status', 'frames', 'seconds', 'clipped_seconds', 'error']
    on_disk = pd.read_csv(tmp_path/'cache'/'v2'/'summary.csv')
    assert dict(zip(on_disk.fname, on_disk.status)) == dict(zip(summary.fname, summary.status)) and len(on_disk) == 9
    spec = np.load(tmp_path/'cache'/'v2'/'clip000.wav.npy')
    assert spec.dtype == np.float16 and spec.shape == (128, summary.frames[0])
    np.testing.assert_allclose(spec, clip_features(clips.path[0], version=2), rtol=2e-3, atol=2e-3)
    loaded = load_features(tmp_path/'cache', clips.fname[:7], version=2, n_frames=500)
    assert loaded.shape == (7, 128, 500) and loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded[0], fix_length(spec, 500))
    with pytest.raises(FeatureCacheError, match='broken.wav, absent.wav'): load_features(tmp_path/'cache', clips.fname, version=2)
    with pytest.raises(FeatureCacheError, match='No version-1 feature cache'): load_features(tmp_path/'cache', clips.fname[:1], version=1)
    with pytest.raises(ValueError, match='duplicate'): extract_features(pd.concat([clips, clips]), tmp_path/'cache', version=2)
    with pytest.raises(ValueError, match='lacks column'): extract_features(clips[['fname']], tmp_path/'cache', version=2)

def test_cache_with_other_parameters_is_refused(tmp_path):
    clips = write_varied_clips(tmp_path/'clips', 2, seed=4, max_seconds=1)
    extract_features(clips, tmp_path/'cache', version=1, n_workers=1, progress=False)
    with pytest.raises(FeatureCacheError, match=r"(?s)other parameters.*'clip': True.*'clip': False"):
        extract_features(clips, tmp_path/'cache', version=1, clip=False, progress=False)
    with pytest.raises(FeatureCacheError, match="'sr': 22050"):
        extract_features(clips, tmp_path/'cache', version=1, sr=22050, progress=False)
    manifest = tmp_path/'cache'/'v1'/'manifest.json'
    manifest.write_text(manifest.read_text().replace('"format": 1', '"format": 0'))
    with pytest.raises(FeatureCacheError, match="'format': 0"):
        extract_features(clips, tmp_path/'cache', version=1, progress=False)
    # version 2 lives in its own folder and is unaffected
    assert extract_features(clips, tmp_path/'cache', version=2, n_workers=1, progress=False).status.eq('ok').all()

KILLABLE_RUN = textwrap.dedent('''
    import sys
    sys.path.insert(0, {repo!r})
    import pandas as pd
    from dcase_selfverify.preprocessing import extract_features
    extract_features(pd.read_csv({clips!r}), {cache!r}, version=1, n_workers=2, progress=False)
''')

def test_kill_and_resume_gives_the_same_cache(tmp_path):
    clips = write_varied_clips(tmp_path/'clips', 40, seed=5, min_seconds=6, max_seconds=20)
    clips.to_csv(tmp_path/'clips.csv', index=False)
    cache, folder = tmp_path/'killed', tmp_path/'killed'/'v1'
    script = KILLABLE_RUN.format(repo=str(REPO), clips=str(tmp_path/'clips.csv'), cache=str(cache))
    proc = subprocess.Popen([sys.executable, '-c', script], start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(list(folder.glob('*.npy'))) < 4: time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)     # the whole job: the main process and its workers
    proc.wait()
    done_at_kill = len(list(folder.glob('*.npy')))
    assert 4 <= done_at_kill < 40 and not (folder/'summary.csv').exists(), 'the run was not interrupted part-way'
    logged = pd.read_csv(folder/'progress.csv', on_bad_lines='skip').fname.tolist() if (folder/'progress.csv').exists() else []
    mtimes = {f: (folder/f'{f}.npy').stat().st_mtime_ns for f in logged if (folder/f'{f}.npy').exists()}
    resumed = extract_features(clips, cache, version=1, n_workers=2, progress=False)
    fresh = extract_features(clips, tmp_path/'fresh', version=1, n_workers=1, progress=False)
    assert resumed.status.eq('ok').all() and fresh.status.eq('ok').all()
    pd.testing.assert_frame_equal(resumed.drop(columns=['seconds', 'clipped_seconds']), fresh.drop(columns=['seconds', 'clipped_seconds']))
    killed_arrays, fresh_arrays = _arrays(folder), _arrays(tmp_path/'fresh'/'v1')
    assert killed_arrays.keys() == fresh_arrays.keys() and len(killed_arrays) == 40
    for name in fresh_arrays: np.testing.assert_array_equal(killed_arrays[name], fresh_arrays[name])
    assert sorted(p.name for p in folder.iterdir()) == sorted(list(killed_arrays) + ['manifest.json', 'summary.csv'])
    for f, mtime in mtimes.items(): assert (folder/f'{f}.npy').stat().st_mtime_ns == mtime, f'{f} was recomputed'

# ---------------------------------------------------------------- a lean front end for tagging
LEAN_FRONT_END = textwrap.dedent('''
    import sys
    sys.path.insert(0, {repo!r})
    from dcase_selfverify.preprocessing import audio_features
    specs, info = audio_features({path!r}, versions=(1,))
    print(specs[1].shape)
    print(info['status'])
    print(sorted(name for name in ('librosa.core', 'numba', 'scipy.signal', 'scipy.fft', 'fastprogress') if name in sys.modules))
''')

def test_version_1_front_end_avoids_slow_imports():
    "Reading, clipping, resampling and version 1 in a fresh process load neither librosa's core, numba, scipy nor fastprogress."
    script = LEAN_FRONT_END.format(repo=str(REPO), path=str(FIXTURES/'audio'/'stereo48k_24bit.wav'))
    done = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, check=True)
    shape, status, loaded = done.stdout.strip().splitlines()
    assert status == 'ok' and shape.startswith('(128, ')
    assert loaded == '[]', f'the front end imported {loaded}'

@pytest.mark.parametrize('orig_sr', [16000, 22050, 44100, 48000])
def test_resample_equals_librosa(orig_sr):
    import librosa
    rng = np.random.default_rng(orig_sr)
    for length in (1, 500, 2 * orig_sr + 3):
        y = (0.3 * rng.standard_normal(length)).astype(np.float32)
        for sr in (32000, 22050):
            np.testing.assert_array_equal(resample(y, orig_sr, sr), librosa.resample(y, orig_sr=orig_sr, target_sr=sr, res_type='soxr_hq'))
