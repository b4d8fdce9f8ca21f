from . import samplers, transforms  # noqa: F401
from .samplers import *  # noqa: F401,F403
from .transforms import *  # noqa: F401,F403
