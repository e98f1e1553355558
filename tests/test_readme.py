"""README.md is the front door and docs/*.md the rest: keep the README short, and every link, module, config and
file path the pages name pointing at something in the tree. Plain text checks: no JAX, no imports of bertjax."""
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_BYTES = 12_000

_FENCE = re.compile(r"^(```|~~~)")
_LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_IMAGE = re.compile(r"!\[[^\]\n]*\]\(([^)\s]+)\)")
_INLINE_CODE = re.compile(r"`[^`\n]*`")
_MODULE = re.compile(r"python -m (bertjax(?:\.[A-Za-z_]\w*)*)")
_CONFIG = re.compile(r"--config=(configs/[\w./-]+\.py)")
_SCRIPT = re.compile(r"python ((?:bench|scripts)/[\w./-]+\.py)")
# Repository paths named in inline code (`tests/test_packing.py`, `bench/results/packing.md`, `data/demo_ko/`).
_REPO_PATH = re.compile(r"`((?:bench|configs|data|notebooks|scripts|tests)/[\w./-]*)`")


def _split(text: str) -> tuple[str, str]:
    """(prose, code): the text outside fenced code blocks, and the text inside them."""
    prose, code, fenced = [], [], False
    for line in text.splitlines():
        if _FENCE.match(line.strip()):
            fenced = not fenced
            continue
        (code if fenced else prose).append(line)
    return "\n".join(prose), "\n".join(code)


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation other than '-' and '_' dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose, _ = _split(_read(page))
    anchors, seen = set(), {}
    for line in prose.splitlines():
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = _slug(match.group(1))
            anchors.add(slug if slug not in seen else f"{slug}-{seen[slug]}")
            seen[slug] = seen.get(slug, 0) + 1
    return anchors


def _links(page: Path) -> list[str]:
    prose, _ = _split(_read(page))
    prose = _INLINE_CODE.sub("", prose)
    return _LINK.findall(prose) + _IMAGE.findall(prose)


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_readme_is_short():
    size = len(README.read_bytes())
    assert size < MAX_README_BYTES, (
        f"README.md is {size} bytes (limit {MAX_README_BYTES}); move detail into a docs/ page and link it")


def test_every_docs_page_is_linked_from_readme():
    assert DOCS, "no docs/*.md pages found"
    targets = {link.split("#")[0] for link in _links(README)}
    missing = [_rel(page) for page in DOCS if _rel(page) not in targets]
    assert not missing, f"README.md does not link {missing}; add them to its Documentation list"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_relative_links_point_at_files_and_headings(page):
    broken = []
    for link in _links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE):  # http:, https:, mailto:
            continue
        target, _, fragment = link.partition("#")
        path = (page.parent / unquote(target)).resolve() if target else page
        if not path.exists():
            broken.append(f"{link} (no {target})")
        elif not str(path).startswith(str(ROOT)):
            broken.append(f"{link} (outside the repository)")
        elif fragment and path.suffix == ".md" and unquote(fragment) not in _anchors(path):
            broken.append(f"{link} (no heading #{fragment} in {_rel(path)})")
    assert not broken, f"{_rel(page)}: broken links {broken}"


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_commands_name_existing_modules_configs_and_scripts(page):
    _, code = _split(_read(page))
    missing = []
    for module in set(_MODULE.findall(code)):
        base = ROOT.joinpath(*module.split("."))
        if not (base.with_suffix(".py").is_file() or (base / "__main__.py").is_file()):
            missing.append(f"python -m {module}")
    for name in set(_CONFIG.findall(code)) | set(_SCRIPT.findall(code)):
        if not (ROOT / name).is_file():
            missing.append(name)
    assert not missing, f"{_rel(page)}: its code blocks name what is not in the tree: {sorted(missing)}"


def test_readme_commands_are_checked():
    """The checks above see the README's commands (a guard against the regexes silently matching nothing)."""
    _, code = _split(_read(README))
    modules = set(_MODULE.findall(code))
    assert {"bertjax.data.vocab", "bertjax.data.create_pretraining_data", "bertjax.convert"} <= modules
    assert "configs/demo.py" in _CONFIG.findall(code)


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_repository_paths_in_text_exist(page):
    """Files named next to a number or a claim (`bench/results/x.md`, `tests/test_x.py`) are in the tree."""
    prose, _ = _split(_read(page))
    missing = sorted({path for path in _REPO_PATH.findall(prose) if not (ROOT / path).exists()})
    assert not missing, f"{_rel(page)} names paths that do not exist: {missing}"
