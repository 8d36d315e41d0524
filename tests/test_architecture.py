"""The layout rules of docs/architecture.md, checked on the source so that the page cannot drift from the code.

Imports are read with ``ast`` (nothing is imported), so a rule broken in a module that no test happens to import
is still caught. Each rule's test names every offending file and import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCOREKIT = ROOT / "scorekit"
PLUGIN_SOURCES = sorted(ROOT.glob("plugins/*/src"))

#: plain PyTorch + attrs: they receive what they work on, they never look anything up
ALGORITHMS = ("estimators", "samplers", "networks", "targets")
#: the leaves every part may use: errors, validators, random draws, the score wrapper, sigmas, input checks
SHARED_LEAVES = ("scorekit.validators", "scorekit.errors", "scorekit.rng", "scorekit.score", "scorekit.sigmas",
                 "scorekit.batch_checks")
#: what an algorithm must never reach: the plugin system, the API, the model, training, the command line
UPWARD = ("pluggy", "scorekit.hookspecs", "scorekit.plugins", "scorekit.builtin", "scorekit.api",
          "scorekit.options", "scorekit.model", "scorekit.training", "scorekit.cli", "scorekit.metrics")


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def module_name(path: Path) -> str:
    base = next(src for src in (*PLUGIN_SOURCES, ROOT) if src in path.parents)  # the deepest root first
    parts = list(path.relative_to(base).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Absolute names of the modules (and ``from`` members) a file imports, relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def python_files(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def within(name: str, *prefixes: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def offenders(paths: list[Path], bad) -> list[str]:
    return [f"{rel(path)} imports {name}" for path in paths for name in sorted(imports(path)) if bad(name)]


# --- the checker itself ---------------------------------------------------------------------------

def test_imports_resolve_relative_and_member_imports(tmp_path):
    pkg = SCOREKIT / "samplers"
    assert "scorekit.samplers.langevin" in imports(pkg / "annealed.py")
    assert "scorekit.samplers.langevin.LangevinFamily" in imports(pkg / "annealed.py")
    plugin = next(p for p in python_files(*PLUGIN_SOURCES) if p.name == "plugin.py" and "scorekit_ncsn" in p.parts)
    assert "scorekit_ncsn.refinenet.NCSN" in imports(plugin)  # `from .refinenet import NCSN`


# --- rule 1: @hookimpl only in registration modules ----------------------------------------------

def test_hookimpls_live_only_in_builtin_and_plugin_modules():
    allowed = {SCOREKIT / "builtin.py", SCOREKIT / "testing" / "contract.py"}
    allowed |= set(ROOT.glob("plugins/*/src/*/plugin.py"))
    found = []
    for path in python_files(SCOREKIT, *PLUGIN_SOURCES):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            used = (isinstance(node, ast.Name) and node.id == "hookimpl" and isinstance(node.ctx, ast.Load)) or (
                isinstance(node, ast.Attribute) and node.attr == "hookimpl")
            if used and path not in allowed:
                found.append(f"{rel(path)}:{node.lineno}")
    assert not found, f"@hookimpl outside scorekit/builtin.py and plugins' plugin.py: {found}"


# --- rule 2: algorithms are plain PyTorch ---------------------------------------------------------

@pytest.mark.parametrize("package", ALGORITHMS)
def test_algorithms_import_only_their_package_and_the_shared_leaves(package):
    own = f"scorekit.{package}"

    def bad(name: str) -> bool:
        if within(name, *UPWARD):
            return True
        if name == "scorekit" or not name.startswith("scorekit"):
            return False  # `from scorekit import rng` is checked as scorekit.rng; torch, attrs, math are fine
        return not within(name, own, *SHARED_LEAVES)

    found = offenders(python_files(SCOREKIT / package), bad)
    assert not found, f"{own} must be plain PyTorch + attrs (docs/architecture.md, rule 2): {found}"


@pytest.mark.parametrize(("package", "other"), [("estimators", "samplers"), ("samplers", "estimators")])
def test_estimators_and_samplers_never_import_each_other(package, other):
    found = offenders(python_files(SCOREKIT / package), lambda n: within(n, f"scorekit.{other}"))
    assert not found, found


# --- rule 3: the model holds objects ---------------------------------------------------------------

def test_model_knows_neither_plugins_nor_the_api():
    found = offenders([SCOREKIT / "model.py"],
                      lambda n: within(n, "pluggy", "scorekit.plugins", "scorekit.api", "scorekit.options",
                                       "scorekit.hookspecs", "scorekit.training", "scorekit.cli"))
    assert not found, found


# --- rule 4: one place where names become objects --------------------------------------------------

def test_only_compose_and_the_run_layer_look_components_up():
    """``host.get(kind, name)`` is called by compose() for networks, estimators and samplers, by the run layer (the
    command line) for datasets and presets, and by the contract suite that checks a registered component; nowhere
    else."""
    lookup = re.compile(r"\.get\(\s*\"(network|estimator|sampler|preset|dataset)\"")
    found = []
    for path in python_files(SCOREKIT):
        for match in lookup.finditer(path.read_text(encoding="utf-8")):
            kind = match.group(1)
            if SCOREKIT / "testing" in path.parents:
                ok = True
            elif kind in ("network", "estimator", "sampler"):
                ok = path == SCOREKIT / "api.py"
            else:
                ok = SCOREKIT / "cli" in path.parents or path == SCOREKIT / "training" / "datasets.py"
            if not ok:
                found.append(f"{rel(path)} looks up a {kind}")
    assert not found, found


# --- rule 5: the library never imports the command line --------------------------------------------

def test_only_the_command_line_imports_the_command_line():
    found = offenders([p for p in python_files(SCOREKIT) if SCOREKIT / "cli" not in p.parents],
                      lambda n: within(n, "scorekit.cli"))
    assert not found, f"the library must not depend on scorekit.cli: {found}"


# --- rule 6: dependencies point one way ------------------------------------------------------------

def test_scorekit_never_imports_a_plugin():
    found = offenders(python_files(SCOREKIT), lambda n: n.startswith("scorekit_"))
    assert not found, found


def test_plugins_use_only_public_scorekit_modules():
    """A plugin may use what a third-party author may: no module or member whose name starts with ``_``."""
    found = offenders(python_files(*PLUGIN_SOURCES),
                      lambda n: n.startswith("scorekit.") and any(part.startswith("_") for part in n.split(".")))
    assert not found, found


# --- the page itself --------------------------------------------------------------------------------

def test_the_layout_on_the_page_matches_the_tree():
    """Every module and package of scorekit/ named in the layout block of docs/architecture.md exists, and every
    one that exists is named there."""
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = page.split("## Layout rules", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    documented = set(re.findall(r"([a-z_]+(?:\.py|/))", block.split("plugins/scorekit-ncsn/")[0]))
    actual = {p.name + "/" for p in SCOREKIT.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    actual |= {p.name for p in SCOREKIT.glob("*.py")}
    for package in [p for p in SCOREKIT.iterdir() if p.is_dir() and (p / "__init__.py").exists()]:
        actual |= {p.name for p in package.glob("*.py") if p.name != "__init__.py"}
    documented.discard("scorekit/")
    missing, stale = sorted(actual - documented), sorted(documented - actual)
    assert not missing and not stale, f"docs/architecture.md's layout lacks {missing} and names {stale} that do not exist"
