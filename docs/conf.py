"""Sphinx configuration for seqkit's documentation.

Build: ``sphinx-build -W -b html docs docs/_build/html``; doctests: ``sphinx-build -W -b doctest
docs docs/_build/doctest``. Nothing here touches the network. The figures are computed from
seqkit itself at every build by the local extension ``docs/_ext/seqkit_figures.py``.
"""

from __future__ import annotations

import doctest as _doctest
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE / "_ext"))
# an uninstalled checkout still documents itself (an installed seqkit is found first otherwise)
for path in (ROOT / "plugins", ROOT, ROOT / "plugins" / "seqkit-peephole"):
    if str(path) not in sys.path:
        sys.path.append(str(path))

import seqkit  # noqa: E402

project = "seqkit"
author = "seqkit developers"
copyright = "seqkit developers"
release = seqkit.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "seqkit_figures",
]

# --- autodoc and napoleon (Google-style docstrings) ------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_default_options = {"undoc-members": False, "show-inheritance": True}
# torch is optional: the torch backend's modules import it lazily, but mock it when it is absent
try:
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# "Attributes:" sections as fields: attrs classes also document their fields as members
napoleon_use_ivar = True

# --- doctest: every example runs in float64 on the NumPy reference unless it says otherwise ----
doctest_global_setup = """
import numpy as np
import seqkit
np.set_printoptions(precision=4, suppress=True)
"""
doctest_default_flags = _doctest.ELLIPSIS | _doctest.NORMALIZE_WHITESPACE
doctest_test_doctest_blocks = "default"

# --- intersphinx: offline only. Inventories are used when cached under docs/_intersphinx/
# (python.inv, numpy.inv, ...); without them references render as plain text, never a fetch.
_INV = HERE / "_intersphinx"
intersphinx_mapping = {
    name: (url, str(_INV / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3",
        "numpy": "https://numpy.org/doc/stable",
        "torch": "https://pytorch.org/docs/stable",
        "pluggy": "https://pluggy.readthedocs.io/en/stable",
        "attrs": "https://www.attrs.org/en/stable",
    }.items()
    if (_INV / f"{name}.inv").is_file()
}
intersphinx_timeout = 1

# --- sources and output --------------------------------------------------------------------
exclude_patterns = ["_build", "_generated/*.py", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
pygments_style = "sphinx"
nitpicky = False
suppress_warnings: list[str] = []

html_theme = "furo"
html_title = f"seqkit {release}"
html_static_path: list[str] = []
html_theme_options = {"navigation_with_keys": True}
