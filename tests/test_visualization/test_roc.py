"""ROC figures: TAR against FAR on a log axis, one curve per score type, written as PNG."""
import cv2
import numpy as np
import pytest

from mmoaml.visualization import draw_roc_curves, save_roc_curves

# matplotlib's tab:blue, tab:orange and tab:red in RGB
BLUE, ORANGE, RED = (31, 119, 180), (255, 127, 14), (214, 39, 40)


def _pairs(n=400, seed=0):
    rng = np.random.default_rng(seed)
    issame = rng.random(n) < 0.5
    return issame, dict(adaface=issame + rng.normal(0, 0.8, n),
                        qaconv=issame + rng.normal(0, 0.5, n))


def _has(image, rgb):
    return bool(np.any(np.all(image == np.array(rgb, dtype=np.uint8), axis=-1)))


def test_one_curve_per_score_type_at_the_requested_size():
    issame, scores = _pairs()
    image = draw_roc_curves(scores, issame, title='lfw', far_marks=(1e-2, ))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert _has(image, BLUE) and _has(image, ORANGE) and not _has(image, RED)
    only_adaface = draw_roc_curves(dict(adaface=scores['adaface']), issame, size=(320, 200))
    assert only_adaface.shape == (200, 320, 3)
    assert _has(only_adaface, BLUE) and not _has(only_adaface, ORANGE)


def test_save_writes_the_png_it_returns(tmp_path):
    issame, scores = _pairs()
    scores['combined'] = 0.5 * (scores['adaface'] + scores['qaconv'])
    path = tmp_path / 'roc_lfw.png'
    image = save_roc_curves(str(path), scores, issame, title='lfw')
    assert path.stat().st_size > 0
    written = cv2.imread(str(path))
    assert written.shape == (480, 640, 3)
    np.testing.assert_array_equal(written[..., ::-1], image)  # PNG is lossless; BGR on disk
    assert _has(image, RED)


def test_perfect_and_tied_scores_draw():
    issame = np.array([True, False] * 5)
    image = draw_roc_curves(dict(adaface=issame.astype(float), qaconv=np.zeros(10)), issame)
    assert image.shape == (480, 640, 3)


def test_refused_inputs():
    issame, scores = _pairs()
    with pytest.raises(ValueError, match='at least one score type'):
        draw_roc_curves({}, issame)
    with pytest.raises(ValueError, match='both genuine and impostor'):
        draw_roc_curves(dict(adaface=np.ones(4)), np.ones(4, dtype=bool))
    with pytest.raises(ValueError, match='positive'):
        draw_roc_curves(scores, issame, size=(0, 10))
    with pytest.raises(OSError, match='could not write'):
        save_roc_curves('/nonexistent_dir/roc.png', scores, issame)
