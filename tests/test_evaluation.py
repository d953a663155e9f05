"Evaluation checks: ensemble weighting, test-set subsets, the submission file and Kaggle's sample submission."
import warnings
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from dcase_selfverify.core import FSD_CLASSES, map_at_3, read_test_csv
from dcase_selfverify.evaluation import (ensemble, ensemble_predict, top_k_labels, score, evaluate_test, per_class_report,
                                         confusion, most_confused, fill_failed, write_submission)

META_DIR = Path(__file__).resolve().parents[1]/'reference'/'fsdkaggle2018-meta'   # real FSDKaggle2018 metadata (reference/README.md)
CLASSES = ['Bark', 'Meow', 'Cough', 'Gong']


def one_hot(rows, n_classes=4):
    return np.eye(n_classes)[np.asarray(rows)]


def test_ensemble_gives_each_model_equal_weight():
    rng = np.random.default_rng(1)
    four_folds = [rng.dirichlet(np.ones(4), size=5) for _ in range(4)]
    two_folds = [rng.dirichlet(np.ones(4), size=5) for _ in range(2)]
    expected = (np.mean(four_folds, axis=0) + np.mean(two_folds, axis=0)) / 2
    np.testing.assert_allclose(ensemble([four_folds, two_folds]), expected)
    np.testing.assert_allclose(ensemble([two_folds, four_folds]), expected)
    pooled = np.mean(four_folds + two_folds, axis=0)
    assert not np.allclose(ensemble([four_folds, two_folds]), pooled)
    np.testing.assert_allclose(ensemble([four_folds, two_folds]).sum(axis=1), 1.0)


def test_ensemble_rejects_mismatched_shapes():
    good = np.full((5, 4), 0.25)
    with pytest.raises(ValueError, match=r'Model 1, fold 1 has shape \(5, 3\)'):
        ensemble([[good, good], [good, np.full((5, 3), 1/3)]])
    with pytest.raises(ValueError, match='no fold predictions'):
        ensemble([[good], []])


def test_ensemble_predict_calls_each_model_once_in_order():
    predictions = {'a0': one_hot([0, 1]), 'a1': one_hot([0, 0]), 'b0': one_hot([2, 1])}
    calls = []
    def predict(name):
        calls.append(name)
        return predictions[name]
    result = ensemble_predict([['a0', 'a1'], ['b0']], predict)
    assert calls == ['a0', 'a1', 'b0']
    np.testing.assert_allclose(result, ensemble([[predictions['a0'], predictions['a1']], [predictions['b0']]]))


def test_top_k_and_score_agree_with_map_at_3():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4), size=50)
    targets = rng.integers(0, 4, 50)
    ranked = top_k_labels(probs, CLASSES)
    by_hand = np.mean([1 / (labels.index(CLASSES[t]) + 1) if CLASSES[t] in labels else 0.0 for labels, t in zip(ranked, targets)])
    result = score(probs, targets)
    assert result['map3'] == pytest.approx(by_hand)
    assert result['map3'] == pytest.approx(map_at_3(probs, targets))
    assert result['accuracy'] == pytest.approx(np.mean(probs.argmax(axis=1) == targets))
    assert result['n'] == 50


def test_evaluate_test_excludes_ignored_and_unlabelled_rows():
    test = pd.DataFrame({'fname': [f'{i}.wav' for i in range(6)],
                         'label': ['Bark', 'Meow', 'Cough', 'Gong', None, None],
                         'usage': ['Public', 'Private', 'Private', 'Public', 'Ignored', 'Unknown']})
    right = one_hot([0, 1, 2, 3, 0, 0])
    wrong_on_unscored = right.copy()
    wrong_on_unscored[4:] = one_hot([1, 1])
    for probs in (right, wrong_on_unscored):
        results = evaluate_test(probs, test, CLASSES)
        assert set(results) == {'public', 'private', 'both'}
        assert {name: r['n'] for name, r in results.items()} == {'public': 2, 'private': 2, 'both': 4}
        assert all(r['map3'] == 1.0 and r['accuracy'] == 1.0 for r in results.values())
    # a wrong prediction on a public clip moves public and both, not private
    worse = right.copy()
    worse[0] = [0.1, 0.6, 0.3, 0.0]   # true Bark ranked third
    results = evaluate_test(worse, test, CLASSES)
    assert results['public']['map3'] == pytest.approx((1/3 + 1) / 2)
    assert results['private']['map3'] == 1.0
    assert results['both']['map3'] == pytest.approx((1/3 + 3) / 4)


def test_evaluate_test_without_usage_scores_all_labelled_rows():
    test = pd.DataFrame({'fname': ['a', 'b', 'c'], 'label': ['Bark', None, 'Gong']})
    results = evaluate_test(one_hot([0, 1, 3]), test, CLASSES)
    assert list(results) == ['all']
    assert results['all']['n'] == 2


