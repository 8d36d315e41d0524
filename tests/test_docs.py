"""The documentation cannot rot: its Python examples run, its links resolve, its tables match the code.

Every fenced ```python block in README.md and docs/*.md runs, the blocks of one file in order in one namespace
(a block may use what an earlier block of the same page defined), in a temporary working directory, with the
installed entry-point plugins loaded as in a user's process. A block whose first line is
``# docs: skip (reason)`` (it needs data on disk or a long run) is only compiled, and reported as skipped with
its reason. Tracebacks point at the line of the Markdown file.

Also checked: relative links and their #anchors (docs/images/*.png and docs/results.md may not exist yet), the
README's first commands, the README's component table against the registry and the configuration table of
docs/cli.md. The layout rules of docs/architecture.md have their own module, tests/test_architecture.py.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from pathlib import Path
from typing import Iterator, NamedTuple

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: seconds one page's examples may take together (they take a few seconds on one CPU thread)
PAGE_TIMEOUT = 180
SKIP = re.compile(r"^\s*#\s*docs:\s*skip\b\s*(?:\((?P<reason>.*)\))?")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


class Block(NamedTuple):
    page: Path
    line: int  # 1-based line of the first line of code
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{rel(self.page)}:{self.line}"

    @property
    def skip_reason(self) -> str | None:
        first = self.code.splitlines()[0] if self.code.strip() else ""
        match = SKIP.match(first)
        if match is None:
            return None
        return match.group("reason") or "marked '# docs: skip'"


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _fences(lines: list[str]) -> Iterator[tuple[int, int, str]]:
    """``(opening, closing, language)`` line indices of every fenced block (closing: len(lines) if unclosed)."""
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, language = opening.group("fence"), (opening.group("info").split() or [""])[0].lower()
        start, i = i, i + 1
        while i < len(lines):
            closing = FENCE.match(lines[i])
            if closing and closing.group("fence")[0] == fence[0] and len(closing.group("fence")) >= len(fence) \
                    and not closing.group("info"):
                break
            i += 1
        yield start, i, language
        i += 1


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of a Markdown page, with its info-string language."""
    lines = page.read_text(encoding="utf-8").splitlines()
    return [Block(page, start + 2, language, "\n".join(lines[start + 1:end]) + "\n")
            for start, end, language in _fences(lines)]


def outside_fences(page: Path) -> list[str]:
    """The lines of a page that are not in a fenced block (fence lines included)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    inside = {i for start, end, _ in _fences(lines) for i in range(start, end + 1)}
    return [line for i, line in enumerate(lines) if i not in inside]


def python_blocks(page: Path) -> list[Block]:
    return [b for b in fenced_blocks(page) if b.language in ("python", "py", "python3")]


PAGES_WITH_PYTHON = [p for p in PAGES if python_blocks(p)]
SKIPPED_BLOCKS = [b for p in PAGES for b in python_blocks(p) if b.skip_reason is not None]


@contextlib.contextmanager
def time_limit(seconds: int, what: str) -> Iterator[None]:
    """Raise TimeoutError in the main thread after ``seconds`` (no limit where SIGALRM is unavailable)."""
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum, frame):  # noqa: ANN001
        raise TimeoutError(f"{what} took more than {seconds} s; keep documentation examples small")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def compiled(block: Block):
    """The block compiled with the page's path and line numbers, so a traceback shows the Markdown line."""
    source = "\n" * (block.line - 1) + block.code
    return compile(source, str(block.page), "exec")


# --- the examples run -----------------------------------------------------------------------------

def test_every_page_is_found():
    names = {rel(p) for p in PAGES}
    expected = {"README.md", "docs/index.md", "docs/architecture.md", "docs/writing-plugins.md",
                "docs/estimators-and-samplers.md", "docs/reproducing-ncsn.md", "docs/cli.md"}
    assert expected <= names, f"missing pages: {sorted(expected - names)}"


