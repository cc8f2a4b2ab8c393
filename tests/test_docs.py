"""The documentation is tested: every hook and public name is documented, and every example runs.

Modelled on datasette's ``tests/test_docs.py``: the checks on hooks and names read the reST
sources directly (fast, no Sphinx needed); the examples run through Sphinx's doctest builder with
warnings as errors, which also catches autodoc failures and broken references in the pages.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import seqkit
from seqkit import hookspecs

DOCS = Path(__file__).resolve().parent.parent / "docs"
API_PAGES = sorted((DOCS / "api").glob("*.rst"))

# a section title: a line of text followed by an underline of one punctuation character
_TITLE = re.compile(r"^(?P<title>[^\n]+)\n(?P<rule>([=\-~^\"'`#*+])\3+)$", re.MULTILINE)


def _section_titles(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    return {
        m["title"].strip()
        for m in _TITLE.finditer(text)
        if len(m["rule"]) >= len(m["title"].strip())
    }


def _hooks() -> list[tuple[str, str]]:
    """``(name, exact signature)`` of every hook specification, e.g. ``seqkit_register_cells()``."""
    return [
        (name, f"{name}{inspect.signature(fn)}")
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "seqkit_spec")
    ]


def _api_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in API_PAGES)


def _public_modules() -> list[str]:
    """Top-level public modules and subpackages of seqkit (not their own submodules)."""
    return sorted(
        f"seqkit.{m.name}"
        for m in pkgutil.iter_modules(seqkit.__path__)
        if not m.name.startswith("_")
    )


def test_hooks_exist():
    assert _hooks(), "found no hook specifications in seqkit/hookspecs.py"


@pytest.mark.parametrize(("name", "signature"), _hooks())
def test_every_hook_has_a_section_headed_by_its_signature(name, signature):
    titles = _section_titles(DOCS / "plugin_hooks.rst")
    assert signature in titles, (
        f"hook {name} is not documented: docs/plugin_hooks.rst needs a section titled exactly "
        f"{signature!r} (arguments, return rules and a runnable example)"
    )
    assert f".. _plugin_hook_{name}:" in (DOCS / "plugin_hooks.rst").read_text(encoding="utf-8"), (
        f"the section for {name} needs the label '.. _plugin_hook_{name}:' above it"
    )


def test_every_documented_hook_exists():
    titles = _section_titles(DOCS / "plugin_hooks.rst")
    documented = {t for t in titles if t.startswith("seqkit_")}
    assert documented <= {sig for _, sig in _hooks()}, (
        f"docs/plugin_hooks.rst documents hooks that seqkit/hookspecs.py does not define: "
        f"{sorted(documented - {sig for _, sig in _hooks()})}"
    )


@pytest.mark.parametrize("name", seqkit.__all__)
def test_every_public_name_is_in_the_api_reference(name):
    kinds = "class|function|exception|data|attribute|method"
    pattern = rf"^\.\. auto({kinds})::\s+seqkit\.{re.escape(name)}\s*$"
    assert re.search(pattern, _api_text(), re.MULTILINE), (
        f"seqkit.{name} is in seqkit.__all__ but not documented: add "
        f"'.. autoclass:: seqkit.{name}' (or autofunction/autodata) to docs/api/seqkit.rst"
    )


@pytest.mark.parametrize("module", _public_modules())
def test_every_public_module_has_an_api_section(module):
    importlib.import_module(module)
    assert re.search(rf"^\.\. automodule::\s+{re.escape(module)}\s*$", _api_text(), re.MULTILINE), (
        f"public module {module} is not documented: add '.. automodule:: {module}' to "
        "docs/api/modules.rst (or make it private with a leading underscore)"
    )


def test_examples_run_and_build_is_warning_free(tmp_path):
    """Sphinx's doctest builder, ``-W``: every doctest, testcode and docstring example runs."""
    pytest.importorskip("sphinx", reason="sphinx is not installed (pip install 'seqkit[docs]')")
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-b",
        "doctest",
        "-W",
        "--keep-going",
        "-q",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOCS),
        str(tmp_path / "doctest"),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=DOCS.parent, timeout=300)
    report = tmp_path / "doctest" / "output.txt"
    details = report.read_text(encoding="utf-8") if report.is_file() else ""
    assert result.returncode == 0, (
        f"sphinx doctest build failed ({' '.join(cmd)}):\n"
        f"{result.stdout}\n{result.stderr}\n{details}"
    )
