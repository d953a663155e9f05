"Exported ensembles: round trips in both weight formats, refusals, clear errors, tagging files of any length, ONNX, a lean import."
import json, os, subprocess, sys
from pathlib import Path
import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn
from dcase_selfverify.core import FSD_CLASSES, get_preset, seed_everything
from dcase_selfverify.preprocessing import AudioError, clip_features
from dcase_selfverify.model import MIN_FRAMES, build_model
import dcase_selfverify
from dcase_selfverify.tagging import (CONFIG_FILE, EXPORT_FORMAT, ExportError, check_onnx, export_ensemble, export_onnx,
                                      load_ensemble, network_input, state_n_classes, tag_files)

CLASSES = list(FSD_CLASSES[:6])


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    "These networks are tiny: one thread is fastest, and on a busy shared machine several threads spin-wait each other."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
# short n_frames keep the tests fast; the rules (repeat up to n_frames, use longer inputs whole) do not depend on the value
PRESETS = [get_preset('tiny').replace(n_frames=400), get_preset('tiny').replace(name='tiny_v2', version=2, n_frames=500)]


def _trained_a_little(preset, seed):
    "A tiny network after two Adam steps on random data (so BN statistics differ from a fresh one)."
    seed_everything(seed)
    model = build_model(preset, len(CLASSES)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        loss = nn.functional.cross_entropy(model(torch.randn(3, 1, 128, 200)), torch.randint(0, len(CLASSES), (3,)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope='module')
def members(tmp_path_factory):
    "Two presets (one per spectrogram version) with two fold checkpoints each, saved as training saves them."
    root = tmp_path_factory.mktemp('runs')
    result, models = [], {}
    for number, preset in enumerate(PRESETS):
        paths = []
        for fold in range(2):
            model = _trained_a_little(preset, 10 * number + fold)
            path = root/preset.name/f'fold{fold}'/'best.pth'
            path.parent.mkdir(parents=True)
            torch.save({'model': model.state_dict(), 'epoch': 1, 'valid_loss': 1.0}, path)
            models[path] = model
            paths.append(path)
        result.append((preset, paths))
    return result, models


@pytest.fixture(scope='module')
def exported(members, tmp_path_factory):
    return export_ensemble(members[0], CLASSES, tmp_path_factory.mktemp('export')/'ensemble')


@pytest.fixture(scope='module')
def audio(tmp_path_factory):
    "A folder of audio files: short, long, stereo 48 kHz 24-bit, FLAC in a sub-folder, empty, corrupt, and a non-audio file."
    folder = tmp_path_factory.mktemp('audio')
    rng = np.random.default_rng(0)
    def noisy_tone(seconds, sr, freq):
        t = np.arange(int(seconds * sr)) / sr
        return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.normal(size=len(t))).astype(np.float32)
    sf.write(folder/'short.wav', noisy_tone(0.1, 44100, 1000), 44100)
    sf.write(folder/'long.wav', noisy_tone(4, 16000, 500), 16000)
    sf.write(folder/'stereo.wav', np.stack([noisy_tone(2, 48000, 300), noisy_tone(2, 48000, 900)], 1), 48000, subtype='PCM_24')
    (folder/'sub').mkdir()
    sf.write(folder/'sub'/'clip.flac', noisy_tone(1.5, 32000, 2000), 32000)
    (folder/'empty.wav').write_bytes(b'')
    (folder/'corrupt.wav').write_bytes(b'RIFF\x00\x00\x00\x00garbage garbage garbage')
    (folder/'notes.txt').write_text('not audio, not a candidate')
    return folder


def _reference(members, specs_by_version):
    "What the original networks predict, by hand: softmax per fold model on the network input, mean over folds, then over presets."
    member_list, models = members
    per_preset = []
    for preset, paths in member_list:
        x = torch.from_numpy(network_input(specs_by_version[preset.version], preset.n_frames))[None, None]
        with torch.no_grad(): per_preset.append(np.mean([torch.softmax(models[path](x), dim=1)[0].numpy() for path in paths], axis=0))
    return np.mean(per_preset, axis=0)


@pytest.mark.parametrize('fmt', ['safetensors', 'torch'])
def test_round_trip_equal_outputs(members, tmp_path, fmt):
    folder = export_ensemble(members[0], CLASSES, tmp_path/'ensemble', fmt=fmt)
    config = json.loads((folder/CONFIG_FILE).read_text())
    suffix = '.safetensors' if fmt == 'safetensors' else '.pth'
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [CONFIG_FILE] + [f'{preset.name}_fold{k}{suffix}' for preset in PRESETS for k in range(2)])
    assert config['format'] == EXPORT_FORMAT and config['sample_rate'] == 32000 and config['clip_silence'] is True
    assert config['classes'] == CLASSES and config['weights_format'] == fmt
    assert [m['preset'] for m in config['members']] == [p.to_dict() for p in PRESETS]
    assert [(m['version'], m['n_frames']) for m in config['members']] == [(1, 400), (2, 500)]
    assert [p.name for p in tmp_path.iterdir()] == ['ensemble']          # no temporary folder left behind
    tagger = load_ensemble(folder, device='cpu')
    assert [preset for preset, _ in tagger.members] == PRESETS and tagger.classes == CLASSES
    for (_, paths), (_, models) in zip(members[0], tagger.members):
        for path, model in zip(paths, models):
            for key, value in members[1][path].state_dict().items(): assert torch.equal(model.state_dict()[key], value), key
    rng = np.random.default_rng(1)
    for frames in (50, 700):
        specs = {1: rng.normal(size=(128, frames)).astype(np.float32), 2: rng.normal(size=(128, frames + 7)).astype(np.float32)}
        np.testing.assert_allclose(tagger.predict_spectrograms(specs), _reference(members, specs), atol=1e-6)


