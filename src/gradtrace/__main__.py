"""`python -m gradtrace` runs the CLI."""

from gradtrace.cli.main import run

run()
