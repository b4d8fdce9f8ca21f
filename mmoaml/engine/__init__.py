from . import hooks, runners, wrappers  # noqa: F401
from .hooks import *  # noqa: F401,F403
from .runners import *  # noqa: F401,F403
from .wrappers import *  # noqa: F401,F403
