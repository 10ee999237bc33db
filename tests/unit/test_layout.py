"""The package's layout rules: no import circles, lower layers never import upper ones,
inference without Lightning or Hydra, no module over 400 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SOURCE / "semclust"
MODULES = sorted(PACKAGE.rglob("*.py"))
TRAINING_STACK = ("pytorch_lightning", "lightning", "hydra", "omegaconf")


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


NAMES = {module_name(path): path for path in MODULES}


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (``from package import
    submodule`` counts as the submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def semclust_imports(path: Path) -> set[str]:
    return {name for name in imported_modules(path) if name in NAMES} - {module_name(path)}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (a list of modules, first = last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for successor in sorted(graph[node]):
            if state.get(successor) == "open":
                return stack[stack.index(successor) :] + [successor]
            if successor not in state and (cycle := visit(successor)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_circle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_module_imports_itself_round_in_a_circle():
    # A package's __init__ importing its own submodules is not a circle by itself, so the
    # edges from a submodule up to its own package's __init__ are left out.
    graph = {
        name: {
            other
            for other in semclust_imports(path)
            if not (path.name != "__init__.py" and name.startswith(other + "."))
        }
        for name, path in NAMES.items()
    }
    assert find_cycle(graph) is None


@pytest.mark.parametrize(
    "layer", ["clustering", "inference", "reporting", "models", "losses", "grouping"]
)
def test_lower_layers_never_import_the_training_stack(layer):
    offenders = {}
    for path in (PACKAGE / layer).rglob("*.py"):
        bad = {
            name
            for name in imported_modules(path)
            if name.startswith(TRAINING_STACK)
            or name.startswith(("semclust.stages", "semclust.pipeline", "semclust.evaluation"))
            or name in ("semclust.config_store", "semclust.shorthand", "semclust.cli")
        }
        if bad:
            offenders[str(path.relative_to(PACKAGE))] = sorted(bad)
    assert offenders == {}


def test_clustering_and_reporting_never_import_inference():
    for layer in ("clustering", "reporting"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert not any(n.startswith("semclust.inference") for n in imported_modules(path))


def test_importing_inference_loads_neither_lightning_nor_hydra():
    code = (
        "import sys, semclust.inference, semclust.inference.run_report, "
        "semclust.inference.cluster_features, semclust.reporting, semclust.clustering.choose_k\n"
        f"print(sorted(m for m in sys.modules if m.startswith({TRAINING_STACK!r})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_command_lines_check_their_input_before_torch_loads():
    """train.py and evaluate.py compose and check the config, and ``semclust`` parses its
    arguments, with these modules only; torch, scikit-learn and Lightning take ~8 s to load,
    and a mistyped value should not wait for them."""
    code = (
        "import sys, semclust.config_checks, semclust.config_store, semclust.shorthand, "
        "semclust.runlog, semclust.budget, semclust.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'sklearn', 'pytorch_lightning', 'numpy')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_no_module_is_over_400_lines():
    lengths = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in MODULES}
    assert {name: length for name, length in lengths.items() if length > 400} == {}
