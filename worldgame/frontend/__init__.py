"""The window front-end (pygame): loop.py (PlayLoop: keys -> the engine's tick core -> draw ->
present, paced), window.py (drawing the panels and the HUD), controls.py (pygame keys -> the
command table of engine/keys.py), tsr.py (with display_hz: the frames shown between two model
frames), export.py (the same frames written to a video)."""
