"""Data generators: the SynthFace data set and occluded variants of verification sets.

Generators render or write data; the registered datasets that read it live in
``mmoaml.datasets`` (``SynthFaceDataset`` renders SynthFace in memory with this generator).
"""
from .occluded_benchmark import (PROTOCOLS, OcclusionProtocol, VariantFiles, grid_masks_path_for,
                                 load_grid_masks, make_occluded_variants, regenerate_from_log)
from .synthface import (APPEARANCE_TRAITS, DEFAULT_OCCLUDERS, DEFAULT_TRAIT_JITTER,
                        SYNTHFACE_VERSION, TEST_ID_OFFSET, TRAIT_DIM, TRAIT_NAMES, Nuisance,
                        RenderedFace, SynthFaceGenerator, nuisance_rng, occluded_rng,
                        write_synthface)

__all__ = [
    'SYNTHFACE_VERSION', 'TEST_ID_OFFSET', 'TRAIT_NAMES', 'TRAIT_DIM', 'APPEARANCE_TRAITS',
    'DEFAULT_TRAIT_JITTER', 'DEFAULT_OCCLUDERS', 'Nuisance', 'RenderedFace', 'SynthFaceGenerator',
    'write_synthface', 'nuisance_rng', 'occluded_rng', 'OcclusionProtocol', 'PROTOCOLS',
    'VariantFiles', 'make_occluded_variants', 'regenerate_from_log', 'grid_masks_path_for',
    'load_grid_masks'
]
