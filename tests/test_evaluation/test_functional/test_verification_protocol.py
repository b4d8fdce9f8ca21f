"""Verification protocol: known answers from the definitions, and exact parity with the
standard 400-threshold squared-L2 protocol."""
import itertools

import numpy as np
import pytest

from mmoaml.evaluation import (allowed_false_accepts, contiguous_folds, equal_error_rate, roc_auc,
                               roc_curve, tar_at_far, verification_accuracy,
                               verification_accuracy_l2)


def _standard_protocol(emb1, emb2, issame, nfolds=10):
    """The reference protocol written out from its definition, one threshold at a time."""
    thresholds = np.arange(0, 4, 0.01)  # the reference grid: 0.00:0.01:3.99
    assert len(thresholds) == 400
    dist = np.sum(np.square(emb1 - emb2), 1)
    n = len(issame)
    sizes = [n // nfolds + (1 if i < n % nfolds else 0) for i in range(nfolds)]
    start, accuracies, chosen = 0, [], []
    for size in sizes:
        test = np.zeros(n, dtype=bool)
        test[start:start + size] = True
        start += size
        best_acc, best_t = -1.0, None
        for t in thresholds:
            acc = np.count_nonzero((dist[~test] < t) == issame[~test]) / (n - size)
            if acc > best_acc:  # strict: the first (lowest) threshold wins ties
                best_acc, best_t = acc, t
        accuracies.append(np.count_nonzero((dist[test] < best_t) == issame[test]) / size)
        chosen.append(best_t)
    return np.mean(accuracies), np.std(accuracies), np.mean(chosen)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_contiguous_fold_sizes_follow_kfold():
    folds = contiguous_folds(13, 10)
    assert [len(test) for _, test in folds] == [2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    assert [test.tolist() for _, test in folds[:4]] == [[0, 1], [2, 3], [4, 5], [6]]
    for train, test in folds:
        assert sorted(train.tolist() + test.tolist()) == list(range(13))
    with pytest.raises(ValueError, match='nfolds'):
        contiguous_folds(5, 10)
    with pytest.raises(ValueError, match='nfolds'):
        contiguous_folds(5, 1)


def test_accuracy_hand_computed():
    # 3 folds of 2 pairs. Fold 0 trains on (.3 F, .1 F, .7 F, .2 T): only "nobody is the same"
    # (threshold .7) gets 3 right, so the test pairs (.9 T, .8 T) are both right.
    # Fold 1 trains on (.9 T, .8 T, .7 F, .2 T): below .2 and .75 both get 3 right -> the lower
    # one; test (.3 F, .1 F): .3 is accepted (wrong), .1 rejected -> 0.5.
    # Fold 2 trains on (.9 T, .8 T, .3 F, .1 F): .55 separates them; test (.7 F, .2 T): both
    # wrong -> 0.
    scores = [0.9, 0.8, 0.3, 0.1, 0.7, 0.2]
    issame = [True, True, False, False, False, True]
    acc, std, thr = verification_accuracy(scores, issame, nfolds=3)
    assert acc == pytest.approx(0.5)
    assert std == pytest.approx(np.std([1.0, 0.5, 0.0]))
    assert thr == pytest.approx((0.7 + 0.2 + 0.55) / 3)


def test_ties_go_to_the_first_threshold_given():
    # Train fold (pairs 4-7): .1 F, .5 T, .6 F, .9 T. Thresholds .3 and .75 both classify 3 of
    # 4 correctly; the test pair .55 T is accepted by .3 only.
    scores = [0.55, 0.55, 0.55, 0.55, 0.1, 0.5, 0.6, 0.9]
    issame = [True] * 4 + [False, True, False, True]
    grid = [0.3, 0.75]
    acc_low, _, _ = verification_accuracy(scores, issame, nfolds=2, thresholds=grid)
    acc_high, _, _ = verification_accuracy(scores, issame, nfolds=2, thresholds=grid[::-1])
    # Fold 1 (test = pairs 4-7) trains on four .55 T pairs: every threshold below .55 is
    # perfect, the first such wins in both orders (.3), giving 3/4 on the test fold.
    assert acc_low == pytest.approx((1.0 + 0.75) / 2)
    assert acc_high == pytest.approx((0.0 + 0.75) / 2)
    # Default candidates are ascending: in fold 0 the lowest of the tied splits (.3, between .1
    # and .5) wins over .75, so all .55 test pairs are accepted. Fold 1 trains on four equal
    # .55 genuine pairs: "accept all" (just below .55) is perfect; its test fold gets .1 F and
    # .9 T right -> 0.5.
    acc_default, _, _ = verification_accuracy(scores, issame, nfolds=2)
    assert acc_default == pytest.approx((1.0 + 0.5) / 2)


def test_predicts_same_only_strictly_above_threshold():
    scores = [0.5, 0.5, 0.2, 0.2]
    acc, _, _ = verification_accuracy(scores, [True, True, False, False], nfolds=2,
                                      thresholds=[0.5])
    assert acc == pytest.approx(0.5)  # the .5 genuine pairs are rejected at threshold .5


@pytest.mark.parametrize('num_pairs', [613, 600])
def test_l2_protocol_reproduces_the_standard_numbers_exactly(num_pairs):
    rng = np.random.default_rng(num_pairs)
    emb1 = _unit(rng.standard_normal((num_pairs, 16))).astype(np.float32)
    issame = rng.random(num_pairs) < 0.5
    other = _unit(rng.standard_normal((num_pairs, 16)))
    noise = _unit(emb1 + 0.9 * rng.standard_normal((num_pairs, 16)))
    emb2 = np.where(issame[:, None], noise, other).astype(np.float32)
    expected = _standard_protocol(emb1, emb2, issame)
    got = verification_accuracy_l2(emb1, emb2, issame)
    assert 0.6 < expected[0] < 0.99  # a non-trivial operating point
    assert got == tuple(float(v) for v in expected)


def test_tar_at_far_hand_computed():
    impostor = [0.1 * i for i in range(10)]  # 0.0 ... 0.9
    genuine = [0.95, 0.85, 0.75, 0.05, 0.5]
    scores = impostor + genuine
    issame = [False] * 10 + [True] * 5
    point, = tar_at_far(scores, issame, fars=(0.1, ))
    # 1 false accept allowed: threshold = second highest impostor (0.8); 0.95 and 0.85 pass.
    assert point.far_target == 0.1 and point.num_impostors == 10
    assert point.threshold == pytest.approx(0.8)
    assert point.tar == pytest.approx(2 / 5)
    assert point.achieved_far == pytest.approx(1 / 10)
    # Representation error must not cost an allowed false accept: 0.29 * 100 < 29 in floats.
    many = [i / 100 for i in range(100)] + [1.0]
    point, = tar_at_far(many, [False] * 100 + [True], fars=(0.29, ))
    assert point.achieved_far == pytest.approx(0.29)


def test_allowed_false_accepts_is_floor_of_rate_times_count():
    # floor(rate * count) by hand; 0.29 * 100 is 28.999999999999996 in binary floating point.
    assert 0.29 * 100 < 29
    assert allowed_false_accepts(0.29, 100) == 29
    assert allowed_false_accepts(1e-3, 999) == 0
    assert allowed_false_accepts(1e-3, 1000) == 1
    assert allowed_false_accepts(0.5, 3) == 1
    assert allowed_false_accepts(1.0, 7) == 7


def test_tar_at_far_flags_degenerate_targets():
    scores = [0.1 * i for i in range(10)] + [0.95, 0.5]
    issame = [False] * 10 + [True] * 2
    with pytest.warns(UserWarning, match='zero false accepts'):
        point, = tar_at_far(scores, issame, fars=(0.01, ))
    assert point.threshold == pytest.approx(0.9)  # the highest impostor score
    assert point.achieved_far == 0.0 and point.tar == 0.5
    with pytest.raises(ValueError, match='impostor'):
        tar_at_far([0.1, 0.2], [True, True])


def test_roc_auc_is_the_pairwise_ranking_probability():
    rng = np.random.default_rng(0)
    scores = np.round(rng.random(40), 1)  # many ties
    issame = rng.random(40) < 0.4
    pos, neg = scores[issame], scores[~issame]
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p, q in itertools.product(pos, neg))
    assert roc_auc(scores, issame) == pytest.approx(wins / (len(pos) * len(neg)))


def test_roc_curve_and_eer_hand_computed():
    # Genuine .9, .5; impostor .5, .1: the tie at .5 is one diagonal step.
    scores, issame = [0.9, 0.5, 0.5, 0.1], [True, True, False, False]
    fpr, tpr = roc_curve(scores, issame)
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 1, 1])
    assert roc_auc(scores, issame) == pytest.approx(0.875)
    # FRR - FAR goes from +0.5 to -0.5 on the diagonal step: crossing halfway, FAR = FRR = 0.25.
    assert equal_error_rate(scores, issame) == pytest.approx(0.25)
    # Crossing exactly on a point: after .9, .8 (genuine) and .7 (impostor) FAR = FRR = 1/3.
    assert equal_error_rate([0.9, 0.8, 0.4, 0.7, 0.3, 0.2],
                            [True, True, True, False, False, False]) == pytest.approx(1 / 3)
    separable = ([0.9, 0.8, 0.2, 0.1], [True, True, False, False])
    assert equal_error_rate(*separable) == 0.0 and roc_auc(*separable) == 1.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match='equal length'):
        verification_accuracy([0.1, 0.2], [True])
    with pytest.raises(ValueError, match='non-finite'):
        verification_accuracy([0.1, np.nan], [True, False], nfolds=2)
    with pytest.raises(ValueError, match='both genuine and impostor'):
        roc_auc([0.1, 0.2], [False, False])
    with pytest.raises(ValueError, match='equal shape'):
        verification_accuracy_l2(np.zeros((3, 4)), np.zeros((3, 5)), [True] * 3)
