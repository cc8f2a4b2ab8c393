"""``python -m seqkit`` runs the command line."""

from seqkit.cli import main

main()
