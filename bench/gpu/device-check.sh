#!/usr/bin/env bash
# The GPU check in one device call (see docs/gpu.md): the PyTorch fp16 SDPA baseline and
# pickscore's image encoder on the same random-weight CLIP-H/14 at batch 128, fp16 parity against
# PyTorch's fp32 and fp16 embeddings, and `pickscore rank` end to end over 512 px JPEGs, with
# --device cuda and once with --device auto. Everything lands in $OUT (gpu-check.json, logs).
#
#   source .gpu/b/env.sh && bash bench/gpu/device-check.sh        on the device machine
#   DRY_RUN=1 OUT=/tmp/x bash bench/gpu/device-check.sh           here, on CPU, with the tiny reference model
#
# Settings (environment; dry-run defaults in brackets): OUT, IMAGES 2000 [6], IMAGE_SIZE 512 [96], BATCH 128 [4],
# ITERATIONS 20 [1], WARMUP 3 [1], PRECISION fp16, ATTENTION fused, TOKENIZER .gpu/tokenizer
# [$REFERENCE_DIR/clip-tokenizer], BUILD_DIR build (the `npm run build:test` output), PICKSCORE_BIN bin/pickscore.js.
# A failed step is recorded in steps.tsv and the summary; later steps that do not need it still run.
# DEADLINE_S (540) bounds the whole run, below the device call's 600 s.
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:?set OUT to the folder for the results}"
mkdir -p "$OUT"
BUILD_DIR=${BUILD_DIR:-build}
PICKSCORE_BIN=${PICKSCORE_BIN:-bin/pickscore.js}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pickscore-gpu-check.XXXXXX")   # checkpoint, dump, model, JPEGs: gigabytes on the GPU run
trap 'rm -rf "$WORK"' EXIT
export PICKSCORE_HOME=$WORK/home          # no cache or model outside this run
PROMPT="a watercolor painting of a lighthouse on a cliff at sunset"

if [[ ${DRY_RUN:-0} == 1 ]]; then
  DEVICE=cpu; AUTO_EXPECT=CPUExecutionProvider
  REFERENCE_DIR=${REFERENCE_DIR:-../shared/reference}
  TOKENIZER=${TOKENIZER:-$REFERENCE_DIR/clip-tokenizer}
  IMAGES=${IMAGES:-6}; IMAGE_SIZE=${IMAGE_SIZE:-96}; BATCH=${BATCH:-4}; ITERATIONS=${ITERATIONS:-1}; WARMUP=${WARMUP:-1}
  PRECISION=${PRECISION:-fp16}; ATTENTION=${ATTENTION:-fused}; MODEL_NAME=tiny-clip
else
  DEVICE=cuda; AUTO_EXPECT=CUDAExecutionProvider
  TOKENIZER=${TOKENIZER:-.gpu/tokenizer}
  IMAGES=${IMAGES:-2000}; IMAGE_SIZE=${IMAGE_SIZE:-512}; BATCH=${BATCH:-128}; ITERATIONS=${ITERATIONS:-20}; WARMUP=${WARMUP:-3}
  PRECISION=${PRECISION:-fp16}; ATTENTION=${ATTENTION:-fused}; MODEL_NAME=clip-h-14-random
fi
CHECKPOINT=$WORK/checkpoint; DUMP=$WORK/dump; MODEL=$WORK/model-$PRECISION-$ATTENTION; JPEGS=$WORK/jpegs
printf 'step\trc\tseconds\n' > "$OUT/steps.tsv"

# The device call is killed at 600 s, and then nothing is summarised: every step's limit is cut to what is
# left before DEADLINE_S, keeping 20 s for the summary; a step with no time left is recorded as rc 124.
DEADLINE_S=${DEADLINE_S:-540}
script_started=$SECONDS

