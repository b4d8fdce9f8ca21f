from . import hooks, optimizers, runners, wrappers  # noqa: F401
from .hooks import *  # noqa: F401,F403
from .optimizers import *  # noqa: F401,F403
from .runners import *  # noqa: F401,F403
from .wrappers import *  # noqa: F401,F403
