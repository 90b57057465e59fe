"""The documentation in docs/: it builds without warnings, its examples run, and it matches the code.

* ``mkdocs build --strict`` (every warning an error: broken links and anchors, docstrings that
  mkdocstrings cannot render) — skipped when MkDocs is not installed (``pip install -e ".[docs]"``);
* every ```python block of every page under docs/ is executed, the blocks of one page in order
  and in one namespace, in a temporary working directory. A block preceded on the line right
  above its fence by the HTML comment ``<!-- docs: no-run -->`` (invisible on the rendered page)
  is only compiled, not run — for examples that need a GPU or would take minutes;
* every ``minbasis …`` command line shown in a ```bash block parses with the real argument
  parser (subcommands and options exist);
* no docstring or comment in the repository points to ``design.md`` (users do not have it), and
  every ``docs/…`` page (and ``#anchor``) that the code cites exists;
* ``docs/architecture.md`` has one line for every module of the package, and names no module
  that does not exist.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
NO_RUN = "<!-- docs: no-run -->"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, runs) of every ```python block of a Markdown page."""
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1), before != NO_RUN))
    return out


# -- the build ----------------------------------------------------------------------------------------
@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
                    reason='MkDocs is not installed (pip install -e ".[docs]")')
def test_docs_build_strict(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "api" / "index.html").exists()


def test_every_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p for p in PAGES if p not in nav]
    assert not missing, f"pages missing from mkdocs.yml nav: {missing}"


# -- the examples -------------------------------------------------------------------------------------
def test_block_extraction():
    text = f"a\n```python\nx = 1\n```\n{NO_RUN}\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert [(code, runs) for _, code, runs in python_blocks(text)] == [("x = 1\n", True), ("raise SystemExit\n", False)]


@pytest.mark.parametrize("page", [p for p in PAGES if "```python" in (DOCS / p).read_text(encoding="utf-8")])
def test_examples_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.syspath_prepend(str(ROOT))
    namespace: dict = {"__name__": "__docs__"}
    # one BLAS thread: the examples' matrices are small, and a multi-threaded BLAS on a loaded
    # CI machine can make a 200 × 200 Cholesky factorisation take a third of a second
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        for line, code, runs in python_blocks((DOCS / page).read_text(encoding="utf-8")):
            compiled = compile(code, f"docs/{page}, block at line {line}", "exec")
            if runs:
                exec(compiled, namespace)


def command_lines(text: str) -> list[tuple[int, list[str]]]:
    """(line number, argv) of every ``minbasis …`` command in the ```bash blocks of a page
    (continuation lines joined, comments and ``&&`` chains split off)."""
    import shlex

    out = []
    for m in re.finditer(r"^```(?:bash|console|sh)[ \t]*\n(.*?)^```", text, re.S | re.M):
        body = m.group(1).replace("\\\n", " ")
        first = text.count("\n", 0, m.start()) + 2
        for k, line in enumerate(body.splitlines()):
            for part in line.split("&&"):
                words = shlex.split(part, comments=True)
                if words[:1] == ["minbasis"]:
                    out.append((first + k, words[1:]))
    return out


@pytest.mark.parametrize("page", [p for p in PAGES if "minbasis " in (DOCS / p).read_text(encoding="utf-8")])
def test_command_lines_parse(page):
    """Every `minbasis …` command shown in the docs uses subcommands and options that exist."""
    from minbasis.cli import build_parser

    parser = build_parser()
    for line, argv in command_lines((DOCS / page).read_text(encoding="utf-8")):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):  # --help exits with 0
                pytest.fail(f"docs/{page}:{line}: `minbasis {' '.join(argv)}` does not parse")


# -- references from the code -------------------------------------------------------------------------
def _slug(heading: str) -> str:
    """Anchor of a heading as Python-Markdown's toc extension makes it (MkDocs' default)."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def _source_files() -> list[Path]:
    files = [ROOT / "README.md", *ROOT.joinpath("minbasis").rglob("*"), *ROOT.joinpath("benchmarks").rglob("*"),
             *ROOT.joinpath("tests").rglob("*.py"), *DOCS.rglob("*.md")]
    return [f for f in files if f.is_file() and f.suffix in (".py", ".md", ".toml", ".txt")
            and f.resolve() != Path(__file__).resolve()]


def test_no_reference_to_design_md():
    hits = [f"{f.relative_to(ROOT)}:{k}" for f in _source_files()
            for k, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if "design.md" in line]
    assert not hits, "references to design.md, a file users do not have (cite docs/ or the paper):\n" + "\n".join(hits)


def test_cited_doc_pages_exist():
    anchors = {}
    for p in PAGES:
        text = (DOCS / p).read_text(encoding="utf-8")
        text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)  # no headings inside code blocks
        anchors[p] = {_slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)}
    bad = []
    for f in _source_files():
        if DOCS in f.parents:
            continue  # links between pages are checked by mkdocs build --strict
        for ref in re.findall(r"docs/([\w/.-]*)(?:#([\w-]+))?", f.read_text(encoding="utf-8")):
            page, anchor = ref[0].rstrip("."), ref[1]
            if page in ("", "/") or page.endswith("/"):
                ok = (DOCS / page).is_dir()
            elif page.endswith(".png"):
                ok = (DOCS / page).exists()
            else:
                ok = page in anchors and (not anchor or anchor in anchors[page])
            if not ok:
                bad.append(f"{f.relative_to(ROOT)}: docs/{page}{'#' + anchor if anchor else ''}")
    assert not bad, "the code cites documentation that does not exist:\n" + "\n".join(sorted(set(bad)))


def test_architecture_lists_every_module():
    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    modules = {p.relative_to(ROOT).as_posix() for p in ROOT.joinpath("minbasis").rglob("*.py")}
    listed = set(re.findall(r"^\|\s*`(minbasis/[\w/]+\.py)`\s*\|", text, re.M))
    assert not modules - listed, f"modules without a line in docs/architecture.md: {sorted(modules - listed)}"
    assert not listed - modules, f"docs/architecture.md lists modules that do not exist: {sorted(listed - modules)}"
