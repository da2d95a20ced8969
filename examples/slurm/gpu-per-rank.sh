#!/bin/bash
# Run a command on one GPU per MPI rank: CUDA_VISIBLE_DEVICES = the rank's index on its
# node (Slurm's SLURM_LOCALID under srun; Open MPI's or MPICH's local rank under mpiexec),
# so each rank sees exactly one device, as its device 0.
#   srun -n 8 examples/slurm/gpu-per-rank.sh oncolattice run ...
#   mpiexec -n 8 examples/slurm/gpu-per-rank.sh oncolattice run ...
set -euo pipefail
local_rank=${SLURM_LOCALID:-${OMPI_COMM_WORLD_LOCAL_RANK:-${MPI_LOCALRANKID:-0}}}
export CUDA_VISIBLE_DEVICES=$local_rank
exec "$@"