def test_both_formats_agree(members, exported, tmp_path):
    torch_folder = export_ensemble(members[0], CLASSES, tmp_path/'torch', fmt='torch')
    specs = {1: np.random.default_rng(2).normal(size=(128, 400)).astype(np.float32),
             2: np.random.default_rng(3).normal(size=(128, 600)).astype(np.float32)}
    np.testing.assert_array_equal(load_ensemble(torch_folder, 'cpu').predict_spectrograms(specs),
                                  load_ensemble(exported, 'cpu').predict_spectrograms(specs))


def test_refuses_to_overwrite_other_folders(members, tmp_path):
    other = tmp_path/'results'
    other.mkdir()
    (other/'important.csv').write_text('a,b\n1,2\n')
    with pytest.raises(ExportError, match='refusing to overwrite'):
        export_ensemble(members[0], CLASSES, other)
    assert [p.name for p in other.iterdir()] == ['important.csv']
    a_file = tmp_path/'file.txt'
    a_file.write_text('x')
    with pytest.raises(ExportError, match='not a folder'):
        export_ensemble(members[0], CLASSES, a_file)
    empty = tmp_path/'empty'
    empty.mkdir()
    export_ensemble(members[0], CLASSES, empty)                           # an empty folder is fine
    first_config = (empty/CONFIG_FILE).read_text()
    export_ensemble(members[0][:1], CLASSES, empty, fmt='torch')          # an earlier export is replaced
    assert sorted(p.name for p in empty.iterdir()) == [CONFIG_FILE, 'tiny_fold0.pth', 'tiny_fold1.pth']
    assert (empty/CONFIG_FILE).read_text() != first_config
    assert sorted(p.name for p in tmp_path.iterdir()) == ['empty', 'file.txt', 'results']


def test_export_refuses_mismatches(members, tmp_path):
    with pytest.raises(ExportError, match=f'predicts {len(CLASSES)} classes, but 5'):
        export_ensemble(members[0], CLASSES[:5], tmp_path/'a')
    with pytest.raises(ExportError, match="does not fit preset 'spec1_1'"):
        export_ensemble([('spec1_1', members[0][0][1])], CLASSES, tmp_path/'b')
    with pytest.raises(ExportError, match='unique'):
        export_ensemble([members[0][0], members[0][0]], CLASSES, tmp_path/'c')
    with pytest.raises(ExportError, match='Checkpoint not found'):
        export_ensemble([('tiny', [tmp_path/'nope.pth'])], CLASSES, tmp_path/'d')
    assert list(tmp_path.iterdir()) == []                                 # nothing written, no temporary folders


