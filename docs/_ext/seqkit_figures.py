"""Sphinx extension: compute the docs' figures from seqkit at build time.

Each figure is a function ``name(path)`` in the module of the same name beside this one
(:mod:`gradient_decay`, :mod:`recurrent_options`) that writes one PNG. They run on
``builder-inited`` into ``docs/_generated/`` (ignored by git), before any page is read, so that
every builder, the doctest one included, finds the images it references.
matplotlib is a docs dependency: without it the build stops here with a message that says so.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sphinx.errors import ExtensionError

FIGURES = ("gradient_decay", "recurrent_options")


def _generate(app) -> None:
    try:
        import matplotlib
    except ImportError as exc:
        raise ExtensionError(
            "the seqkit docs compute their figures with matplotlib, which is not installed "
            f"({exc}); install the docs dependencies: pip install 'seqkit[docs]' "
            "(sphinx, furo, matplotlib)"
        ) from None
    matplotlib.use("Agg", force=True)
    out = Path(app.srcdir) / "_generated"
    out.mkdir(exist_ok=True)
    for name in FIGURES:
        getattr(importlib.import_module(name), name)(out / f"{name}.png")


def setup(app):
    app.connect("builder-inited", _generate)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
