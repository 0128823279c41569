#!/usr/bin/env bash
# pickscore on a Slurm job array: 4 array tasks score one shard each, then a merge job, which Slurm
# starts only after every task has succeeded, writes the ranking one unsharded run would write.
# See docs/scale-out.md.
#
#   IMAGES=/shared/images PROMPTS=/shared/prompts.txt OUT=/shared/pickscore/run-1 bash docs/slurm-array.sh
#
# Run it on a login node: it pulls the model once, submits itself as the array (the #SBATCH lines
# below), then submits the merge with --dependency=afterok on the array. Inside the array each task
# reads its shard from SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (--shard auto). To change the
# number of shards, change --array only.
#
#SBATCH --job-name=pickscore-rank
#SBATCH --array=0-3
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=32G
#SBATCH --time=04:00:00
#SBATCH --output=pickscore-rank-%A_%a.log
set -euo pipefail

: "${IMAGES:?set IMAGES to the image folder}"
: "${PROMPTS:?set PROMPTS to the prompts file}"
: "${OUT:?set OUT to a fresh output folder for this run}"
export PICKSCORE_HOME="${PICKSCORE_HOME:-$HOME/.cache/pickscore}"

if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
  mkdir -p "$OUT/parts"
  # Convert the model once here, rather than in every task at the same time.
  pickscore model pull --precision fp16
  # sbatch exports this environment (IMAGES, PROMPTS, OUT, PICKSCORE_HOME) to the tasks.
  array_job=$(sbatch --parsable "$0")
  merge_job=$(sbatch --parsable --dependency="afterok:${array_job}" --job-name=pickscore-merge \
    --output="$OUT/merge-%j.log" --wrap "pickscore merge $OUT/parts/part-*.json --out $OUT/ranked.csv")
  echo "submitted array job $array_job and merge job $merge_job; the result will be $OUT/ranked.csv"
  exit 0
fi

# One array task. Exit code 3 means some images could not be read: they are rows with an error in
# the part, the task itself succeeded, and the merge must still run.
pickscore rank "$IMAGES" --prompts-file "$PROMPTS" --shard auto --device cuda \
  --format json --out "$OUT/parts/part-${SLURM_ARRAY_TASK_ID}.json" || [ "$?" -eq 3 ]
