# Sourced by every job script here: modules, the virtual environment and the environment
# variables that matter for oncolattice on a cluster (docs/hpc.md).  Edit to your site.
# shellcheck shell=bash

module load cuda openmpi python 2>/dev/null || true     # names differ between sites

# A venv made once on a login node:
#   python -m venv ~/venvs/oncolattice
#   ~/venvs/oncolattice/bin/pip install 'oncolattice[gpu]' mpi4py
VENV=${ONCOLATTICE_VENV:-$HOME/venvs/oncolattice}
# shellcheck disable=SC1091
source "$VENV/bin/activate"

# Numba's threads = the cores Slurm gave each task; no nested BLAS/OpenMP threads.
export NUMBA_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}
export OMP_NUM_THREADS=1
export MKL_NUM_THREADS=1
export OPENBLAS_NUM_THREADS=1
# HDF5's file locks fail or hang on many network filesystems (Lustre, NFS, GPFS);
# oncolattice keeps its own writer lock (RUN.h5.lock) beside the run file.
export HDF5_USE_FILE_LOCKING=FALSE