@pytest.mark.parametrize("page", PAGES_WITH_PYTHON, ids=rel)
def test_python_examples_run(page, with_entry_points, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples may write files (run directories, images)
    namespace: dict = {"__name__": "__docs__"}
    ran = 0
    with time_limit(PAGE_TIMEOUT, f"the examples of {rel(page)}"):
        for block in python_blocks(page):
            code = compiled(block)  # a syntax error fails here, skipped or not
            if block.skip_reason is not None:
                continue
            try:
                exec(code, namespace)  # noqa: S102 - running the documentation is the point
            except Exception as exc:
                raise AssertionError(f"the example at {block.where} raised {type(exc).__name__}: {exc}") from exc
            ran += 1
    if ran == 0:
        pytest.skip(f"every example of {rel(page)} is marked '# docs: skip'")


@pytest.mark.parametrize("block", SKIPPED_BLOCKS, ids=lambda b: b.where)
def test_marked_examples_compile(block):
    compiled(block)
    pytest.skip(f"{block.where}: {block.skip_reason}")


# --- links ---------------------------------------------------------------------------------------

#: links that may point at files written after the docs (by `make run` and the benchmarks)
MAY_BE_MISSING = (re.compile(r"^docs/images/[^/]+\.png$"), re.compile(r"^docs/results\.md$"))
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?(?P<target>[^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(?P<target>\S+?)>?(?:\s+\"[^\"]*\")?\s*$", re.M)


def prose(page: Path) -> str:
    """The page without fenced blocks and inline code (links there are not links)."""
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", "\n".join(outside_fences(page)))


def github_slugs(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of a page (lowercase, punctuation dropped, spaces to hyphens)."""
    seen: dict[str, int] = {}
    slugs = set()
    for line in outside_fences(page):
        heading = re.match(r"^\s{0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)).replace("`", "")  # link text, code text
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        slugs.add(slug if n == 0 else f"{slug}-{n}")
    return slugs


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_relative_links_resolve(page):
    text = prose(page)
    targets = [m.group("target") for m in INLINE_LINK.finditer(text)]
    targets += [m.group("target") for m in REFERENCE_LINK.finditer(text)]
    broken = []
    for target in targets:
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        try:
            shown = rel(path)
        except ValueError:
            broken.append(f"{target} (outside the repository)")
            continue
        if any(pattern.match(shown) for pattern in MAY_BE_MISSING):
            continue
        if not path.exists():
            broken.append(f"{target} (no file {shown})")
        elif anchor and path.suffix == ".md" and anchor not in github_slugs(path):
            broken.append(f"{target} (no heading #{anchor} in {shown})")
    assert not broken, f"{rel(page)} has broken links: " + "; ".join(broken)


# --- README --------------------------------------------------------------------------------------

def test_readme_first_commands_are_make_run_and_make_test():
    first = fenced_blocks(ROOT / "README.md")[0]
    commands = [line.strip() for line in first.code.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert commands[:2] == ["make run", "make test"], f"the README's first fenced block is {first.code!r}"


def readme_components() -> set[tuple[str, str, str]]:
    """``(kind, name, plugin)`` of every row of the README's component table."""
    rows = set()
    for line in (ROOT / "README.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[^`]+`", cells[1]):
            rows.add((cells[0], cells[1].strip("`"), cells[2]))
    return rows


def test_readme_component_table_matches_the_registry(with_entry_points):
    import scorekit

    host = scorekit.get_host()
    registered = {(c.kind, c.name, c.owner) for c in host.components()}
    owners = {owner for _, _, owner in registered}
    documented = readme_components()
    assert documented, "the README has no component table"
    undocumented = sorted(registered - documented)
    stale = sorted(row for row in documented - registered if row[2] in owners)  # rows of installed plugins only
    assert not undocumented, f"components missing from the README's table: {undocumented}"
    assert not stale, f"README rows that no installed plugin registers (kind, name, plugin): {stale}"


# --- the configuration table of docs/cli.md ------------------------------------------------------

def flat_config(table: dict, prefix: str = "") -> dict:
    """``RunConfig().to_dict()`` as dotted keys; option tables (dicts of a component's options) are leaves."""
    out = {}
    for key, value in table.items():
        if isinstance(value, dict) and not key.endswith("options"):
            out.update(flat_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_cli_config_table_matches_runconfig():
    from scorekit.cli.config_files import parse_value
    from scorekit.training import RunConfig

    documented = {}
    for line in outside_fences(ROOT / "docs" / "cli.md"):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        default = cells[1] if len(cells) == 3 else ""
        if re.fullmatch(r"`[a-z_.0-9]+`", cells[0]) and (default == "unset" or re.fullmatch(r"`[^`]+`", default)):
            documented[cells[0].strip("`")] = None if default == "unset" else parse_value(default.strip("`"))
    actual = flat_config(RunConfig().to_dict())
    assert sorted(documented) == sorted(actual), (
        f"docs/cli.md documents {sorted(set(documented) - set(actual))} that RunConfig lacks, "
        f"and lacks {sorted(set(actual) - set(documented))}")
    wrong = {k: (documented[k], actual[k]) for k in actual if documented[k] != actual[k]}
    assert not wrong, f"defaults in docs/cli.md that differ from RunConfig's (documented, actual): {wrong}"
