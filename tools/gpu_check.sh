#!/usr/bin/env bash
# The GPU path, measured in one go (issue 22): on a CUDA machine it installs the project in a fresh
# venv (torch's default Linux wheel is a CUDA build; the project's dev and atari extras), runs the
# whole test suite (tests/test_cuda.py included: they skip only where there is no CUDA), benches
# fp16 eager / CUDA graphs / torch.compile at 1/2/4/8 steps and batch 1/16 (tools/gpu_bench.py) and
# `worldgame bench` on CUDA, trains the teacher for GPU_CHECK_MINUTES on the GPU and a short while
# on one CPU thread, and prints one JSON line last.
#
#   bash tools/gpu_check.sh                 # on the GPU machine, from the repository root
#   GPU_CHECK_DRY=1 bash tools/gpu_check.sh # dry run: the active python, no install, every step short, on the CPU
#
# Without nvidia-smi (or torch seeing no CUDA) it is a dry run by itself and says so: the same
# steps, briefly, to check the script before device time is spent on it. Logs: $GPU_CHECK_WORK/*.log.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${GPU_CHECK_WORK:-/tmp/worldgame-gpu-check}
MINUTES=${GPU_CHECK_MINUTES:-3}      # teacher training on the GPU
CPU_MINUTES=${GPU_CHECK_CPU_MINUTES:-1}  # the same on one CPU thread, for the ratio
DRY=${GPU_CHECK_DRY:-}
mkdir -p "$WORK"
if [ -z "$DRY" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then DRY=0; else DRY=1; fi
fi
say() { echo "gpu_check: $*" >&2; }

# 1. install (the GPU run only: a dry run uses the python already active)
if [ "$DRY" = 0 ]; then
  say "installing into $WORK/venv (torch CUDA build, project extras dev+atari) ..."
  python3 -m venv "$WORK/venv"
  . "$WORK/venv/bin/activate"
  pip install -q --upgrade pip
  pip install -q torch  # the default Linux wheel: CUDA
  pip install -q -e '.[dev,atari]'
  python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'torch sees no CUDA device')"
  DEVICE=cuda
else
  say "DRY RUN: no CUDA here; every step runs briefly on the CPU with the active python (not a GPU figure)"
  DEVICE=cpu
  MINUTES=0.1; CPU_MINUTES=0.1
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export XDG_CACHE_HOME=$WORK/xdg   # the ONNX cache of the test and bench runs: private to this check
mkdir -p "$XDG_CACHE_HOME" && chmod 700 "$XDG_CACHE_HOME"

# 2. tests: the whole suite on the GPU machine; a dry run only collects the CUDA tests (skipped)
say "tests ..."
if [ "$DRY" = 0 ]; then
  TESTS=(tests)
else
  TESTS=(tests/test_cuda.py)
fi
set +e
python -m pytest -rs "${TESTS[@]}" > "$WORK/tests.log" 2>&1  # pyproject adds -q: the last line is the summary
TESTS_RC=$?
set -e
TESTS_LINE=$(grep -E '[0-9]+ (passed|failed|skipped|error)' "$WORK/tests.log" | tail -n 1)  # pytest's last summary line
say "tests: $TESTS_LINE"

# 3. bench: fp16 eager / CUDA graphs / torch.compile, then the project's own bench on the device
say "bench ..."
python tools/gpu_bench.py --checkpoint checkpoints/bouncer --json "$WORK/gpu_bench.json" > "$WORK/gpu_bench.log" 2>&1
tail -n +1 "$WORK/gpu_bench.log" | grep -v '^{' >&2 || true
BENCH_FRAMES=$([ "$DRY" = 0 ] && echo 1000 || echo 20)
worldgame bench device=$DEVICE steps=[1,2,4,8] frames=$BENCH_FRAMES warmup=10 > "$WORK/bench.log" 2>&1
tail -n 1 "$WORK/bench.log" > "$WORK/bench.json"

# 4. train the teacher for a few minutes on the device and on one CPU thread (steps/s each)
say "training the teacher: $MINUTES min on $DEVICE, $CPU_MINUTES min on one CPU thread ..."
[ -d "$WORK/data" ] || worldgame collect episodes=12 steps=500 out="$WORK/data" progress=false > "$WORK/collect.log" 2>&1
teacher_rate() {  # device minutes run: prints steps/s from the stage's last line
  local run="$WORK/run_$1"
  rm -rf "$run"
  worldgame train stage=vae data="$WORK/data" out="$run" device="$1" train.vae.steps=50 progress=false > "$run.log" 2>&1
  worldgame train stage=teacher data="$WORK/data" out="$run" device="$1" train.teacher.max_minutes="$2" \
    train.teacher.val_every=1000000 progress=false >> "$run.log" 2>&1
  # "teacher: N steps in M min; ..."
  grep -o 'teacher: [0-9]* steps in [0-9.]* min' "$run.log" | tail -n 1 |
    awk '{printf "%.2f", $2 / ($5 * 60)}'
}
GPU_RATE=null
[ "$DRY" = 0 ] && GPU_RATE=$(teacher_rate cuda "$MINUTES")
CPU_RATE=$(teacher_rate cpu "$CPU_MINUTES")
say "teacher steps/s: GPU ${GPU_RATE}, one CPU thread ${CPU_RATE}"

# 5. one JSON line
python - "$WORK" "$DRY" "$TESTS_RC" "$TESTS_LINE" "$GPU_RATE" "$CPU_RATE" <<'PY'
import json, sys
work, dry, rc, line, gpu, cpu = sys.argv[1:]
gb = json.load(open(f"{work}/gpu_bench.json"))
best = {}
for r in gb["results"]:  # the fastest way at each (steps, batch)
    key = f"s{r['steps']}b{r['batch']}"
    if key not in best or r["fps"] > best[key]["fps"]:
        best[key] = {"fps": r["fps"], "mode": r["mode"]}
try:
    bench = json.loads(open(f"{work}/bench.json").read())
except ValueError:
    bench = None
print(json.dumps({"dry_run": dry == "1", "device": gb["device"], "torch": gb["torch"],
                  "tests": {"ok": rc == "0", "summary": line}, "fps_best": best, "gpu_bench_errors": gb["errors"],
                  "worldgame_bench": bench and [{k: r[k] for k in ("steps", "fps", "latency_ms")} for r in bench["results"]],
                  "teacher_steps_per_s": {"device": None if gpu == "null" else float(gpu), "cpu_1_thread": float(cpu),
                                          "ratio": None if gpu == "null" else round(float(gpu) / float(cpu), 1)}}))
PY
