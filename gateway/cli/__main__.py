"""``python -m gateway.cli`` (used to start worker processes)."""

from gateway.cli import main

main()
