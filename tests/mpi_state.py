"""Run a scenario's body for some steps (on every rank of an MPI job, or alone) and let
rank 0 save every counts row and every lattice's whole state to an .npz file:

    [mpiexec -n R] python tests/mpi_state.py SCENARIO.toml BACKEND STEPS OUT.npz

(tests/test_mpi.py compares the CUDA C kernels' slabs, through the host harness, with
the Numba whole lattice)."""
import sys

import numpy as np

from engine.body import Body
from engine.domain import world
from engine.scenario import parse_scenario
from engine.state import VOXEL_ARRAYS


def main(path, backend, steps, out):
    comm = world()
    text = open(path, encoding="utf-8").read()
    body = Body(parse_scenario(text, path), backend=backend, comm=comm)
    saved = {}
    for step in range(int(steps)):
        for sim, row in zip(body.lattices, body.step()):
            saved[f"{sim.name}/row{step}"] = np.frombuffer(row.tobytes(), np.uint8)
    for sim in body.lattices:
        for name, _, _, work, *_ in VOXEL_ARRAYS:
            if not work:
                saved[f"{sim.name}/{name}"] = sim.gathered(name).copy()
    if comm is None or comm.Get_rank() == 0:
        np.savez(out, **saved)


if __name__ == "__main__":
    main(*sys.argv[1:])
