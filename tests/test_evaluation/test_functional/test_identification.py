"""1:N identification protocol: known answers from the definitions (hand-worked or loops)."""
import numpy as np
import pytest

from mmoaml.evaluation.functional import (cmc_rates, concatenate_outcomes, search_outcome,
                                          shortlist_recall, tpir_at_fpir)

# Gallery: identity 10 (images 0, 3), identity 20 (image 1), identity 30 (image 2).
GALLERY = np.array([10, 20, 30, 10])


def test_dense_ranks_by_identity_max_hand_computed():
    scores = np.array([
        [0.2, 0.5, 0.1, 0.9],  # label 10: max(0.2, 0.9) = 0.9 beats 0.5, 0.1 -> rank 1
        [0.2, 0.5, 0.6, 0.3],  # label 10: 0.3 < 0.5, 0.6 -> rank 3
        [0.7, 0.4, 0.7, 0.1],  # label 30: 0.7 ties identity 10 (0.7) -> rank 2 (ties count against)
        [0.3, 0.8, 0.2, 0.1],  # label 99: non-mated
    ])
    out = search_outcome(scores, GALLERY, [10, 10, 30, 99])
    assert out.mated.tolist() == [True, True, True, False]
    assert out.mate_rank.tolist() == [1, 3, 2, 0]
    np.testing.assert_allclose(out.mate_score[:3], [0.9, 0.3, 0.7])
    assert np.isneginf(out.mate_score[3])
    np.testing.assert_allclose(out.top_score, [0.9, 0.6, 0.7, 0.8])
    assert out.top_label.tolist() == [10, 30, 10, 20]  # row 2: first column wins the tie


def test_ranks_match_brute_force_definition():
    rng = np.random.default_rng(0)
    gallery = rng.integers(0, 6, 15)
    probes = rng.integers(0, 8, 40)
    scores = np.round(rng.random((40, 15)), 1)  # coarse values so ties occur
    out = search_outcome(scores, gallery, probes)
    for p in range(40):
        ids = {g: max(scores[p, j] for j in range(15) if gallery[j] == g) for g in set(gallery)}
        if probes[p] not in ids:
            assert out.mate_rank[p] == 0 and not out.mated[p]
            continue
        own = ids[probes[p]]
        expected = 1 + sum(1 for g, v in ids.items() if g != probes[p] and v >= own)
        assert out.mate_rank[p] == expected
        assert out.mate_score[p] == own
        assert out.top_score[p] == max(ids.values())


def test_shortlist_ranks_and_unscored_mate():
    # Probe 0 (label 10) sees candidates 1 (20) and 3 (10): 10 scores 0.4 < 0.7 -> rank 2.
    # Probe 1 (label 30) sees candidates 0 and 1 only: its mate (image 2) was not scored ->
    # rank num_identities + 1 = 4, missed at every rank.
    candidates = np.array([[1, 3], [0, 1]])
    scores = np.array([[0.7, 0.4], [0.9, 0.8]])
    out = search_outcome(scores, GALLERY, [10, 30], candidates=candidates)
    assert out.mate_rank.tolist() == [2, 4]
    assert out.mate_score[0] == 0.4 and np.isneginf(out.mate_score[1])
    assert out.top_label.tolist() == [20, 10]
    assert cmc_rates(out, ranks=(1, 2, 3)) == {1: 0.0, 2: 0.5, 3: 0.5}


def test_shortlist_equals_dense_when_it_holds_every_image():
    rng = np.random.default_rng(1)
    gallery = rng.integers(0, 5, 12)
    probes = rng.integers(0, 7, 9)
    dense = rng.random((9, 12))
    candidates = np.stack([rng.permutation(12) for _ in range(9)])
    sparse = np.take_along_axis(dense, candidates, 1)
    a = search_outcome(dense, gallery, probes)
    b = search_outcome(sparse, gallery, probes, candidates=candidates)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_cmc_counts_mated_probes_only():
    scores = np.array([[0.9, 0.1, 0.1, 0.1], [0.1, 0.9, 0.5, 0.1], [0.9, 0.1, 0.1, 0.1]])
    out = search_outcome(scores, GALLERY, [10, 30, 77])  # ranks 1, 2, non-mated
    assert cmc_rates(out, ranks=(1, 2)) == {1: 0.5, 2: 1.0}
    with pytest.raises(ValueError, match='ranks'):
        cmc_rates(out, ranks=(0, ))