@pytest.fixture()
def probs_and_names():
    probs = np.array([[0.1, 0.5, 0.3, 0.1],
                      [0.7, 0.1, 0.1, 0.1],
                      [np.nan] * 4,
                      [0.1, 0.2, 0.3, 0.4]])
    return probs, ['z.wav', 'a.wav', 'empty.wav', 'm.wav']


def test_submission_format_order_and_fallback(tmp_path, probs_and_names):
    probs, names = probs_and_names
    path = tmp_path/'submission.csv'
    with pytest.warns(UserWarning, match=r'^1 clip\(s\) without features'):
        written = write_submission(probs, names, CLASSES, path, failed=['empty.wav'], prior=[5, 1, 3, 9])
    text = path.read_text().splitlines()
    assert text[0] == 'fname,label'
    assert [line.split(',')[0] for line in text[1:]] == names
    assert all(len(line.split(',')[1].split(' ')) == 3 for line in text[1:])
    assert written.label.tolist() == ['Meow Cough Bark', 'Bark Meow Cough', 'Gong Bark Cough', 'Gong Cough Meow']
    pd.testing.assert_frame_equal(pd.read_csv(path), written)


def test_submission_without_prior_and_without_failures(tmp_path, probs_and_names):
    probs, names = probs_and_names
    with pytest.warns(UserWarning):
        written = write_submission(probs, names, CLASSES, tmp_path/'s.csv', failed=['empty.wav'])
    assert written.label[2] == 'Bark Meow Cough'
    clean = np.delete(probs, 2, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        write_submission(clean, ['z.wav', 'a.wav', 'm.wav'], CLASSES, tmp_path/'clean.csv')
    with pytest.raises(ValueError, match='not marked as failed'):
        write_submission(probs, names, CLASSES, tmp_path/'s.csv')
    with pytest.raises(ValueError, match='probability rows'):
        write_submission(clean, names, CLASSES, tmp_path/'s.csv')


def test_fill_failed_is_what_gets_submitted(tmp_path, probs_and_names):
    probs, names = probs_and_names
    failed = [False, False, True, False]
    filled = fill_failed(probs, failed, prior=[5, 1, 3, 9])
    np.testing.assert_allclose(filled[2], np.array([5, 1, 3, 9]) / 18)
    np.testing.assert_allclose(np.delete(filled, 2, axis=0), np.delete(probs, 2, axis=0))
    with pytest.warns(UserWarning):
        written = write_submission(probs, names, CLASSES, tmp_path/'s.csv', failed=['empty.wav'], prior=[5, 1, 3, 9])
    assert written.label.tolist() == [' '.join(labels) for labels in top_k_labels(filled, CLASSES)]


def test_submission_round_trip_and_sample_order(tmp_path, probs_and_names):
    "A written submission reads back unchanged, and Kaggle's sample submission lists the test clips in the test metadata's order."
    probs, names = probs_and_names
    path = tmp_path/'submission.csv'
    with pytest.warns(UserWarning):
        written = write_submission(probs, names, CLASSES, path, failed=['empty.wav'])
    pd.testing.assert_frame_equal(pd.read_csv(path), written)
    sample = pd.read_csv(META_DIR/'sample_submission.csv')
    assert len(sample) == 9400 and set(sample.label) == {'Laughter Hi-Hat Flute'}
    assert sample.fname.tolist() == read_test_csv(META_DIR/'test_post_competition.csv').fname.tolist()


def test_real_test_subsets_have_table_2_sizes():
    test = read_test_csv(META_DIR/'test_post_competition.csv')
    probs = np.random.default_rng(3).random((len(test), len(FSD_CLASSES)))
    results = evaluate_test(probs, test, FSD_CLASSES)
    assert {name: r['n'] for name, r in results.items()} == {'public': 301, 'private': 1299, 'both': 1600}


def test_per_class_report_and_confusion_agree():
    rng = np.random.default_rng(4)
    targets = rng.integers(0, 4, 200)
    probs = 0.6 * one_hot(targets) + rng.random((200, 4))
    report = per_class_report(probs, targets, CLASSES)
    cm = confusion(probs, targets, CLASSES)
    assert report['support'].tolist() == cm.sum(axis=1).tolist()
    np.testing.assert_allclose(report['recall'], np.diag(cm) / cm.sum(axis=1))
    np.testing.assert_allclose(report['precision'], np.diag(cm) / cm.sum(axis=0))
    confused = most_confused(cm, CLASSES)
    assert [c for _, _, c in confused] == sorted((c for _, _, c in confused), reverse=True)
    assert sum(c for _, _, c in confused) == cm.sum() - np.trace(cm)
