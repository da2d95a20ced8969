#!/bin/bash
# Submit an ensemble as a job array (one member per task, at most 50 at a time) and a
# collect job that runs when the whole array has ended, whatever its tasks' exit status.
#   examples/slurm/ensemble-submit.sh        (edit examples/slurm/ensemble.conf first)
set -euo pipefail
here=$(dirname "$0")
source "$here/ensemble.conf"

# members = replicates x the product of each sweep's value count (values without commas)
members=$REPLICATES
for flag in "${SWEEPS[@]}"; do
    if [[ $flag == *=* ]]; then
        commas=${flag//[^,]/}
        members=$(( members * (${#commas} + 1) ))
    fi
done
mkdir -p logs
array=$(sbatch --parsable --array="0-$(( members - 1 ))%50" "$here/ensemble-array.sbatch")
collect=$(sbatch --parsable --dependency="afterany:${array}" "$here/ensemble-collect.sbatch")
echo "ensemble of $members members: array job $array, collect job $collect -> $OUT"