def test_load_errors(exported, tmp_path):
    import shutil
    with pytest.raises(ExportError, match='does not exist'):
        load_ensemble(tmp_path/'nowhere')
    (tmp_path/'plain').mkdir()
    with pytest.raises(ExportError, match='has no config.json'):
        load_ensemble(tmp_path/'plain')
    broken = tmp_path/'broken'
    shutil.copytree(exported, broken)
    config = json.loads((broken/CONFIG_FILE).read_text())
    (broken/CONFIG_FILE).write_text(json.dumps(config | {'format': EXPORT_FORMAT + 1}))
    with pytest.raises(ExportError, match=f'export format {EXPORT_FORMAT + 1}'):
        load_ensemble(broken)
    (broken/CONFIG_FILE).write_text(json.dumps(config | {'classes': CLASSES + ['Extra']}))
    with pytest.raises(ExportError, match=f'predicts {len(CLASSES)} classes, but config.json lists {len(CLASSES) + 1}'):
        load_ensemble(broken)
    (broken/CONFIG_FILE).write_text(json.dumps(config))
    (broken/'tiny_v2_fold1.safetensors').unlink()
    with pytest.raises(ExportError, match='tiny_v2_fold1.safetensors'):
        load_ensemble(broken)


def test_state_n_classes_is_order_independent(members):
    state = members[1][members[0][0][1][0]].state_dict()
    assert state_n_classes(state) == len(CLASSES)
    assert state_n_classes(dict(sorted(state.items()))) == len(CLASSES)


def test_tag_folder_with_empty_and_corrupt_files(exported, audio):
    tagger = load_ensemble(exported, 'cpu')
    table = tag_files(audio, tagger)
    assert table.columns.tolist() == ['fname', 'label_1', 'prob_1', 'label_2', 'prob_2', 'label_3', 'prob_3', 'error']
    assert table.fname.tolist() == ['corrupt.wav', 'empty.wav', 'long.wav', 'short.wav', 'stereo.wav', 'sub/clip.flac']
    failed = table.set_index('fname').error
    assert 'empty file' in failed['empty.wav'] and 'cannot decode' in failed['corrupt.wav']
    ok = table[table.error == '']
    assert len(ok) == 4 and ok.label_1.isin(CLASSES).all() and ok.prob_1.notna().all()
    assert (ok.prob_1 >= ok.prob_2).all() and (ok.prob_2 >= ok.prob_3).all()
    stereo = ok.set_index('fname').loc['stereo.wav']
    probs = tagger.predict_file(audio/'stereo.wav')
    ranking = np.argsort(-probs, kind='stable')[:3]
    assert [stereo.label_1, stereo.label_2, stereo.label_3] == [CLASSES[i] for i in ranking]
    assert stereo.prob_1 == pytest.approx(float(probs[ranking[0]]))
    assert table[table.error != ''].label_1.isna().all()


def test_a_bug_while_tagging_is_not_a_row(exported, audio, monkeypatch):
    "Only unreadable audio becomes an error row; any other exception is a bug and propagates with its traceback."
    tagger = load_ensemble(exported, 'cpu')
    def broken(path): raise KeyError('an internal key')
    monkeypatch.setattr(tagger, 'predict_file', broken)
    with pytest.raises(KeyError, match='an internal key'): tag_files(audio, tagger)


def test_audio_error_is_a_user_error():
    from dcase_selfverify.core import UserError
    assert AudioError.__mro__[1:3] == (UserError, ValueError)


def test_predict_file_errors(exported, audio):
    tagger = load_ensemble(exported, 'cpu')
    with pytest.raises(AudioError, match='empty file'):
        tagger.predict_file(audio/'empty.wav')
    with pytest.raises(AudioError, match='cannot decode'):
        tagger.predict_file(audio/'corrupt.wav')
    with pytest.raises(AudioError, match='not found'):
        tagger.predict_file(audio/'missing.wav')


