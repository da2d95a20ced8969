"""Categorical colours for voxel kinds, keyed by kind NAME and shared by the
viewer, the renderer and the report, so a kind looks the same everywhere.

Kind names come from the run file (its stored kind codes, see
:mod:`engine.runformat`), not from the engine, so this palette never needs the
engine's numbering.  The kinds known today have designed colours
(:data:`KIND_COLOURS`); any other name gets :func:`fallback_colour`, a
deterministic colour derived from a hash of the name, bright enough to see on
the viewer's dark background and on the report's white page and kept away
from the designed colours.  So a file written today still looks the same after
kinds are added, and a file with a kind this version does not know still
shows it, under its stored name.

Colours are RGB in 0..1.  ``empty`` (matrix) is never drawn.
"""
from __future__ import annotations

import colorsys
import hashlib
import math
from typing import Iterable

from engine.runformat import EMPTY_KIND, KindCodes

KIND_COLOURS: dict[str, tuple[float, float, float]] = {
    "empty": (0.0, 0.0, 0.0),
    "functional": (0.55, 0.78, 0.55),   # sage green: the organ's own tissue
    "tumor": (0.85, 0.15, 0.55),        # magenta
    "necrotic": (0.45, 0.32, 0.22),     # brown
    "vessel": (0.86, 0.10, 0.10),       # blood red
    "lymph_vessel": (0.95, 0.85, 0.25), # lymph yellow
    "sprout": (1.00, 0.55, 0.10),       # orange: new capillary stalk
    "tip": (0.10, 0.85, 0.95),          # cyan: endothelial tip cell
    "dormant": (0.78, 0.66, 0.95),      # pale violet: a dormant tumour cell
    "t_cell": (0.20, 0.40, 1.00),       # blue: cytotoxic T cell
    "nk_cell": (0.45, 0.10, 0.70),      # deep purple: natural killer cell
}

FALLBACK_SATURATION = 0.55
FALLBACK_VALUE = 0.90
FALLBACK_MIN_DISTANCE = 0.30         # RGB distance kept from every designed colour
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def fallback_colour(name: str) -> tuple[float, float, float]:
    """The colour of a kind the palette has no designed colour for: a hue from
    a stable hash of `name` (the same in every process and version), at a fixed
    saturation and brightness; stepped round the colour wheel by the golden
    ratio until it is at least ``FALLBACK_MIN_DISTANCE`` from every designed
    colour."""
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    hue = int.from_bytes(digest, "big") / 2.0 ** 64
    rgb = None
    for _ in range(64):
        rgb = colorsys.hsv_to_rgb(hue, FALLBACK_SATURATION, FALLBACK_VALUE)
        if min(math.dist(rgb, c) for k, c in KIND_COLOURS.items()
               if k != EMPTY_KIND) >= FALLBACK_MIN_DISTANCE:
            break
        hue = (hue + _GOLDEN) % 1.0
    return tuple(round(c, 4) for c in rgb)


def kind_colour(name: str) -> tuple[float, float, float]:
    """The RGB colour of kind `name`: designed, else :func:`fallback_colour`."""
    rgb = KIND_COLOURS.get(name)
    return rgb if rgb is not None else fallback_colour(name)


def drawn_kinds(kinds: KindCodes | Iterable[str]) -> tuple[str, ...]:
    """The kind names drawn in 3D views (all but matrix), in code order."""
    names = kinds.names if isinstance(kinds, KindCodes) else tuple(kinds)
    return tuple(k for k in names if k != EMPTY_KIND)
