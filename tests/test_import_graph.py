"""The layers of the tree, checked on the source: project imports only go
down (functions <- utils/ops <- models <- utils/{data,weights,training}
<- the scripts), form no cycle, and sit at the top of each module unless a
comment on the line says why."""
import ast
import os

from tests.helpers.project_files import python_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('functions', 'models', 'utils')
# Layer of each module prefix; a module may import its own or lower layers.
# utils.compat and utils.backend are the foundation (nothing of the project
# below them); utils.vis draws arrays and is shared by the scripts;
# utils.demo_io picks demo.py's input and output files; utils.deploy
# exports to ONNX and runs it (its predictor must not import chainer);
# utils.threads sizes the thread pools, ours in functions included;
# utils.atomic_write writes every output whole or not at all;
# utils.printable escapes strings from files before they are printed;
# utils.protobuf_wire reads protobuf fields (caffemodels, ONNX checks);
# utils.inside_folder keeps paths named in files inside their folder.
LAYERS = [('utils.compat', 0), ('utils.backend', 0),
          ('utils.atomic_write', 0), ('utils.printable', 0),
          ('utils.protobuf_wire', 0), ('utils.inside_folder', 0),
          ('functions', 1),
          ('utils.threads', 2),
          ('utils.ops', 2), ('models', 3), ('utils.vis', 4),
          ('utils.demo_io', 4),
          ('utils.data', 4), ('utils.weights', 4), ('utils.training', 5),
          ('utils.deploy', 5), ('utils.detectron_parser', 6),
          ('utils.export_onnx', 6), ('utils.mobilenet_parser', 6),
          ('utils', 0)]


def _module_name(path):
    rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
    return rel[:-len('.__init__')] if rel.endswith('.__init__') else rel


def _sources():
    return python_files(PACKAGES)


def _project_imports(path):
    """(line, imported project module, at top level) of ``path``."""
    tree = ast.parse(open(path).read(), path)
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and \
                node.level == 0:
            names = [node.module] + ['{}.{}'.format(node.module, a.name)
                                     for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.split('.')[0] in PACKAGES and _is_module(name):
                yield node.lineno, name, id(node) in top


def _is_module(name):
    base = os.path.join(ROOT, *name.split('.'))
    return os.path.isfile(base + '.py') or os.path.isdir(base)


def _layer(module):
    return next(layer for prefix, layer in LAYERS
                if module == prefix or module.startswith(prefix + '.'))


def _graph():
    graph = {}
    for path in _sources():
        me = _module_name(path)
        graph[me] = {name for _, name, _ in _project_imports(path)
                     if name != me}
    return graph


def test_imports_only_go_down():
    bad = []
    for path in _sources():
        me = _module_name(path)
        if me in ('train', 'demo'):
            continue
        for line, name, _ in _project_imports(path):
            if _layer(name) > _layer(me):
                bad.append('{}:{} imports {}'.format(me, line, name))
    assert not bad, '\n'.join(bad)


def test_no_cycles():
    graph = _graph()
    state = {}

    def visit(node, stack):
        state[node] = 'open'
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 'open':
                cycle = stack[stack.index(nxt):] + [nxt]
                raise AssertionError('import cycle: ' + ' -> '.join(cycle))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 'done'

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_project_imports_sit_at_the_top():
    hidden = []
    for path in _sources():
        lines = open(path).read().splitlines()
        for line, name, top in _project_imports(path):
            text = lines[line - 1]
            if not top and '#' not in text and \
                    not text.strip().startswith('from utils import compat'):
                hidden.append('{}:{} {}'.format(
                    os.path.relpath(path, ROOT), line, text.strip()))
    assert not hidden, '\n'.join(hidden)


def test_models_see_only_utils_ops():
    for path in _sources():
        me = _module_name(path)
        if not me.startswith(('models', 'functions', 'utils.ops')):
            continue
        for line, name, _ in _project_imports(path):
            if name.startswith('utils') and name != 'utils':
                assert name.startswith(('utils.ops', 'utils.compat')), (
                    '{}:{} imports {}'.format(me, line, name))
