"""Badly typed, out-of-range and unknown settings for every command (each must exit 2 with one line)."""

from __future__ import annotations

COMMON_DISPLAY = ["threads=-1", "threads=x", "scale=0", "scale=1000", "scale=2.5", "fusion=foo", "fusion=1",
                  "view=sideways", "fusion_window=-1", "fusion_base=0", "fusion_base=-1", "device=tpu",
                  "device=cuda:x", "half=maybe", "optimize=maybe", "seed=-1", "seed=abc", "backend=tpu", "backend=[onnx]"]
GAME = ["game.lives=0", "game.frame_size=16", "game.frame_size=abc", "game.num_orbs=-1", "game.coin_chance=2",
        "game.coin_chance=inf", "game.max_steps=-5", "game.infinite_lives=x", "game=nope",
        "game._target_=builtins.exec", "game.lives=[1]"]

BAD = {
    "play": COMMON_DISPLAY + GAME + [
        "seed=[1]", "seed=1.5", "steps=3", "steps=[3]", "steps=abc", "steps=0", "fps=-1", "fps=abc", "fps=inf",
        "fps=nan", "frames=-1", "engine=dream", "engine=[model]", "record=perhaps", "stepz=3"],
    "bench": COMMON_DISPLAY + GAME[:6] + [
        "steps=[3]", "steps=[]", "steps=abc", "steps=[1,3]", "steps=3", "frames=1", "frames=-1", "warmup=-1",
        "soak_frames=0", "framez=3"],
    "collect": GAME + [
        "episodes=0", "episodes=-1", "episodes=abc", "episodes=1e9", "episodes=2.5", "steps=0", "steps=-3",
        "sticky=2", "sticky=-0.1", "sticky=abc", "sticky=1", "seed=abc", "seed=-1", "policy=greedy",
        "policy=[random]", "progress=maybe", "out=[1]", "game=gym game.id=os:system-v0", "game=gym game.id=../evil",
        "game=gym game.frame_size=0", "game=gym game.kwargs.x=[1]", "episodez=1"],
    "train": [
        "stage=foo", "stage=[vae]", "save_every=0", "save_every=-1", "threads=-1", "seed=abc", "val_fraction=0",
        "val_fraction=1.5", "resume=maybe", "train.vae.steps=-1", "train.vae.steps=0", "train.vae.lr=0",
        "train.vae.lr=-1", "train.vae.batch_size=0", "train.teacher.ema_decay=2", "train.teacher.max_context_noise=-1",
        "train.distill.huber_c=0", "train.distill.target_ema=-0.5", "train.vae.max_minutes=0", "train.vae.val_every=0",
        "train.teacher.steps=abc", "model.denoiser.context_length=0", "model.denoiser.block_out_channels=[]",
        "model.denoiser.block_out_channels=[0]", "model.denoiser.norm_num_groups=7", "model.vae.downscale=0",
        "model.prediction_type=noise", "model.play_context_noise=-1", "device=tpu", "progress=perhaps",
        "train=nope", "model=huge", "train.rollout.unroll=0", "train.rollout.train_steps=[3]", "data=[]", "data=[1]", "data={a:1}",
        "train.rollout.sampler_steps=5", "stagee=vae"],
    "eval": [
        "episodes=0", "episodes=-1", "horizons=[2000]", "horizons=[0]", "horizons=[]", "horizons=abc", "steps=[3]",
        "steps=[]", "samples=0", "teacher_steps=0", "rollout_frames=0", "rollout_steps=3", "long_rollouts=0",
        "horizon_rollouts=0", "context_noise=-1", "context_noise=abc", "threads=-1", "seed=-1", "device=gpu",
        "episode_frames=1", "object_horizons=[0]", "object_horizons=[5000]", "fusion=blur", "fusion_window=-1",
        "control_contexts=-1", "control_frames=0", "control_frames=x",
        "checkpointt=x"],
    "replay": [
        "fps=0", "fps=-1", "fps=abc", "scale=0", "scale=-1", "scale=1.5", "episode=abc", "episode=1.5", "hud=maybe",
        "progress=maybe", "regenerate=maybe", "device=xyz", "export=[1]", "pathh=x"],
}

# interpolations are resolved before the checks (a value they give is judged like a typed one), and a
# path no OS takes (a name over 255 bytes) is a setting error, not an OSError deep in the run
LONG = "/tmp/" + "a" * 300 + "/x"
INTERPOLATED = {
    "play": ["checkpoint=${oc.env:WG_NOPE}", "seed=${oc.decode:'-5'}", "sessions=${sessions}", f"checkpoint={LONG}",
             f"sessions={LONG}"],
    "bench": ["steps=${oc.decode:'3'}", "frames=${oc.decode:'-1'}", f"checkpoint={LONG}"],
    "collect": ["episodes=${oc.decode:'-5'}", "out=${oc.env:WG_NOPE}", "out=${out}", f"out={LONG}"],
    "train": ["out=${oc.env:WG_NOPE}", "out=${out}", "model.denoiser.latent_channels=${oc.decode:'-3'}",
              "model.vae.latent_channels=${oc.env:WG_NOPE}", f"out={LONG}", f"data=[{LONG}]", f"train.teacher.init={LONG}"],
    "eval": ["episodes=${oc.decode:'0'}", f"out={LONG}", f"checkpoint={LONG}", "out=${oc.env:WG_NOPE}"],
    "replay": [f"path={LONG}", "export=${oc.env:WG_NOPE}", f"export={LONG}.gif", "fps=${oc.decode:'0'}"],
}
for _cmd, _extra in INTERPOLATED.items():
    BAD[_cmd] = BAD[_cmd] + _extra


def cases() -> list[tuple[str, list[str]]]:
    """(id, argv) for every bad setting of every command."""
    return [(f"{cmd}:{bad}", [cmd, *bad.split()]) for cmd, bads in BAD.items() for bad in bads]
