"""The commands that run the engine: play.py (the window), serve/ (the web page, worldgame/web/),
bench.py (speed through play's own path), replay.py (episodes and sessions: window, video export,
regenerate). collect, train and eval live with their stages (data/, train/, eval/); cli.py maps
each `worldgame <command>` to its module."""
