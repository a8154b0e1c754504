"""The project's structure: no module imports form a circle, and every module imports on its own.

The graph is read from the source (every `import`, at module level and inside functions), so a
cycle is found even where a lazy import would hide it until a particular code path runs.
"""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.fast

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ('mylib', 'converters')


def project_modules():
    """{module name: file} of the library packages and the scripts at the repository's root."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob('*.py')):
            parts = path.relative_to(REPO).with_suffix('').parts
            name = '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)
            modules[name] = path
    for path in sorted(REPO.glob('*.py')):
        modules[path.stem] = path
    return modules


def imported_names(path, module, is_package):
    """The absolute names of everything `path` imports (module `module`)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.') if is_package else module.split('.')[:-1]
                base = base[:len(base) - (node.level - 1)]
                prefix = '.'.join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            names += [prefix] + ['%s.%s' % (prefix, alias.name) for alias in node.names]
    return names


def import_graph():
    """{module: set of project modules it imports}, with the packages Python initialises on the way."""
    modules = project_modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in imported_names(path, module, path.name == '__init__.py'):
            parts = name.split('.')
            for end in range(1, len(parts) + 1):
                target = '.'.join(parts[:end])
                # importing a.b.c initialises a and a.b first, unless the importer is inside them already
                if target in modules and target != module and not module.startswith(target + '.'):
                    edges.add(target)
        graph[module] = edges
    return graph


def find_cycle(graph):
    """A list of modules forming a circle, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 'open':
                return stack[stack.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 'done'
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert 'mylib.zoo' in graph and 'converters.convert' in graph['mylib.zoo']  # the graph is read
    cycle = find_cycle(graph)
    assert cycle is None, 'import circle: %s' % ' -> '.join(cycle)


def test_the_cycle_finder_finds_a_circle():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': {'b'}, 'b': set()}) is None


def test_the_library_does_not_reach_the_scripts():
    """Scripts are thin layers over the library; no library module imports a script."""
    graph, scripts = import_graph(), {path.stem for path in REPO.glob('*.py')}
    offenders = {module: graph[module] & (scripts | {'converters.extract_weights'})
                 for module in graph if module.startswith(PACKAGES)}
    assert not any(offenders.values()), offenders


# Run as `python -c IMPORT_EACH name...` in the repository: one fresh fork per module (maxtasksperchild=1), two
# at a time, of an interpreter that has imported numpy and mxnet and nothing of the project. Those two are
# about 2.5 s of every module's import (a new interpreter per module: a minute for the 40), and the project
# sets nothing at import time that they read.
IMPORT_EACH = r"""
import importlib, json, multiprocessing, sys, traceback
import numpy, mxnet

def import_alone(name):
    try:
        importlib.import_module(name)
    except BaseException:
        return name, traceback.format_exc().strip().splitlines()[-1]
    return name, 'tensorflow' in sys.modules

loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('mylib', 'converters', 'tensorflow'))
assert not loaded, loaded
with multiprocessing.get_context('fork').Pool(2, maxtasksperchild=1) as pool:
    print(json.dumps(dict(pool.imap_unordered(import_alone, sys.argv[1:]))))
"""


def test_every_module_imports_in_a_fresh_interpreter():
    """Each library module imports cleanly as the first and only one of the project, each in its own
    process (see IMPORT_EACH), and TensorFlow is not loaded."""
    names = sorted(name for name in project_modules() if name.startswith(PACKAGES))
    assert len(names) > 30 and 'mylib' in names and 'converters.read_tf' in names
    result = subprocess.run([sys.executable, '-c', IMPORT_EACH, *names], cwd=REPO, capture_output=True, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), timeout=600)
    assert result.returncode == 0, result.stderr
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])  # name: True if TensorFlow got loaded, or the error
    assert sorted(outcomes) == names
    assert {name: outcome for name, outcome in outcomes.items() if outcome is not False} == {}
