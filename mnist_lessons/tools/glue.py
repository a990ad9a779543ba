"""Put numbers computed in a cell into the prose of the rendered book (myst-nb ``glue``).

A number in the book's text is never typed by hand: a cell computes it and glues it under a
name, and the text cites ``{glue:text}`name```. In the built book myst-nb does the gluing; in
Colab or a plain Jupyter, where myst-nb is not installed, :func:`glue` simply returns the value,
so the same notebook runs everywhere.
"""

from __future__ import annotations

from typing import Any


def glue(name: str, value: Any, display: bool = False) -> None:
    """Record ``value`` under ``name`` for the book's prose.

    Returns nothing, so a ``glue`` call at the end of a cell adds no stray output.

    Args:
        name: the key the prose cites, e.g. ``"ch2_mean_pixel"``.
        value: a number, string or figure.
        display: also show the value in the cell's output.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"glue names are identifiers like 'ch2_mean_pixel', got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:  # Colab, plain Jupyter: nothing to glue into
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)
