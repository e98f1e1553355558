"""The package's import graph, read from its source: no circle, and every arrow runs down the house's floors."""
import ast
import collections
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "bertjax"

# The floors, lowest first. A module may import from its own floor or a lower one, never a higher one.
FLOORS = (
    ("bertjax", "bertjax.errors", "bertjax.optimizer_defaults", "bertjax.losses", "bertjax.hardware",
     "bertjax.distributed", "bertjax.sharding", "bertjax.paths", "bertjax.workdir_layout", "bertjax.formatting"),
    ("bertjax.data", "bertjax.data.*"),  # text -> vocab -> examples -> dataset -> batches; never the model
    ("bertjax.tasks", "bertjax.tasks.*"),      # fine-tuning files and metrics (numpy)
    ("bertjax.layers", "bertjax.model", "bertjax.heads", "bertjax.train_state", "bertjax.train_step",
     "bertjax.batch_ramp", "bertjax.train_clock"),
    ("bertjax.convert", "bertjax.convert.*", "bertjax.attention_analysis"),
    ("bertjax.attention_viewer", "bertjax.attention_viewer.*"),   # the interactive viewer, on the analysis
    ("bertjax.visualization", "bertjax.visualize"),              # the notebook API and the viewer's command
    ("bertjax.objectives",),
    ("bertjax.task", "bertjax.finetune"),
    ("bertjax.checkpoint", "bertjax.metrics_writer"),
    ("bertjax.run_config",),
    ("bertjax.train",),
    ("bertjax.aot", "bertjax.benchmark", "bertjax.benchmark.*"),  # commands above the train loop
)


def modules() -> dict[str, pathlib.Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the package's modules it imports}, at module level or inside functions."""
    found = modules()
    graph = collections.defaultdict(set)
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base] * bool(base))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in found else base for alias in node.names]
            graph[name].update(t for t in targets if t in found and t != name)
    return graph


def floor(name: str) -> int:
    for index, members in enumerate(FLOORS):
        for member in members:
            if name == member or (member.endswith(".*") and name.startswith(member[:-1])):
                return index
    raise AssertionError(f"{name} is on no floor of tests/test_imports.py: place it in FLOORS")


def test_every_module_has_a_floor():
    for name in modules():
        floor(name)


def test_no_arrow_runs_up():
    upward = [f"{a} -> {b}" for a, targets in import_graph().items() for b in targets if floor(b) > floor(a)]
    assert not upward


def test_no_import_circle():
    graph = import_graph()
    state = {}

    def visit(name, trail):
        if state.get(name) == "done":
            return
        assert state.get(name) != "open", "import circle: " + " -> ".join([*trail, name])
        state[name] = "open"
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        state[name] = "done"

    for name in sorted(modules()):
        visit(name, [])


def test_heads_sit_right_above_the_model():
    assert import_graph()["bertjax.heads"] <= {"bertjax.errors", "bertjax.layers", "bertjax.model"}


@pytest.mark.parametrize("module, absent", [
    ("bertjax.objectives", ("safetensors", "bertjax.convert", "bertjax.data.tokenizer", "tokenizers")),
    ("bertjax.heads", ("safetensors", "bertjax.convert")),
])
def test_import_does_not_load(module, absent):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in {{'safetensors', " \
           f"'tokenizers'}} or m.startswith(('bertjax.convert', 'bertjax.data.tokenizer'))))"
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert not [name for name in eval(loaded.stdout) if name.startswith(absent)]  # noqa: S307  (our own output)
