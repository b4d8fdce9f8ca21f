"""Import a script of ``tools/`` as a module (the tools are scripts, not a package)."""
import importlib.util
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).parents[2] / 'tools'


def load_tool(relative_path: str, name: str) -> ModuleType:
    """The module of ``tools/<relative_path>``, registered under nothing but ``name``."""
    spec = importlib.util.spec_from_file_location(name, TOOLS / relative_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
