"""gearshift's modules import one way, down the layers stated in `gearshift/__init__.py`.

Every import of a gearshift module (at the top of a file or inside a function: both run) is read
from the source with `ast`. An edge from a layer to a higher one, or a cycle between modules, fails
the test with its file and line; so does torch reached from the kernels, the passes or the
compression math (the compiler half must run without the training side).
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Lowest first: a module may import its own layer and the layers below it, never one above.
LAYERS = [
    ("base", ["errors", "spec", "version"]),
    ("compress", ["compress"]),
    ("runtime", ["runtime"]),
    ("schedules", ["schedules"]),
    ("passes", ["relay_passes"]),
    ("frontend", ["frontend"]),
    ("tune", ["tune"]),
    ("driver", ["driver", "compiler", "levels_compiler", "level_search", "level_latency", "codecheck", "bench", "autotune", "gpu_check"]),
    ("suites", ["suites"]),
    ("cli", ["cli"]),
    ("package", [""]),  # gearshift/__init__.py: the public API, re-exported from below
]
TORCH_FREE = ["compress", "schedules", "relay_passes"]  # neither they nor what they import use torch
SKIP = {".venv", "tests", "benchmarks", "fuzz", "out", "gearshift.egg-info", "build", "docs"}


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if parts[0] in SKIP or parts[0].startswith("."):
            continue
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        dotted = dotted.removesuffix("__init__").rstrip(".")
        found[dotted] = path
    return found


@functools.lru_cache(maxsize=None)
def syntax(path: Path) -> ast.Module:
    """A module's syntax tree, parsed once for all the checks."""
    return ast.parse(path.read_text(), str(path))


def imports(path: Path, dotted: str, known: dict[str, Path]) -> list[tuple[str, int, str]]:
    """(gearshift module or "" for the package, line, raw name) for every import; third-party
    imports come back with module None."""
    package = dotted if path.name == "__init__.py" else dotted.rpartition(".")[0]
    out = []
    for node in ast.walk(syntax(path)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1] if package else []
                module = ".".join([*base, node.module] if node.module else base)
                names = [f"gearshift.{module}".rstrip(".")] + [f"gearshift.{module}.{a.name}" for a in node.names]
            else:
                module = node.module or ""
                names = [module] + [f"{module}.{a.name}" for a in node.names]
        for name in names:
            out.append((resolve(name, known), node.lineno, name))
    return out


def resolve(name: str, known: dict[str, Path]) -> str | None:
    """The gearshift module `name` refers to ("" for the package itself), or None if not gearshift."""
    if name != "gearshift" and not name.startswith("gearshift."):
        return None
    inner = name.removeprefix("gearshift").lstrip(".")
    while inner and inner not in known:
        inner = inner.rpartition(".")[0]
    return inner


def layer_of(module: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if module == prefix or (prefix and module.startswith(prefix + ".")):
                return index
    raise AssertionError(f"gearshift.{module} is in no layer: add it to LAYERS")


def graph() -> tuple[dict[str, set[str]], list[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    back = []
    for module, path in known.items():
        for target, line, _ in imports(path, module, known):
            if target is None or target == module:
                continue
            edges[module].add(target)
            if layer_of(target) > layer_of(module):
                back.append(f"{path.relative_to(ROOT)}:{line}: {LAYERS[layer_of(module)][0]} gearshift.{module} "
                            f"imports {LAYERS[layer_of(target)][0]} gearshift.{target}".replace("gearshift. ", "gearshift "))
    return edges, back


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_is_in_a_layer():
    for module in modules():
        layer_of(module)


def test_imports_go_down_the_layers():
    _, back = graph()
    assert not back, "imports against the layer order:\n" + "\n".join(back)


def test_no_import_cycles():
    edges, _ = graph()
    assert not cycles(edges), f"import cycles: {cycles(edges)}"


def test_kernels_passes_and_compression_math_never_reach_torch():
    known = modules()
    edges, _ = graph()
    offenders = []
    for start in (m for m in known if any(m == p or m.startswith(p + ".") for p in TORCH_FREE)):
        seen, todo = set(), [start]
        while todo:
            module = todo.pop()
            if module in seen or module == "":
                continue  # the package's __init__ is the public API, not a dependency of the layers
            seen.add(module)
            for target, line, raw in imports(known[module], module, known):
                if target is None and raw.split(".")[0] == "torch":
                    offenders.append(f"gearshift.{start} reaches torch through {known[module].relative_to(ROOT)}:{line}")
            todo.extend(edges[module])
    assert not offenders, "\n".join(offenders)


def test_the_check_catches_a_back_edge_and_a_cycle(tmp_path):
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("schedules.kernels.bsr") < layer_of("relay_passes.block_sparse") < layer_of("driver")
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from gearshift.driver import build\n")
    known = {"driver": fake, "schedules.x": fake}
    assert imports(fake, "schedules.x", known) == [("driver", 2, "gearshift.driver"), ("driver", 2, "gearshift.driver.build")]
    relative = tmp_path / "y.py"
    relative.write_text("from ..driver import build\nfrom . import asm\n")
    known = {"driver": fake, "schedules": fake, "schedules.y": relative, "schedules.asm": fake}
    assert [(m, line) for m, line, _ in imports(relative, "schedules.y", known)] == [
        ("driver", 1), ("driver", 1), ("schedules", 2), ("schedules.asm", 2)]
