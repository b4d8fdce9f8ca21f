"""The projects' tests import project-local packages (``projects.<name>.<package>``) the way
their configs' ``custom_imports`` do, so the repository root must be importable."""
import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)
