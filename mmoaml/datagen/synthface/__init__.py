"""SynthFace: a procedural, seeded face data set for trying OAML without downloading faces.

Every face is drawn from two independent random sources (:mod:`.traits`):

* **Identity traits** (:meth:`SynthFaceGenerator.identity_traits`): a vector of continuous traits
  drawn once per ``(seed, identity)``. They are spread over the whole face on purpose, with a
  large share in the lower face, so that a medical mask or a niqab removes real identity
  information and the upper face still keeps some:

  ==============  ===========================================================================
  region          traits
  ==============  ===========================================================================
  whole face      face width, cheek fullness, skin lightness and warmth, blotchiness, a
                  low-frequency skin texture field (mixed with a larger per-image field, so it
                  is a weak cue, not a signature)
  upper face      eye spacing, eye width / openness / tilt, iris hue / darkness / size,
                  under-eye shadow, brow thickness / arch / height / length / darkness / slope,
                  forehead height, freckles on the upper cheeks
  lower face      nose length / width / nostrils / bridge / tip, mouth height / width / corner
                  tilt, both lip thicknesses, lip redness / darkness, cupid's bow, jaw width,
                  chin length / width / cleft, nasolabial folds, jaw shadow, stubble shadow,
                  up to two faint marks (lower face only)
  hair            weak: a darkness / warmth offset inside a narrow dark palette and a hairline
                  offset, each smaller than the per-image variation of the same property
  ==============  ===========================================================================

  No trait is a strong binary cue: there are no beards, no high-contrast moles and no hair colour
  classes, which a previous prototype had and which let identity survive occlusion.

* **Nuisance** (:class:`Nuisance`): drawn per image. Small yaw / pitch (features move against
  the outline), the residual of a 5-point alignment (roll, scale, shift), expression (smile,
  open mouth, brow raise, gaze), a per-image jitter of every named trait (``trait_jitter``
  standard deviations; 1.5x that for the :data:`APPEARANCE_TRAITS`: make-up, tan, grooming),
  hair style and colour, background, illumination (gain, colour cast, a directional gradient),
  Gaussian blur, sensor noise and JPEG compression.

Faces are aligned like real crops (:mod:`.layout`): the identity's own five landmarks (eye
centres, nose tip, mouth corners, after pose and expression) are fitted to the ArcFace template
by a least-squares similarity, as face detectors' alignment does, so the landmarks of a rendered
face sit a few pixels from ``template_points`` (identity proportions and pose leave residuals,
as in real aligned data). A renderer also returns the face's true pixel mask: 1 = face skin and
features (eyes, brows, lips). **Hair is not face**, also where it covers the forehead or the
face's sides, and neither are neck and background; this matches face-parsing conventions, where
hair is its own class, and the occluders' "0 = occluder or not face".

Rendering (:mod:`.renderer`) is vectorised OpenCV drawing (anti-aliased polygons at the output
resolution, soft shading drawn at half resolution, blurred and warped once): about 1-2 ms per
112x112 face on one core (``tools/benchmarks/synthface_throughput.py``).

Seeding: identity traits from ``np.random.default_rng([seed, 1, identity])``; the nuisance of
image ``k`` of an identity from ``np.random.default_rng([seed, 2, identity, k])``
(:func:`nuisance_rng`; the occluded set uses tag 4, :func:`occluded_rng`). Test identities are
the ids from :data:`TEST_ID_OFFSET` on, so they never meet training identities whatever the
training set's size. :func:`write_synthface` (:mod:`.writer`) writes a data set to disk;
``mmoaml.datasets.SynthFaceDataset`` renders one in memory. See docs/synthface.md.
"""
from .generator import SYNTHFACE_VERSION, SynthFaceGenerator, cached_generator
from .renderer import RenderedFace
from .traits import (APPEARANCE_TRAITS, DEFAULT_TRAIT_JITTER, TEST_ID_OFFSET, TRAIT_DIM,
                     TRAIT_NAMES, Nuisance, nuisance_rng, occluded_rng)
from .writer import DEFAULT_OCCLUDERS, write_synthface

__all__ = [
    'SYNTHFACE_VERSION', 'TEST_ID_OFFSET', 'TRAIT_NAMES', 'TRAIT_DIM', 'APPEARANCE_TRAITS',
    'DEFAULT_TRAIT_JITTER', 'DEFAULT_OCCLUDERS', 'Nuisance', 'RenderedFace', 'SynthFaceGenerator',
    'cached_generator', 'write_synthface', 'nuisance_rng', 'occluded_rng'
]
