#!/usr/bin/env bash
# The source's LCM table on a shipped model (issue 12): teacher at 50 DDIM steps vs 8 / 4 / 2 / 1 LCM steps.
#
#   bash tools/lcm_table.sh [CHECKPOINT=checkpoints/bouncer] [OUT=runs/lcm_table/<name>] [DISTILLED]
#
# The shipped checkpoints are not distilled (docs/levers.md: distillation lost objects), so their
# "student" is the teacher's own network sampled by the LCM scheduler in 1-8 steps. DISTILLED, a
# checkpoint consistency-distilled from the same teacher, adds its 8/4/2/1-step rows (same network
# size, so the same speed), e.g. made by
#   cp -r checkpoints/bouncer runs/distilled && worldgame train stage=distill out=runs/distilled \
#     train.distill.steps=20000 train.distill.max_minutes=8
#
# Quality: `worldgame eval` sweeps (held-out seeds; 4 dreams of 1,000 frames per sampler), the
# teacher's in the background beside the LCM ones (it is the slow one). Speed: `worldgame bench`
# sweeps run afterwards, one job at a time, on torch (the teacher's only path) and ONNX (what play runs).
# About 25 min for the built-in game on a 2-core CPU. Prints the markdown table last (tools/lcm_table.py).
set -euo pipefail
CK=${1:-checkpoints/bouncer}
OUT=${2:-runs/lcm_table/$(basename "$CK")}
rm -rf "$OUT" && mkdir -p "$OUT"
EVAL="checkpoint=$CK steps=[1,2,4,8] teacher_steps=50 rollout_frames=1000 object_horizons=[10,100,300,1000]"

# shellcheck disable=SC2086
worldgame eval -m $EVAL sampler=teacher rollout_steps=50 hydra.sweep.dir="$OUT/eval_teacher" >"$OUT.teacher.log" 2>&1 &
teacher=$!
# shellcheck disable=SC2086
worldgame eval -m $EVAL sampler=lcm rollout_steps=1,2,4,8 hydra.launcher.n_jobs=1 hydra.sweep.dir="$OUT/eval_lcm"
if [ -n "${3:-}" ]; then
  # shellcheck disable=SC2086
  worldgame eval -m ${EVAL/checkpoint=$CK/checkpoint=$3} sampler=lcm rollout_steps=1,2,4,8 hydra.launcher.n_jobs=1 \
    hydra.sweep.dir="$OUT/eval_distilled"
fi
wait "$teacher" || { echo "the teacher's eval failed: see $OUT.teacher.log"; exit 1; }
worldgame bench -m checkpoint="$CK" sampler=lcm steps=[1,2,4,8] backend=torch,onnx frames=300 hydra.sweep.dir="$OUT/bench_lcm"
worldgame bench -m checkpoint="$CK" sampler=teacher steps=[50] backend=torch frames=60 warmup=5 hydra.sweep.dir="$OUT/bench_teacher"
python tools/lcm_table.py "$OUT"
