from . import functional, metrics  # noqa: F401
from .functional import *  # noqa: F401,F403
from .metrics import *  # noqa: F401,F403
from .results_table import format_results_table  # noqa: F401
