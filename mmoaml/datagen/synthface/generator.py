"""The SynthFace generator: seeded identities and images of one data set."""
from functools import lru_cache
from typing import Optional

import numpy as np

from .renderer import FaceRenderer, RenderedFace
from .traits import DEFAULT_TRAIT_JITTER, TRAIT_DIM, Nuisance, draw_identity_traits, nuisance_rng

__all__ = ['SYNTHFACE_VERSION', 'SynthFaceGenerator', 'cached_generator']

#: Bumped whenever a change alters the rendered pixels of a given seed; written to meta.json.
SYNTHFACE_VERSION = '1.1'


class SynthFaceGenerator:
    """Seeded renderer of aligned synthetic faces (see :mod:`mmoaml.datagen.synthface`).

    Args:
        seed (int): the data set's seed; identities and images are functions of it.
            Defaults to 0.
        image_size (int): output size ``S`` (square, ``S x S``), the 112 px ArcFace frame
            scaled. Defaults to 112.
        trait_jitter (float): standard deviation of the per-image offset of each named trait
            (make-up, weight, age between photos), in units of the traits' between-identity
            standard deviation; :data:`APPEARANCE_TRAITS` vary 1.5x as much. Defaults to
            :data:`DEFAULT_TRAIT_JITTER` (0.6). Calibration with a converged small CNN (64 px
            input, CosFace, 20 epochs; clean pairs of disjoint test identities): 98.8 % at 0.25
            (600 ids x 12), 92.5 % at 0.5 (600 x 12), 93.8 % at 0.5 and 90.6 % at 0.6
            (1500 x 8). A full-size baseline on more identities scores higher, hence 0.6: room
            to stay below about 97 %. Greying the probe's lower face costs that CNN about 18
            points, so the lower face carries a large share of identity.
    """

    def __init__(self,
                 seed: int = 0,
                 image_size: int = 112,
                 trait_jitter: float = DEFAULT_TRAIT_JITTER) -> None:
        if image_size < 32:
            raise ValueError(f'SynthFaceGenerator: image_size must be >= 32, got {image_size}')
        if trait_jitter < 0:
            raise ValueError(f'SynthFaceGenerator: trait_jitter must be >= 0, got {trait_jitter}')
        self.seed = int(seed)
        self.image_size = int(image_size)
        self.trait_jitter = float(trait_jitter)
        self._renderer = FaceRenderer(self.seed, self.image_size)

    def identity_traits(self, identity_id: int) -> np.ndarray:
        """The trait vector of identity ``identity_id`` (:func:`~.traits.draw_identity_traits`)."""
        return draw_identity_traits(self.seed, identity_id)

    def render_identity(self, identity_id: int, image_index: int,
                        neutral: bool = False) -> RenderedFace:
        """Render image ``image_index`` of identity ``identity_id`` (see :func:`nuisance_rng`).

        Args:
            neutral (bool): ignore ``image_index`` and render the neutral face.
        """
        rng = None if neutral else nuisance_rng(self.seed, identity_id, image_index)
        return self.render_face(self.identity_traits(identity_id), rng)

    def render(self, traits: np.ndarray, nuisance_rng: Optional[np.random.Generator] = None,
               return_mask: bool = False):
        """Render one face.

        Args:
            traits (np.ndarray): a vector from :meth:`identity_traits`.
            nuisance_rng (np.random.Generator, optional): draws the image's nuisance; None =
                the neutral face (:meth:`Nuisance.neutral`).
            return_mask (bool): also return the face mask. Defaults to False.

        Returns:
            np.ndarray | tuple: ``[S, S, 3]`` uint8 BGR, or ``(img, face_mask)`` with
            ``face_mask`` ``[S, S]`` float32 (1 = face).
        """
        face = self.render_face(traits, nuisance_rng)
        return (face.img, face.face_mask) if return_mask else face.img

    def render_face(self, traits: np.ndarray,
                    nuisance_rng: Optional[np.random.Generator] = None) -> RenderedFace:
        """Render one face with its mask and landmarks; arguments as :meth:`render`."""
        traits = np.asarray(traits, dtype=np.float64)
        if traits.shape != (TRAIT_DIM, ):
            raise ValueError(f'SynthFaceGenerator.render: traits must have shape ({TRAIT_DIM},) '
                             f'(from identity_traits), got {traits.shape}')
        if nuisance_rng is None:
            nu = Nuisance.neutral()
        else:
            nu = Nuisance.draw(nuisance_rng, self.trait_jitter, self.image_size)
        return self._renderer.render(traits, nu)


@lru_cache(maxsize=4)
def cached_generator(seed: int, image_size: int, trait_jitter: float) -> SynthFaceGenerator:
    """One generator per process and setting (its noise banks are built once)."""
    return SynthFaceGenerator(seed, image_size, trait_jitter)
