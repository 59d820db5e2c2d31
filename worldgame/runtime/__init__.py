"""The real-time runtime. One tick, in reading order:

    loop.py         PlayLoop.tick: pygame keys → the tick core → draw → present (pacing, TSR)
    serve.py        the same core per browser tab: JSON messages in, frames out
    tick_core.py    TickCore: pending events and live settings → Driver.tick → panels, recorder, stats
    commands.py     the command table (keys, live controls, the page's buttons) and the one key rule
    engines.py      Driver (event → engine calls), the Engine interface, RealEngine
    model_engine.py ModelEngine: live controls and per-view requests → the dream (+ the real game)
    dream.py        Dream.step: the batch-1 rollout (models/rollout.py) → its prepared sampler
                    (models/sampler.py) → fusion.show (fusion + decode, as eval and validation show it)
    lockstep.py     the real game on the dream's actions, played only when looked at
    views.py        which frames a view shows; window.py draws them; hud.py the text under them
    tsr.py          with display_hz: the frames shown between two model frames (the loop paces them)

Around it: factory.py (engines from config, the thread policy), session.py (record, regenerate
through the same Driver), play.py, bench.py, replay.py (the commands), controls.py (pygame input), fusion.py, stats.py,
tsr_measure.py (how tsr.py's in-between frames were chosen).
"""
