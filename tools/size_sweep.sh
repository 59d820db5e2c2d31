#!/usr/bin/env bash
# The model-size sweep (issue 12): train each model shape on the same short CPU budget, one torch
# thread per run, then eval and bench them all and tabulate.
#
#   bash tools/size_sweep.sh [OUT=runs/size] [TEACHER_MIN=4] [VAE_MIN=1.5] [JOBS=$(nproc)]   # DATA=data/bouncer (worldgame collect)
#   bash tools/size_sweep.sh runs/size 4 1.5 0      # JOBS=0: skip training, only eval + bench + table
#
# Plots: $OUT/sweep.png (foreground PSNR vs FPS), $OUT/orbs/sweep.png (orbs alive vs FPS) = docs/model_size*.png.
# Two groups, one factor changed at a time from the shipped shape (conf/model/small.yaml):
#   denoiser shapes (UNet widths, context K) train only the teacher, on the shipped autoencoder;
#   latent channels (2 / 4 / 8) need their own autoencoder: VAE_MIN minutes, then the teacher.
# The budget counts training-step time only (validation and latent encoding excluded), so runs that
# share a machine still get equal compute as long as JOBS <= the number of cores.
set -euo pipefail
OUT=${1:-runs/size}
TEACHER_MIN=${2:-4}
VAE_MIN=${3:-1.5}
JOBS=${4:-$(nproc)}
DATA=${DATA:-data/bouncer}
mkdir -p "$OUT"

# name | own autoencoder? | model overrides
VARIANTS="\
w32_k4_c4|no|
w16_k4_c4|no|model.denoiser.block_out_channels=[16,32,48]
w48_k4_c4|no|model.denoiser.block_out_channels=[48,96,144]
w64_k4_c4|no|model.denoiser.block_out_channels=[64,128,192]
w32_k2_c4|no|model.denoiser.context_length=2
w32_k8_c4|no|model.denoiser.context_length=8
vae_c2|yes|model.vae.latent_channels=2
vae_c4|yes|model.vae.latent_channels=4
vae_c8|yes|model.vae.latent_channels=8"

train_one() {  # one variant, start to end; its log beside its weights
  IFS='|' read -r name own overrides <<<"$1"
  dir="$OUT/$name"
  mkdir -p "$dir"
  # shellcheck disable=SC2086
  {
    if [ "$own" = yes ]; then
      worldgame train stage=vae device=cpu data="$DATA" out="$dir" threads=1 progress=false train.vae.max_minutes="$VAE_MIN" $overrides
    elif [ ! -d "$dir/vae" ]; then  # the shipped autoencoder, in fp32 (training loads it as saved)
      python -c "import sys; from worldgame.models.autoencoder import TinyAutoencoder as A; A.from_pretrained('checkpoints/bouncer/vae').float().save_pretrained(sys.argv[1])" "$dir/vae"
    fi
    worldgame train stage=teacher device=cpu data="$DATA" out="$dir" threads=1 progress=false train.teacher.max_minutes="$TEACHER_MIN" $overrides
  } >"$dir/train.log" 2>&1 && echo "trained $name" || echo "FAILED $name (see $dir/train.log)"
}
export -f train_one
export OUT TEACHER_MIN VAE_MIN DATA

if [ "$JOBS" -gt 0 ]; then
  echo "$VARIANTS" | xargs -P "$JOBS" -I{} bash -c 'train_one "$@"' _ {}
fi
[ "${TRAIN_ONLY:-0}" = 1 ] && exit 0

# quality (parallel eval jobs) and speed (one bench job at a time) of every variant, then one table
dirs=$(echo "$VARIANTS" | cut -d'|' -f1 | sed "s|^|$OUT/|" | paste -sd, -)
worldgame eval -m checkpoint="$dirs" rollout_frames=1000 long_rollouts=2 object_horizons=[10,100,300,1000] \
  hydra.sweep.dir="$OUT/eval"
worldgame bench -m checkpoint="$dirs" steps=[1,4] frames=300 backend=onnx hydra.sweep.dir="$OUT/bench"
python tools/sweep_table.py "$OUT/eval" "$OUT/bench" --out "$OUT"
python tools/sweep_table.py "$OUT/eval" "$OUT/bench" --out "$OUT/orbs" --y objects.bouncer.orbs.dream_mean
