"""Project-local code of the occluded re-identification example (registered in mmoaml's
registries on import: ``SynthPersonDataset``, ``RandomPersonOcclusion``,
``OccludedReIDMetric``)."""
from .dataset import SynthPersonDataset
from .generator import (HEIGHT, OCCLUDER_KINDS, WIDTH, PersonTraits, draw_occluder, identity_traits,
                        make_person, render_person)
from .metric import OccludedReIDMetric, retrieval_metrics
from .transforms import RandomPersonOcclusion
from .writer import write_synthperson

__all__ = [
    'SynthPersonDataset', 'RandomPersonOcclusion', 'OccludedReIDMetric', 'retrieval_metrics',
    'write_synthperson', 'make_person', 'render_person', 'draw_occluder', 'identity_traits',
    'PersonTraits', 'OCCLUDER_KINDS', 'HEIGHT', 'WIDTH'
]