def test_tpir_at_fpir_hand_computed():
    # 4 mated probes: rank-1 hits with scores 0.9, 0.6, 0.15 and one rank-2 miss (0.95 own).
    # 5 non-mated probes with best scores 0.8, 0.5, 0.4, 0.3, 0.2.
    gallery = np.array([1, 2, 3])
    scores = np.array([
        [0.9, 0.1, 0.1],
        [0.6, 0.1, 0.1],
        [0.15, 0.1, 0.1],
        [0.99, 0.95, 0.1],  # label 2, own 0.95 < 0.99 -> rank 2
        [0.8, 0.1, 0.1], [0.5, 0.1, 0.1], [0.4, 0.1, 0.1], [0.3, 0.1, 0.1], [0.2, 0.1, 0.1],
    ])
    out = search_outcome(scores, gallery, [1, 1, 1, 2, 9, 9, 9, 9, 9])
    # FPIR 0.2 allows floor(1.0) = 1 false positive -> threshold = 2nd highest = 0.5;
    # hits above 0.5: 0.9, 0.6 -> TPIR 2/4; achieved FPIR 1/5.
    # FPIR 0.6 allows 3 -> threshold 0.3 -> hits 0.9, 0.6 -> 2/4, achieved 3/5.
    # FPIR 1.0 allows 5 -> no constraint (threshold -inf) -> every rank-1 hit, 0.15 below the
    # lowest non-mated score included -> 3/4.
    p02, p06, p1 = tpir_at_fpir(out, fpirs=(0.2, 0.6, 1.0))
    assert (p02.tpir, p02.threshold, p02.achieved_fpir, p02.num_non_mated) == (0.5, 0.5, 0.2, 5)
    assert (p06.tpir, p06.threshold, p06.achieved_fpir) == (0.5, 0.3, 0.6)
    assert (p1.tpir, p1.achieved_fpir, p1.threshold) == (0.75, 1.0, -np.inf)
    with pytest.warns(UserWarning, match='zero false positives'):
        (p0, ) = tpir_at_fpir(out, fpirs=(0.1, ))
    assert p0.threshold == 0.8 and p0.tpir == 0.25


def test_tpir_needs_both_kinds_of_probes():
    out = search_outcome(np.array([[0.9, 0.1, 0.2, 0.3]]), GALLERY, [10])
    with pytest.raises(ValueError, match='non-mated'):
        tpir_at_fpir(out)
    out = search_outcome(np.array([[0.9, 0.1, 0.2, 0.3]]), GALLERY, [5])
    with pytest.raises(ValueError, match='mated probe'):
        tpir_at_fpir(out)


def test_concatenate_outcomes_equals_one_block():
    rng = np.random.default_rng(2)
    scores, probes = rng.random((7, 4)), rng.integers(5, 35, 7) // 10 * 10
    whole = search_outcome(scores, GALLERY, probes)
    parts = concatenate_outcomes(
        [search_outcome(scores[:3], GALLERY, probes[:3]),
         search_outcome(scores[3:], GALLERY, probes[3:])])
    for x, y in zip(whole, parts):
        np.testing.assert_array_equal(x, y)


def test_shortlist_recall():
    candidates = np.array([[3, 1], [0, 2], [1, 2]])
    assert shortlist_recall(candidates, [1, 3, 2]) == pytest.approx(2 / 3)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match='scores must be'):
        search_outcome(np.zeros((2, 4)), GALLERY, [10])
    with pytest.raises(ValueError, match='one column per gallery image'):
        search_outcome(np.zeros((1, 3)), GALLERY, [10])
    with pytest.raises(ValueError, match='non-finite'):
        search_outcome(np.full((1, 4), np.nan), GALLERY, [10])
    with pytest.raises(ValueError, match='candidates must index'):
        search_outcome(np.zeros((1, 2)), GALLERY, [10], candidates=np.array([[0, 4]]))
    with pytest.raises(ValueError, match='gallery_labels'):
        search_outcome(np.zeros((1, 4)), GALLERY.astype(float), [10])
