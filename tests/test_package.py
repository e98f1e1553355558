"""The package as shipped: what it carries, and docs/design.md true to it."""
import collections
import importlib.util
import re

from _train_helpers import REPO_ROOT


def test_test_support_is_not_in_the_package():
    assert importlib.util.find_spec("bertjax.data.reference_original") is None
    assert (REPO_ROOT / "tests" / "reference_original.py").is_file()


def test_design_doc_lists_every_module_and_no_other():
    design = (REPO_ROOT / "docs" / "design.md").read_text()
    entries = re.findall(r"^\s+(\w+\.py)\b", design, re.MULTILINE)
    assert [name for name, count in collections.Counter(entries).items() if count > 1] == [], "listed twice"
    listed = set(entries)
    modules = {path.name for path in (REPO_ROOT / "bertjax").rglob("*.py") if path.name != "__init__.py"}
    assert modules - listed == set(), "modules missing from docs/design.md"
    assert listed - modules - {"__init__.py", "reference_original.py"} == set(), "listed, not there"
