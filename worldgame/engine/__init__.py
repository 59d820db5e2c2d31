"""The engine: everything one tick needs, free of any UI, driven alike by the window
(frontend/loop.py) and by each browser tab (commands/serve/). In reading order:

    tick_core.py    TickCore: pending events and live settings -> Driver.tick -> panels, recorder, stats, HUD state
    keys.py         the command table (keys, live controls, the page's buttons) and the one key rule
    engines.py      Driver (event -> engine calls), the Engine interface, RealEngine
    model_engine.py ModelEngine: live controls and per-view requests -> the dream (+ the real game)
    dream.py        Dream.step: the batch-1 rollout (models/rollout.py) -> its prepared sampler
                    (models/sampler.py) -> fusion.show (fusion + decode, as eval and validation show it)
    fusion.py       phi-decay display fusion and the one show(latent, fusion)
    lockstep.py     the real game on the dream's actions, played only when looked at
    views.py        which frames a view shows; hud.py the text under them; stats.py the timings

Around it: factory.py (engines from typed settings, the thread policy), session.py (record, and
regenerate through the same Driver), calibration.py (precision=int8's calibration dream, handed to
the fast path by its attach). tests/test_layers.py keeps this package from importing frontend/ or
commands/ (the shared words -- views, fusion modes, step counts, φ -- are worldgame/vocabulary.py).
"""
