#!/usr/bin/env bash
# Regenerates docs/levers.md's table from scratch on a 2-core CPU (about 2.5 h):
#   bash tools/levers.sh && python tools/lever_table.py runs/levers
# Every row is `worldgame eval` on held-out seeds (4 dreams x 2,000 frames, 4 LCM steps).
set -euo pipefail
cd "$(dirname "$0")/.."
L=runs/levers
T="threads=1 progress=false"
mkdir -p $L
OLD=runs/old_ck          # the v0.1 shipped checkpoint (commit e053ed9), before this work
if [ ! -d $OLD ]; then mkdir -p $OLD && git archive e053ed9 checkpoints/bouncer | tar -x -C $OLD --strip-components=2; fi
[ -d data/bouncer ] || worldgame collect episodes=320 steps=1500 out=data/bouncer progress=false

# 01-02 display path: the v0.1 model through each fusion setting (the frames as the window shows them)
worldgame eval checkpoint=$OLD out=$L/01_v0.1_fusion_off fusion=off
worldgame eval checkpoint=$OLD out=$L/02_v0.1_fusion_latent fusion=latent
# 03 own-rollout fine-tuning alone, on the v0.1 student
rm -rf runs/old_rollout && cp -r $OLD runs/old_rollout
worldgame train stage=rollout data=data/bouncer out=runs/old_rollout $T train.rollout.max_minutes=10
worldgame eval checkpoint=runs/old_rollout out=$L/03_v0.1_plus_rollout_10min

# 1x the retrain (conf/train/shipped.yaml, conf/model/small.yaml), one stage at a time
R=runs/bouncer2
worldgame train stage=vae data=data/bouncer out=$R $T train.vae.max_minutes=18
worldgame train stage=teacher data=data/bouncer out=$R $T train.teacher.max_minutes=40
rm -rf runs/snap_teacher && cp -r $R runs/snap_teacher && rm -f runs/snap_teacher/*.pt
cp -r runs/snap_teacher runs/bouncer2_t && cp -p $R/latents.pt $R/vae/* runs/bouncer2_t/ 2>/dev/null || true
worldgame eval checkpoint=runs/snap_teacher out=$L/11_retrain_teacher_lcm4
worldgame train stage=distill data=data/bouncer out=$R $T train.distill.max_minutes=8 train.distill.val_every=250
rm -rf runs/snap_distill && cp -r $R runs/snap_distill && rm -f runs/snap_distill/*.pt
worldgame eval checkpoint=runs/snap_distill out=$L/12_retrain_distill_own_rollouts
worldgame train stage=rollout data=data/bouncer out=$R $T train.rollout.max_minutes=12
worldgame eval checkpoint=$R out=$L/13_retrain_distill_then_rollout
worldgame train stage=rollout data=data/bouncer out=runs/bouncer2_t $T train.rollout.max_minutes=10
worldgame eval checkpoint=runs/bouncer2_t out=$L/14_retrain_teacher_then_rollout

# 2x play-time settings on the shipped checkpoint
for n in 0.0 0.2; do worldgame eval context_noise=$n out=$L/2n_shipped_context_noise_$n; done
worldgame eval fusion=latent out=$L/2f_shipped_fusion_latent
python tools/lever_table.py $L
