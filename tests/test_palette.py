"""Every voxel kind has its own fixed colour, so views and reports agree."""
from kernels.lattice import KIND_NAMES
from tools.palette import DRAWN_KINDS, KIND_COLOURS, kind_code


def test_every_kind_has_a_distinct_colour():
    assert set(KIND_COLOURS) == set(KIND_NAMES)
    drawn = [KIND_COLOURS[k] for k in DRAWN_KINDS]
    assert len(set(drawn)) == len(drawn)
    for rgb in KIND_COLOURS.values():
        assert len(rgb) == 3 and all(0.0 <= c <= 1.0 for c in rgb)


def test_matrix_is_not_drawn_and_codes_follow_the_kernels():
    assert "empty" not in DRAWN_KINDS
    assert [kind_code(k) for k in KIND_NAMES] == list(range(len(KIND_NAMES)))
