"""oncolattice: a 3D voxel lattice cellular automaton of solid tumour growth.

A research tool, not clinical advice.
"""
__version__ = "0.1.0"
