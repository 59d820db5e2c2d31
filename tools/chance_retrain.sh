#!/usr/bin/env bash
# Retrain a shipped checkpoint with the chance code (issue 30), keeping its autoencoder (the game's
# pictures are unchanged, so its latents are too): teacher + chance code, then the event head and
# the agent on the new dream. Resumable: run it again after an interruption (resume=true).
#   bash tools/chance_retrain.sh GAME DATA OUT TEACHER_MINUTES [extra train overrides...]
# e.g.  bash tools/chance_retrain.sh boxing data/boxing runs/boxing_chance 45 train.events.steps=16000 train.events.max_minutes=9 train.events.val_every=2000
set -euo pipefail
game=$1 data=$2 out=$3 minutes=$4; shift 4
mkdir -p "$out"
[ -d "$out/vae" ] || cp -r "checkpoints/$game/vae" "$out/vae"
common=(data="$data" out="$out" progress=false threads=1 resume=true model.denoiser.chance_groups=2 model.denoiser.chance_values=16 "$@")
worldgame train stage=teacher "${common[@]}" train.teacher.max_minutes="$minutes"
worldgame train stage=events "${common[@]}"
worldgame train stage=agent "${common[@]}"
