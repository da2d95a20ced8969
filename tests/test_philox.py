"""Philox4x32-10 against the Random123 known-answer vectors, on both twins."""
import numpy as np
import pytest

from kernels.philox import (philox4x32, philox4x32_numpy, probability_threshold, seed_key,
                            voxel_draw, voxel_draw_numpy)

# Random123 kat_vectors: philox4x32 10 rounds: counter, key, expected output.
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_numba_philox_matches_random123(counter, key, expected):
    assert tuple(int(w) for w in philox4x32(*counter, *key)) == expected


@pytest.mark.parametrize("counter,key,expected", KAT)
def test_numpy_philox_matches_random123(counter, key, expected):
    assert tuple(int(w) for w in philox4x32_numpy(counter, key)) == expected


def test_voxel_draw_twins_agree_and_streams_differ():
    key = seed_key(0x1234_5678_9ABC_DEF0)
    g = np.array([0, 1, 2**31, 2**32 + 7, 1024**3 - 1], dtype=np.uint64)
    host = voxel_draw_numpy(g, 17, 3, 1, key)
    for i, gi in enumerate(g):
        words = voxel_draw(int(gi), 17, 3, 1, *key)
        assert tuple(int(w) for w in words) == tuple(int(h[i]) for h in host)
    other_stream = voxel_draw_numpy(g, 17, 4, 1, key)
    other_step = voxel_draw_numpy(g, 18, 3, 1, key)
    assert not np.array_equal(host[0], other_stream[0])
    assert not np.array_equal(host[0], other_step[0])


def test_draws_are_uniform():
    words = voxel_draw_numpy(np.arange(200_000, dtype=np.uint64), 1, 1, 0, seed_key(7))[0]
    u = words / 2.0**32
    assert abs(u.mean() - 0.5) < 4 * np.sqrt(1 / 12 / u.size)
    hist = np.bincount((u * 16).astype(int), minlength=16)
    expected = u.size / 16
    assert ((hist - expected) ** 2 / expected).sum() < 45  # chi² with 15 dof, p ≈ 1e-4


def test_probability_threshold():
    assert probability_threshold(0.0) == 0
    assert probability_threshold(-1.0) == 0
    assert probability_threshold(0.5) == 2**31
    assert probability_threshold(1.0) == 2**32 - 1
    assert probability_threshold(2.0) == 2**32 - 1
