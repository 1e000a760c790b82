"""The package's import graph: no circles, and the command line's ``--help`` / ``--version`` without torch.

Import circles are found statically: every ``import`` / ``from ... import`` statement of every module under
``src/lightmedseg`` is read with ``ast``, *function-level imports included* (a circle hidden inside a
function still means two modules that cannot be understood, tested or changed apart, and it is how the
circles of issue 27 were hidden). An edge goes to the module named (``from lightmedseg.inference import
tta`` -> ``lightmedseg.inference.tta``; ``from lightmedseg.inference.cards import load_card`` ->
``lightmedseg.inference.cards``), not to the parent packages Python also runs; ``importlib`` calls with a
string (the CLI's subcommand table, ``lightmedseg.inference``'s lazy names) are not statements and are not
counted.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lightmedseg"


def _modules(root: Path = PACKAGE) -> dict[str, Path]:
    mods = {}
    for f in root.rglob("*.py"):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _imported(node: ast.AST, module: str, is_package: bool, mods: dict[str, Path]) -> list[str]:
    """The names of the package's modules that one import statement imports."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative: from the module's package, up level - 1 packages
            here = module.split(".") if is_package else module.split(".")[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join(here + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
    else:
        return []
    out = []
    for name in names:
        while name and name not in mods:  # `import a.b.c` of a function or class name: its module
            name = name.rpartition(".")[0]
        if name and name.split(".")[0] == PACKAGE.name and name != module:
            out.append(name)
    return out


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports anywhere in its body (function-level imports included)."""
    mods = _modules(root)
    graph = {}
    for module, path in mods.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        graph[module] = {t for node in ast.walk(tree) for t in _imported(node, module, path.name == "__init__.py", mods)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle ``[a, b, ..., a]`` of ``graph``, or ``None`` when it is acyclic (depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert "lightmedseg.inference.backends" in graph and len(graph) > 50  # the walk saw the package
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_function_level_circle(tmp_path: Path) -> None:
    pkg = tmp_path / "lightmedseg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from lightmedseg.sub.b import g\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("def h():\n    from .a import f\n")
    (pkg / "sub" / "d.py").write_text("import lightmedseg.sub.a\n")
    graph = import_graph(pkg)
    assert graph["lightmedseg.sub.b"] == {"lightmedseg.sub.c"} and graph["lightmedseg.sub.d"] == {"lightmedseg.sub.a"}
    assert find_cycle(graph) == ["lightmedseg.sub.a", "lightmedseg.sub.b", "lightmedseg.sub.c", "lightmedseg.sub.a"]
    (pkg / "sub" / "c.py").write_text("def h():\n    pass\n")
    assert find_cycle(import_graph(pkg)) is None


def test_converting_and_running_are_separate_modules() -> None:
    graph = import_graph()
    runners = ["lightmedseg.inference.openvino_backend", "lightmedseg.inference.onnx_backend"]
    converters = ["lightmedseg.inference.openvino_convert", "lightmedseg.inference.export"]
    for runner in runners:
        assert not graph[runner] & set(converters), (runner, graph[runner])
    assert "lightmedseg.inference.export" not in graph["lightmedseg.inference.openvino_convert"]  # no ONNX route


def _modules_after(code: str) -> set[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PACKAGE.parent)] + sys.path[1:]))
    proc = subprocess.run([sys.executable, "-c", code + "\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return set(proc.stdout.split())


HEAVY = {"torch", "monai", "openvino", "onnx", "onnxruntime", "SimpleITK", "scipy"}


def test_help_and_version_import_no_torch() -> None:
    loaded = _modules_after("import lightmedseg, lightmedseg.cli.main as m\nm.build_parser([])\n"
                            "import contextlib, io\nwith contextlib.redirect_stdout(io.StringIO()):\n"
                            "    assert m.main(['--version']) == 0\n"
                            "    try:\n        m.main(['--help'])\n    except SystemExit as e:\n        assert e.code == 0")
    assert "lightmedseg.cli.main" in loaded
    assert not loaded & HEAVY, sorted(loaded & HEAVY)
    assert not {m for m in loaded if m.startswith("lightmedseg.cli.") and m != "lightmedseg.cli.main"}


def test_predict_options_build_without_torch() -> None:
    loaded = _modules_after("import lightmedseg.cli.main as m\np = m.build_parser(['predict'])\n"
                            "assert p.parse_args(['predict', '-i', 'a', '-o', 'b', '-m', 'acdc', '--device', 'mps']).device == 'mps'")
    assert "lightmedseg.cli.predict" in loaded and "torch" not in loaded
