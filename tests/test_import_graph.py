"""The import graph of the four packages: no cycle, and the arrows one way (pipeline -> kernels -> deploy -> core),
with ``core`` (shipped to devices with the runner) on the standard library alone.

The packages are the repository's top-level folders, imported as ``spiralprune.pipeline``, ``spiralprune.kernels``,
``spiralprune.deploy`` and ``spiralprune.core`` (spiralprune/__init__.py); nothing of ours names them by the bare
folder name, which in an installed environment is another distribution's package, if any.

Every import counts: module level, inside functions and under ``TYPE_CHECKING``, since each one is
a dependency a reader has to follow. Package ``__init__`` files re-exporting their own submodules
are not edges (that is what a package is)."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAME = "spiralprune"  # the import name the packages install under
PACKAGES = ("pipeline", "kernels", "deploy", "core")
MAY_IMPORT = {"core": {"core"}, "deploy": {"deploy", "core"}, "kernels": {"kernels", "deploy", "core"},
              "pipeline": set(PACKAGES)}
# Where our Python lives: the packages, the import name's own folder, the tests and the benchmarks.
SOURCES = (*PACKAGES, NAME, "tests", "benchmarks")
# What else names our modules: specs in configs, ``-m`` targets in the Makefile, the docs.
TEXT_FILES = ("Makefile", "Dockerfile*", ".ci/*", "*.toml", "*.md", "examples/**/*.md", "examples/**/*.y*ml",
              "pipeline/configs/*.yaml")
_BARE = re.compile(rf"(?<![\w./-])({'|'.join(PACKAGES)})\.(\w+)")


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = (NAME, *path.relative_to(ROOT).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _layer(module: str) -> str:
    """``spiralprune.kernels.table`` -> ``kernels``."""
    return module.split(".")[1]


def imported_names(name: str, path: Path) -> list[str]:
    """Every name module ``name`` (at ``path``) imports, relative imports resolved: ``a.b`` for ``from a import b``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets += [f"{base}.{alias.name}" for alias in node.names]
    return targets


def import_graph() -> dict[str, set[str]]:
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = imported_names(name, path)
        edges[name] = {
            target
            for target in map(resolve, targets)
            if target and target != name and not (path.name == "__init__.py" and target.startswith(name + "."))
        }
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_type_only_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back() -> None:
    assert cycles(import_graph()) == []


def test_the_arrows_point_one_way() -> None:
    wrong = [
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in targets
        if _layer(target) not in MAY_IMPORT[_layer(name)]
    ]
    assert wrong == []


def test_core_imports_the_standard_library_alone() -> None:
    """``core`` runs on a device beside the runner, where only Python is sure to be: nothing outside the standard
    library (numpy included) and nothing of ours but ``core``."""
    wrong = [
        f"{name} -> {target}"
        for name, path in _modules().items()
        if _layer(name) == "core"
        for target in imported_names(name, path)
        if not (target.split(".")[0] in sys.stdlib_module_names or target.startswith(f"{NAME}.core."))
    ]
    assert wrong == []


def bare_names(source: str) -> list[str]:
    """Names of our modules that ``source`` imports or spells (a spec, a ``-m`` target, a patch target, a
    docstring) by the bare folder name: ``pipeline.cli`` where ``spiralprune.pipeline.cli`` is meant.
    ``deploy.json`` or ``tests.pipeline.gate`` are not ours and do not count."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom) and not node.level and (node.module or "").split(".")[0] in PACKAGES:
            found.append(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            found += [m.group(0) for m in _BARE.finditer(node.value) if _is_ours(m.group(1), m.group(2))]
    return found


def _is_ours(package: str, child: str) -> bool:
    return (ROOT / package / child).is_dir() or (ROOT / package / f"{child}.py").is_file()


def test_the_bare_name_finder_finds_imports_and_names() -> None:
    source = (
        "import kernels\nimport core.errors as e\nfrom pipeline.cli import main\nfrom pipeline import specs\n"
        "SPEC = 'pipeline.zoo.digits_resnet:digits_resnet'\nARGV = ['-m', 'pipeline.cli']\n"
    )
    assert bare_names(source) == ["kernels", "core.errors", "pipeline.cli", "pipeline",
                                  "pipeline.zoo", "pipeline.cli"]
    ours = (
        "import spiralprune.kernels\nfrom spiralprune.pipeline.cli import main\nfrom .errors import InputError\n"
        "SPEC = 'spiralprune.pipeline.zoo.digits_resnet:digits_resnet'\nOUT = 'deploy.json'\n"
        "from tests.pipeline.gate.digits_model import digits_net\n"
    )
    assert bare_names(ours) == []


def test_nothing_of_ours_uses_the_bare_package_names() -> None:
    wrong = [
        f"{path.relative_to(ROOT)}: {name}"
        for folder in SOURCES
        for path in sorted((ROOT / folder).rglob("*.py"))
        if path != Path(__file__).resolve()
        for name in bare_names(path.read_text())
    ]
    wrong += [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for pattern in TEXT_FILES
        for path in sorted(ROOT.glob(pattern))
        for match in _BARE.finditer(path.read_text())
        if _is_ours(match.group(1), match.group(2))
    ]
    assert wrong == []
