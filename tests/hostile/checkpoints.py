"""Crafted checkpoint folders, made from a valid one: `_target_` gadgets, bad metadata, missing or
swapped parts. Each gadget, if anything ever ran it, writes the marker file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

from hostile.episodes import pickle_of

BOUNCER = "worldgame.games.bouncer.Bouncer"


def gadgets(marker: Path, evil_pickle: Path) -> list[tuple[str, object]]:
    """game_config values that would run code if handed to hydra's instantiate."""
    m = str(marker)
    return [
        ("exec", {"_target_": "builtins.exec", "_args_": [f"open({m!r}, 'w').write('pwned')"]}),
        ("path_write_text", {"_target_": "pathlib.Path.write_text", "self": {"_target_": "pathlib.Path", "_args_": [m]}, "data": "pwned"}),
        ("torch_load_pickle", {"_target_": "torch.load", "f": str(evil_pickle), "weights_only": False}),
        ("numpy_load_pickle", {"_target_": "numpy.load", "file": str(evil_pickle), "allow_pickle": True}),
        ("pickle_loads_via_get_method", {"_target_": "hydra.utils.get_method", "path": "pickle.loads"}),
        ("nested_in_bouncer_setting", {"_target_": BOUNCER, "lives": {"_target_": "builtins.exec", "_args_": [f"open({m!r},'w')"]}}),
        ("extra_key_gadget", {"_target_": BOUNCER, "frame_size": 64, "evil": {"_target_": "pathlib.Path.touch", "self": m}}),
        ("partial_target", {"_target_": "functools.partial", "_args_": ["builtins.exec"], "_partial_": True}),
        ("target_with_space", {"_target_": BOUNCER + " ", "frame_size": 64}),
        ("target_lookalike", {"_target_": "worldgame.games.bouncer.Bouncer.__init__.__globals__", "frame_size": 64}),
        ("target_not_string", {"_target_": ["builtins", "exec"], "frame_size": 64}),
        ("gym_module_colon", {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "os:system-v0", "frame_size": 64}),
        ("gym_kwargs_gadget", {"_target_": "worldgame.games.gym_adapter.GymGame", "id": "CartPole-v1", "frame_size": 64,
                               "kwargs": {"render_mode": {"_target_": "builtins.exec"}}}),
        ("not_a_mapping", "builtins.exec"),
    ]


def write_evil_pickle(path: Path, marker: Path) -> Path:
    path.write_bytes(pickle_of(marker))
    return path


def _meta(folder: Path, change: Callable[[dict], object]) -> None:
    meta_file = folder / "worldgame.json"
    meta = json.loads(meta_file.read_text())
    new = change(meta)
    meta_file.write_text(json.dumps(meta if new is None else new))


def _set(key: str, value: object) -> Callable[[dict], None]:
    return lambda m: m.__setitem__(key, value)


def _drop(key: str) -> Callable[[dict], None]:
    return lambda m: m.pop(key)


def variants(marker: Path, evil_pickle: Path) -> Iterator[tuple[str, Callable[[Path], None]]]:
    """(name, mutate(folder)) of crafted checkpoints; mutate edits a copy of a valid one."""
    for name, gadget in gadgets(marker, evil_pickle):
        yield f"gadget_{name}", lambda f, g=gadget: _meta(f, _set("game_config", g))
    yield "meta_not_json", lambda f: (f / "worldgame.json").write_text("{not json")
    yield "meta_empty_file", lambda f: (f / "worldgame.json").write_bytes(b"")
    yield "meta_json_list", lambda f: (f / "worldgame.json").write_text("[1, 2]")
    yield "meta_deep_nesting", lambda f: (f / "worldgame.json").write_text("[" * 100_000 + "]" * 100_000)
    yield "meta_missing", lambda f: (f / "worldgame.json").unlink()
    yield "meta_no_game", lambda f: _meta(f, _drop("game"))
    yield "meta_no_game_config", lambda f: _meta(f, _drop("game_config"))
    yield "meta_no_action_names", lambda f: _meta(f, _drop("action_names"))
    yield "meta_no_frame_size", lambda f: _meta(f, _drop("frame_size"))
    yield "meta_frame_size_str", lambda f: _meta(f, _set("frame_size", "64"))
    yield "meta_frame_size_huge", lambda f: _meta(f, _set("frame_size", 10**9))
    yield "meta_action_names_int", lambda f: _meta(f, _set("action_names", 6))
    yield "meta_three_actions", lambda f: _meta(f, _set("action_names", ["NOOP", "UP", "DOWN"]))
    yield "meta_context_noise_str", lambda f: _meta(f, _set("context_noise", "lots"))
    yield "meta_context_noise_nan", lambda f: (f / "worldgame.json").write_text(
        (f / "worldgame.json").read_text().replace('"context_noise": 0.05', '"context_noise": NaN'))
    yield "meta_prediction_evil", lambda f: _meta(f, _set("prediction_type", "evil"))
    yield "meta_key_bindings_list", lambda f: _meta(f, _set("key_bindings", ["up"]))
    yield "meta_game_config_lives_0", lambda f: _meta(f, _set("game_config", {"_target_": BOUNCER, "lives": 0, "frame_size": 64}))
    yield "meta_frame_size_mismatch", lambda f: _meta(f, _set("game_config", {"_target_": BOUNCER, "frame_size": 128}))
    yield "no_vae", lambda f: shutil.rmtree(f / "vae")
    yield "no_denoiser", lambda f: shutil.rmtree(f / "denoiser")
    yield "vae_config_missing", lambda f: (f / "vae" / "config.json").unlink()
    yield "vae_config_garbage", lambda f: (f / "vae" / "config.json").write_bytes(b"\x00\xff garbage")
    yield "vae_config_width_bomb", lambda f: _config(f / "vae", "width", 60000)
    yield "denoiser_config_blocks_bomb", lambda f: _config(f / "denoiser", "block_out_channels", [4096] * 16)
    yield "denoiser_config_layers_bomb", lambda f: _config(f / "denoiser", "layers_per_block", 10**6)
    yield "weights_missing", lambda f: [p.unlink() for p in (f / "denoiser").glob("*.safetensors")]
    yield "weights_garbage", lambda f: [p.write_bytes(b"\x00" * 64) for p in (f / "denoiser").glob("*.safetensors")]
    yield "weights_truncated", lambda f: [p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]) for p in (f / "vae").glob("*.safetensors")]
    yield "weights_header_bomb", lambda f: [p.write_bytes((2**40).to_bytes(8, "little") + b"{}") for p in (f / "vae").glob("*.safetensors")]
    yield "pickle_bin_instead_of_safetensors", lambda f: _pickle_weights(f / "denoiser", marker)


def _config(part: Path, key: str, value: object) -> None:
    cfg = json.loads((part / "config.json").read_text())
    cfg[key] = value
    (part / "config.json").write_text(json.dumps(cfg))


def _pickle_weights(part: Path, marker: Path) -> None:
    for p in part.glob("*.safetensors"):
        p.unlink()
    (part / "diffusion_pytorch_model.bin").write_bytes(pickle_of(marker))


def make_all(valid: Path, root: Path, marker: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    evil = write_evil_pickle(root / "evil.pt", marker)
    out = {}
    for name, mutate in variants(marker, evil):
        folder = root / name
        shutil.copytree(valid, folder)
        mutate(folder)
        out[name] = folder
    return out
