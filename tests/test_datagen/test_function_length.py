"""mmoaml/datagen keeps every function short enough to read in one screen."""
import ast
from pathlib import Path

import mmoaml.datagen

#: Most lines a function or method may span, signature, docstring and body included.
MAX_LINES = 60
DATAGEN = Path(mmoaml.datagen.__file__).parent


def _function_lengths():
    for path in sorted(DATAGEN.rglob('*.py')):
        tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield (f'{path.relative_to(DATAGEN)}:{node.lineno} {node.name}',
                       node.end_lineno - node.lineno + 1)


def test_no_function_is_longer_than_the_limit():
    lengths = dict(_function_lengths())
    assert len(lengths) > 50  # the walk found the package's functions
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f'functions over {MAX_LINES} lines: {too_long}'
