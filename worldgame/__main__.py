"""`python -m worldgame <command> ...`, the same as the `worldgame` script (and what
`torchrun --nproc_per_node=N -m worldgame train ...` starts in each process)."""

from worldgame.cli import main

main()
