#!/usr/bin/env bash
# The play-sampler table (issue 17, docs/fidelity.md): the same network sampled by LCM, DDIM and
# DPM-Solver++ 2M at several spacings and step counts, judged by what a player sees.
#
#   bash tools/sampler_table.sh [CHECKPOINT=checkpoints/bouncer] [OUT=runs/sampler_table/<name>] [ROWS...]
#
# ROWS are sampler:spacing:steps (spacing "-" = the sampler's default); default: the rows below.
# Quality: one `worldgame eval` per row (held-out seeds, 8 dreams x 2,000 frames, the same actions
# and seeds for every row), two at a time (one thread each). Speed: `worldgame bench` per sampler at
# 4 steps on ONNX afterwards, one at a time, in the same run. Prints the markdown table last
# (tools/sampler_table.py). About 25 min for Bouncer on a 2-core CPU.
set -euo pipefail
CK=${1:-checkpoints/bouncer}
OUT=${2:-runs/sampler_table/$(basename "$CK")}
shift $(( $# < 2 ? $# : 2 ))
ROWS=("$@")
[ ${#ROWS[@]} -gt 0 ] || ROWS=(lcm:-:4 ddim:leading:4 ddim:trailing:4 dpmsolver:trailing:4 dpmsolver:leading:4
                               ddim:leading:2 ddim:leading:8 lcm:-:2)
mkdir -p "$OUT"
EVAL="checkpoint=$CK long_rollouts=8 rollout_frames=2000 object_horizons=[10,100,300,1000,2000] steps=[1,2,4]"

run_eval() {  # sampler:spacing:steps
  IFS=: read -r sampler spacing steps <<<"$1"
  name="${sampler}_${spacing/-/default}_${steps}"
  [ -s "$OUT/$name/eval.json" ] && return 0   # resumable: rows already measured are kept
  extra=""; [ "$spacing" = "-" ] || extra="spacing=$spacing"
  # shellcheck disable=SC2086
  worldgame eval $EVAL sampler="$sampler" $extra rollout_steps="$steps" out="$OUT/$name" >"$OUT/$name.log" 2>&1 \
    || { echo "eval $name failed: see $OUT/$name.log"; return 1; }
  echo "eval $name done"
}
export -f run_eval; export OUT EVAL
printf '%s\n' "${ROWS[@]}" | xargs -P 2 -I{} bash -c 'run_eval {}'

for sampler in $(printf '%s\n' "${ROWS[@]}" | cut -d: -f1 | sort -u); do
  [ -s "$OUT/bench_$sampler.json" ] && continue
  worldgame bench checkpoint="$CK" sampler="$sampler" steps=[4] backend=onnx frames=600 warmup=60 2>"$OUT/bench_$sampler.log" \
    | tail -n 1 >"$OUT/bench_$sampler.json"
done
python tools/sampler_table.py "$OUT"
