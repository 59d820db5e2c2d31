#!/usr/bin/env bash
# Regenerates the object-lever table (docs/levers.md) from scratch on a 2-core CPU.
#   bash tools/levers.sh            # ~2.5 h: collects data, trains the variants, evaluates each
# Every row is `worldgame eval` on held-out seeds (4 dreams x 2,000 frames, 4 LCM steps).
set -euo pipefail
cd "$(dirname "$0")/.."
L=runs/levers
mkdir -p $L
OLD=runs/old_ck          # the v0.1 shipped checkpoint (commit e053ed9), before this work
if [ ! -d $OLD ]; then mkdir -p $OLD && git archive e053ed9 checkpoints/bouncer | tar -x -C $OLD --strip-components=2; fi
[ -d data/bouncer ] || worldgame collect episodes=320 steps=1500 out=data/bouncer progress=false

# display path: the v0.1 model through each fusion setting (frames as the window shows them)
worldgame eval checkpoint=$OLD out=$L/01_v0.1_fusion_off fusion=off
worldgame eval checkpoint=$OLD out=$L/02_v0.1_fusion_latent fusion=latent
# own-rollout fine-tuning alone, on the v0.1 student (10 CPU-minutes)
rm -rf runs/old_rollout && cp -r $OLD runs/old_rollout
worldgame train stage=rollout data=data/bouncer out=runs/old_rollout threads=1 train.rollout.max_minutes=10 progress=false
worldgame eval checkpoint=runs/old_rollout out=$L/03_v0.1_plus_rollout_10min
# the retrain, stage by stage (runs/pipeline.sh snapshots the checkpoint after each stage)
#   vae: foreground-weighted loss; teacher: per-frame context noise, object-validated;
#   distill: object-validated; rollout: own-rollout fine-tuning
for stage in teacher distill rollout; do
  worldgame eval checkpoint=runs/snap_$stage out=$L/1${stage:0:1}_retrain_after_$stage
done
# play-time context noise on the final model
for n in 0.0 0.1; do worldgame eval checkpoint=runs/snap_rollout context_noise=$n out=$L/2n_final_context_noise_$n; done
worldgame eval checkpoint=runs/snap_rollout fusion=latent out=$L/2f_final_fusion_latent
python tools/lever_table.py $L
