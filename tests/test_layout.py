"""The layout rules of the package, checked on the source (docs/interfaces.md, "Layout and data flow").

* no import circle between bioreg's modules, counting imports inside functions (lazy imports) too;
* layers: a module imports only from its own layer or lower ones (errors/io → layers, models, data →
  lit → evaluate → config → results → app and launch), counting lazy imports too;
* no test module imports another test module (shared pieces live in tests/helpers/);
* the README's layout tree names every module of the package;
* no function in src/ is longer than 60 lines, data tables (one ``return`` of a literal) aside.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"

#: layers, lowest first; a module belongs to the longest prefix that names it
LAYERS = [
    ("bioreg", "bioreg.errors", "bioreg.io", "bioreg.config.legacy"),  # config.legacy: pure dict functions
    ("bioreg.results.records",),  # the record format, which evaluators read too (a reference model's record)
    ("bioreg.layers", "bioreg.models", "bioreg.data"),
    ("bioreg.lit",),
    ("bioreg.evaluate",),
    ("bioreg.config",),
    ("bioreg.results",),
    ("bioreg.app", "bioreg.launch"),  # orchestration: runs, launchers, their infrastructure
]


def _modules() -> dict[str, Path]:
    out = {}
    for p in (SRC / "bioreg").rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every bioreg module ``name`` imports, at module level or inside a function."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*up, base] if base else up)
            found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names}
    return {m for m in found if m in MODULES and m != name}


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    best, rank = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    return rank


def test_the_import_graph_is_read():
    assert len(MODULES) > 50 and "bioreg.app.run" in GRAPH["bioreg.app.cli"]
    assert "bioreg.data.occlusion" in GRAPH["bioreg.data.device"]  # relative imports resolved


def test_no_import_circle_lazy_imports_included():
    cycles, state, stack = [], {}, []

    def visit(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(GRAPH[u]):
            if state.get(v) == 1:
                cycles.append(" -> ".join([*stack[stack.index(v):], v]))
            elif v not in state:
                visit(v)
        stack.pop()
        state[u] = 2

    for m in sorted(GRAPH):
        if m not in state:
            visit(m)
    assert not cycles, cycles


def test_no_module_imports_a_higher_layer():
    up = [f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
          for m, deps in GRAPH.items() for d in deps
          if _layer(d) > _layer(m)]
    assert all(_layer(m) >= 0 for m in MODULES), [m for m in MODULES if _layer(m) < 0]
    assert not up, up


def test_no_test_module_imports_another():
    bad = []
    for p in sorted((REPO / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad += [f"{p.relative_to(REPO)}: {n}" for n in names
                    if re.match(r"(tests\.)?(test_|conftest)", n)]
    assert not bad, bad


def test_readme_layout_names_every_module():
    """Each ``src/bioreg/<pkg>/`` line of the README's layout block opens that package; the ``*.py`` names
    on it and on the lines below it, up to the next such line, are its modules (a package line stands
    for its ``__init__.py``)."""
    text = (REPO / "README.md").read_text()
    block = text.split("## Layout", 1)[1].split("```", 2)[1]
    listed: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        m = re.match(r"src/(bioreg(?:/\w+)*)/\s", line + " ")
        if m:
            current = m.group(1).replace("/", ".")
        if current:
            listed.setdefault(current, set()).update(re.findall(r"\b(\w+)\.py\b", line))
    missing = [str(p.relative_to(SRC)) for name, p in MODULES.items() if p.name != "__init__.py"
               and p.stem not in listed.get(str(p.parent.relative_to(SRC)).replace("/", "."), set())]
    assert not missing, f"not in the README's layout tree: {missing}"


#: the longest a function in src/ may be, in lines from its ``def`` to its last line (decorators aside)
MAX_FUNCTION_LINES = 60


def _is_data(node: ast.AST) -> bool:
    """A literal display: constants, names and attributes in (nested) dicts, lists, tuples and sets."""
    if isinstance(node, (ast.Constant, ast.Name, ast.Attribute)):
        return True
    if isinstance(node, ast.Dict):
        return all(k is None or _is_data(k) for k in node.keys) and all(_is_data(v) for v in node.values)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_data(e) for e in node.elts)
    if isinstance(node, ast.UnaryOp):  # -1
        return _is_data(node.operand)
    return False


def _is_data_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A data table: a function whose body, after its docstring, is one ``return`` of a literal display."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    return len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None \
        and _is_data(body[0].value)


def _long_functions(limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """``path:Qualified.name:lines`` of every function in src/ longer than ``limit`` lines, data tables
    aside."""
    out = []

    def visit(node: ast.AST, prefix: str, path: Path) -> None:
        for child in ast.iter_child_nodes(node):
            name = prefix
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = child.end_lineno - child.lineno + 1
                if n > limit and not _is_data_table(child):
                    out.append(f"{path.relative_to(SRC)}:{name}:{n}")
            visit(child, f"{name}." if name != prefix else prefix, path)

    for p in sorted(SRC.rglob("*.py")):
        visit(ast.parse(p.read_text()), "", p)
    return out


def test_the_function_length_check_sees_long_functions_and_tables():
    tree = ast.parse("def table():\n    'doc'\n    return {'a': [1, -2, X.y], 'b': (None,)}\n"
                     "def code():\n    return {'a': f(1)}\n")
    assert [_is_data_table(f) for f in tree.body] == [True, False]
    assert all(int(s.rsplit(":", 1)[1]) > 10 for s in _long_functions(10)) and len(_long_functions(10)) > 50


def test_no_function_over_60_lines():
    """No function in src/ is longer than 60 lines (split it into named helpers), data tables aside."""
    assert not _long_functions(), _long_functions()
