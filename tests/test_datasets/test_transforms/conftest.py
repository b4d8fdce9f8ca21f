"""Shared fixtures of the transform tests."""
import numpy as np
import pytest


@pytest.fixture
def noise_face():
    """A 112x112 BGR uint8 image of uniform noise."""
    return np.random.default_rng(123).integers(0, 256, (112, 112, 3), dtype=np.uint8)


@pytest.fixture
def pixel_distance():
    """``f(points, size)`` -> ``[H, W]`` distance from each pixel to the nearest point.

    Pixel (x, y) sits at integer (x, y): the convention of cv2 drawing and of the warpAffine
    alignment behind the template points.
    """

    def distance(points, size=(112, 112)):
        ys, xs = np.mgrid[0:size[0], 0:size[1]]
        return np.min([np.hypot(xs - x, ys - y) for x, y in points], axis=0)

    return distance
