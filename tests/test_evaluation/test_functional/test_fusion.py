"""Score fusion: standardisation and the validation choice of the fusion weight."""
import numpy as np
import pytest

from mmoaml.evaluation.functional import choose_fusion_weight, fused_scores, standardise


def test_fused_scores_weigh_the_standardised_scores():
    a, q = np.array([1.0, 3.0]), np.array([0.0, 10.0])
    # Each standardises to (-1, 1): w * (-1, 1) + (1 - w) * (-1, 1).
    np.testing.assert_allclose(fused_scores(a, q, 0.3), [-1.0, 1.0])
    np.testing.assert_allclose(fused_scores(a, -q, 0.25), [0.5, -0.5])
    np.testing.assert_allclose(standardise(np.full(3, 2.0)), np.zeros(3))


def test_choice_takes_the_best_weight_and_breaks_ties_towards_equal_weights():
    rng = np.random.default_rng(0)
    issame = np.tile([True, False], 100)
    label = issame.astype(float)
    # AdaFace scores are exactly anti-informative, QAConv scores nearly perfect: every w below
    # 0.5 keeps the sign of the QAConv separation (perfect), 0.5 leaves noise, above inverts.
    adaface = -label
    qaconv = label + 0.01 * rng.standard_normal(label.size)
    w, accuracy = choose_fusion_weight([(adaface, qaconv, issame)])
    assert accuracy[0.0] == accuracy[0.4] == 1.0
    assert accuracy[0.6] < 0.6 and accuracy[1.0] < 0.6
    assert w == pytest.approx(0.4)  # the perfect weight nearest 0.5
    # Where every weight is equally good, the choice is the report's equal weights.
    w, accuracy = choose_fusion_weight([(qaconv, qaconv, issame)])
    assert set(accuracy.values()) == {1.0} and w == 0.5


def test_choice_rejects_no_sets_and_weights_outside_the_unit_interval():
    with pytest.raises(ValueError, match='at least one'):
        choose_fusion_weight([])
    one = (np.zeros(4), np.zeros(4), np.array([True, False, True, False]))
    with pytest.raises(ValueError, match=r'\[0, 1\]'):
        choose_fusion_weight([one], grid=(0.5, 1.5))
