"""Every voxel kind has its own colour, keyed by kind name, so views and reports
agree; a kind the palette does not know gets a stable, visible fallback colour."""
import math
import os
import subprocess
import sys
from pathlib import Path

from engine.runformat import DEFAULT_KIND_CODES, EMPTY_KIND
from kernels.lattice import KIND_NAMES
from tools.palette import (FALLBACK_MIN_DISTANCE, KIND_COLOURS, drawn_kinds,
                           fallback_colour, kind_colour)

BACKGROUND = (0.07, 0.08, 0.10)         # tools.scene.BACKGROUND: the views' dark background


def test_the_published_kinds_have_distinct_designed_colours():
    assert set(DEFAULT_KIND_CODES.names) <= set(KIND_COLOURS)
    drawn = [KIND_COLOURS[k] for k in drawn_kinds(DEFAULT_KIND_CODES)]
    assert len(set(drawn)) == len(drawn)
    for rgb in KIND_COLOURS.values():
        assert len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb)


def test_every_kind_the_engine_writes_today_has_a_distinct_colour():
    colours = [kind_colour(k) for k in KIND_NAMES if k != EMPTY_KIND]
    assert len(set(colours)) == len(colours)


def test_matrix_is_not_drawn():
    assert EMPTY_KIND not in drawn_kinds(DEFAULT_KIND_CODES)
    assert drawn_kinds(["empty", "tumor", "macrophage"]) == ("tumor", "macrophage")


def test_unknown_kinds_get_a_stable_visible_colour_apart_from_the_designed_ones():
    names = ["macrophage", "b_cell", "neutrophil", "fibroblast", "adipocyte", "x"]
    for name in names:
        rgb = kind_colour(name)
        assert name not in KIND_COLOURS and rgb == fallback_colour(name)
        assert all(0.0 <= c <= 1.0 for c in rgb)
        assert math.dist(rgb, BACKGROUND) > 0.5 and math.dist(rgb, (1, 1, 1)) > 0.2
        designed = [c for k, c in KIND_COLOURS.items() if k != EMPTY_KIND]
        assert min(math.dist(rgb, c) for c in designed) >= FALLBACK_MIN_DISTANCE - 1e-3
    assert len({kind_colour(n) for n in names}) == len(names)
    # the same in a fresh process (no salted hash()), so every tool agrees
    code = ("from tools.palette import kind_colour; "
            f"print([kind_colour(n) for n in {names!r}])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1],
                          env=dict(os.environ, PYTHONHASHSEED="123"))
    assert done.stdout.strip() == str([kind_colour(n) for n in names])
