"""Layering rules of the package, read from the source: no import cycle, no private imports."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / 'mmoaml'


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules():
    return {_module_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if not node.level:
        return node.module or ''
    base = module.split('.')
    base = base if is_package else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return '.'.join(base + ([node.module] if node.module else []))


def _top_level_imports(module: str, path: Path):
    """``(imported module, imported names)`` of the imports executed when ``module`` loads."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    is_package = path.name == '__init__.py'
    for node in tree.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield _absolute(module, node, is_package), [a.name for a in node.names]


def _graph(modules):
    """Module -> the package modules that its top-level imports load."""
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for target, names in _top_level_imports(name, path):
            for candidate in [target] + [f'{target}.{n}' for n in names]:
                parts = candidate.split('.')
                # Importing a.b.c runs a, a.b and a.b.c.
                graph[name].update('.'.join(parts[:i]) for i in range(1, len(parts) + 1)
                                   if '.'.join(parts[:i]) in modules)
        graph[name].discard(name)
    return graph


def _layers(graph):
    """The same graph between the package's layers (``mmoaml.<layer>``; the root left out)."""
    def layer(module):
        return '.'.join(module.split('.')[:2])

    layers = {}
    for name, targets in graph.items():
        if name == 'mmoaml':
            continue
        edges = layers.setdefault(layer(name), set())
        edges.update(layer(t) for t in targets if t != 'mmoaml' and layer(t) != layer(name))
    return layers


def _cycle(graph):
    """One import cycle, or None (edges between a package and its own submodules aside)."""
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package importing its own submodules is how Python packages work.
            if nxt.startswith(node + '.') or node.startswith(nxt + '.'):
                continue
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, stack)
                if found:
                    return found
        state[node] = 'done'
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [])
            if found:
                return found
    return None


def test_no_import_cycle_inside_the_package():
    graph = _graph(_modules())
    assert _cycle(graph) is None
    assert _cycle(_layers(graph)) is None  # e.g. datasets -> datagen -> datasets


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({'a.x': {'b.y'}, 'b.y': {'a.x'}}) == ['a.x', 'b.y', 'a.x']
    assert _cycle({'a.x': {'b.y'}, 'b.y': set()}) is None


def test_no_module_imports_a_private_name_of_another_module():
    offenders = []
    for name, path in _modules().items():
        for target, names in _top_level_imports(name, path):
            private = [n for n in names if n.startswith('_') and not n.startswith('__')]
            if target.startswith('mmoaml') and (private or any(
                    part.startswith('_') and not part.startswith('__')
                    for part in target.split('.'))):
                offenders.append(f'{name}: from {target} import {private}')
    assert not offenders, offenders