def test_short_and_long_files(members, exported, audio):
    tagger = load_ensemble(exported, 'cpu')
    short, long = tagger.file_spectrograms(audio/'short.wav'), tagger.file_spectrograms(audio/'long.wav')
    for version in (1, 2):                                                # the training front end, exactly
        np.testing.assert_array_equal(short[version], clip_features(audio/'short.wav', version))
        np.testing.assert_array_equal(long[version], clip_features(audio/'long.wav', version))
    assert short[1].shape[1] < MIN_FRAMES and long[1].shape[1] > 400 and long[2].shape[1] > 500
    for specs, path in ((short, audio/'short.wav'), (long, audio/'long.wav')):
        probs = tagger.predict_file(path)
        assert probs.shape == (len(CLASSES),) and probs.sum() == pytest.approx(1.0, abs=1e-5)
        np.testing.assert_allclose(probs, _reference(members, specs), atol=1e-6)
    cut = {1: long[1][:, :400], 2: long[2][:, :500]}                   # longer files are used whole, not cut
    assert np.abs(tagger.predict_spectrograms(cut) - tagger.predict_spectrograms(long)).max() > 1e-6


def test_class_activity(exported, audio):
    tagger = load_ensemble(exported, 'cpu')
    times, activity = tagger.class_activity(audio/'long.wav')
    assert activity.shape == (len(CLASSES), len(times))
    np.testing.assert_allclose(activity.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.diff(times), 64 * 128 / 32000)          # the finer (version 2) grid
    assert 0 < times[0] and times[-1] <= 4.0
    short_times, short_activity = tagger.class_activity(audio/'short.wav')
    assert short_activity.shape == (len(CLASSES), 1) and 0 < short_times[0] < 0.1


def test_plot_timeline(exported, audio):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from dcase_selfverify.tagging import plot_timeline
    tagger = load_ensemble(exported, 'cpu')
    times, activity = tagger.class_activity(audio/'stereo.wav')
    figure = plot_timeline(times, activity, tagger.classes, top=3)
    assert len(figure.axes[0].lines) == 3
    assert figure.axes[0].get_legend_handles_labels()[1][0] == CLASSES[int(np.argmax(activity.mean(axis=1)))]
    plt.close(figure)


def test_onnx_matches_pytorch(members, tmp_path):
    pytest.importorskip('onnxruntime')
    model = members[1][members[0][0][1][0]]
    path = export_onnx(model, tmp_path/'fold0.onnx')
    assert path.is_file()
    difference = check_onnx(model, path, frames=(MIN_FRAMES, 384, 1001))
    assert difference < 1e-4
    # the check measures: a model with other weights differs clearly
    other = members[1][members[0][0][1][1]]
    assert check_onnx(other, path, frames=(384,)) > 1e-3


def test_tag_list_with_progress_and_models_in_memory(members, audio, tmp_path):
    preset, paths = members[0][0]
    in_memory = [members[1][path] for path in paths]
    folder = export_ensemble([(preset, in_memory)], CLASSES, tmp_path/'from_memory')
    tagger = load_ensemble(folder, 'cpu')
    assert tagger.versions == [1]
    table = tag_files([audio/'stereo.wav', audio/'empty.wav'], tagger, k=2, progress=True)
    assert table.columns.tolist() == ['fname', 'label_1', 'prob_1', 'label_2', 'prob_2', 'error']
    assert table.fname.tolist() == [str(audio/'stereo.wav'), str(audio/'empty.wav')]
    assert table.error.tolist()[0] == '' and 'empty file' in table.error.tolist()[1]
    specs = tagger.file_spectrograms(audio/'stereo.wav')
    assert list(specs) == [1]
    np.testing.assert_allclose(tagger.predict_file(audio/'stereo.wav'), _reference(([(preset, paths)], members[1]), specs), atol=1e-6)


def test_import_is_lean():
    "Tagging needs torch, numpy and the audio libraries: importing it in a fresh interpreter loads no fastai, scikit-learn or training stack."
    root = Path(dcase_selfverify.__file__).parent.parent
    env = os.environ | {'PYTHONPATH': os.pathsep.join([str(root), os.environ.get('PYTHONPATH', '')])}
    code = ("import sys, dcase_selfverify.tagging; "
            "print(sorted(m for m in ('fastai', 'sklearn', 'matplotlib', 'dcase_selfverify.training', 'dcase_selfverify.cli') if m in sys.modules))")
    result = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == '[]', result.stdout
    found = subprocess.run([sys.executable, '-c', "import sys, dcase_selfverify.tagging, fastai; print('fastai' in sys.modules)"],
                           env=env, capture_output=True, text=True, check=True)
    assert found.stdout.strip() == 'True'                                  # the check can see a module that was imported