# step NAME LIMIT_S STDOUT_FILE CMD...: runs CMD under timeout, stdout to $OUT/STDOUT_FILE, stderr to $OUT/NAME.log
step() {
  local name=$1 limit=$2 stdout=$3; shift 3
  local started rc ms seconds left=$(( DEADLINE_S - (SECONDS - script_started) - 20 ))
  (( limit < left )) || limit=$left
  echo "== $name (limit ${limit}s): $*" >&2
  started=$(date +%s%N)
  if (( limit > 0 )); then
    timeout --kill-after=5 "$limit" "$@" > "$OUT/$stdout" 2> "$OUT/$name.log"; rc=$?
  else
    echo "no time left before DEADLINE_S=$DEADLINE_S" > "$OUT/$name.log"; rc=124
  fi
  ms=$(( ($(date +%s%N) - started) / 1000000 ))
  seconds=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
  printf '%s\t%s\t%s\n' "$name" "$rc" "$seconds" >> "$OUT/steps.tsv"
  echo "   rc $rc in ${seconds}s" >&2
  [[ $rc == 0 ]] || tail -n 5 "$OUT/$name.log" >&2
  return "$rc"
}

if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
else
  echo "none" > "$OUT/gpu.txt"
fi
echo "gpu: $(cat "$OUT/gpu.txt")" >&2

if [[ ${DRY_RUN:-0} == 1 ]]; then
  CHECKPOINT=$REFERENCE_DIR/tiny-clip
  step reference-dump 60 reference-dump.out node "$BUILD_DIR/bench/gpu/reference-dump.js" "$DUMP"
else
  step torch 180 torch.json python3 bench/gpu/torch_baseline.py --checkpoint "$CHECKPOINT" --dump "$DUMP" --iterations "$ITERATIONS"
fi
step convert 180 convert.json node "$PICKSCORE_BIN" model convert "$CHECKPOINT" --out "$MODEL" --precision "$PRECISION" \
  --attention "$ATTENTION" --tokenizer "$TOKENIZER" --name "$MODEL_NAME" --quiet --json
step encoder 150 encoder.json node "$BUILD_DIR/bench/gpu/encoder.js" --model "$MODEL" --dump "$DUMP" --device "$DEVICE" \
  --batch "$BATCH" --iterations "$ITERATIONS" --warmup "$WARMUP"
step jpegs 60 jpegs.json env UV_THREADPOOL_SIZE="$(nproc)" node "$BUILD_DIR/bench/gpu/make-jpegs.js" "$JPEGS" "$IMAGES" "$IMAGE_SIZE"
# The GPU's own view of how busy it was during rank: nvidia-smi's utilisation (the share of each 100 ms
# in which a kernel ran), sampled in the background; the summary averages it over the span it was busy.
sampler=
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader,nounits -lms 100 > "$OUT/gpu-util.csv" 2> /dev/null &
  sampler=$!
fi
step rank 120 rank.stdout node "$PICKSCORE_BIN" rank "$JPEGS" --prompt "$PROMPT" --model "$MODEL" --device "$DEVICE" \
  --batch-size "$BATCH" --no-cache --stats --format jsonl --out "$OUT/rank.jsonl"
[[ -n $sampler ]] && { kill "$sampler" 2> /dev/null; wait "$sampler" 2> /dev/null; }
step rank-auto 90 rank-auto.stdout node "$PICKSCORE_BIN" rank "$JPEGS" --prompt "$PROMPT" --model "$MODEL" --device auto \
  --no-cache --stats --format json --out "$OUT/rank-auto.json"

# Last, with whatever time is left: where the encoder's GPU time goes (kernels by total time, host-device
# copies), from Nsight Systems when the machine has it. Not a pass/fail step.
if command -v nsys > /dev/null; then
  step nsys 120 nsys.txt nsys profile --stats=true --force-overwrite=true -o "$WORK/encoder-profile" \
    node "$BUILD_DIR/bench/gpu/encoder.js" --model "$MODEL" --dump "$DUMP" --device "$DEVICE" --batch "$BATCH" --iterations 3 --warmup 1
else
  echo "nsys not found on this machine" > "$OUT/nsys.txt"
fi

node "$BUILD_DIR/bench/gpu/summary.js" "$OUT" "$AUTO_EXPECT" > "$OUT/gpu-check.json"
summary_rc=$?
cat "$OUT/gpu-check.json"
exit "$summary_rc"
