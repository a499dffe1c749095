"""The `gradtrace` command: one typer app, one module per group of subcommands.

Each subcommand parses its options, calls one library function and prints or writes one result.
Heavy imports (torch, matplotlib) happen inside the commands so that `--help` stays fast.
Every `GradtraceError` and every usage error becomes ``gradtrace: error: ...`` on stderr and
exit status 2, never a traceback; so does any other exception, as a last net (set
GRADTRACE_DEBUG=1 to see its traceback instead).
"""

from __future__ import annotations

import os
import sys

import typer

from gradtrace.cli import curve as curve_cli
from gradtrace.cli import demo as demo_cli
from gradtrace.cli import dynamics as dynamics_cli
from gradtrace.cli import trace as trace_cli
from gradtrace.errors import GradtraceError

app = typer.Typer(
    name="gradtrace",
    help="Make vanishing and exploding gradients visible, measurable and fixable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("curve")(curve_cli.curve)
app.command("mlp")(curve_cli.mlp)
app.command("map")(dynamics_cli.map_command)
app.command("mandelbrot")(dynamics_cli.mandelbrot_command)
app.command("cliff")(dynamics_cli.cliff_command)
app.command("trace")(trace_cli.trace_command)
app.command("demo")(demo_cli.demo)


def _fail(message: str) -> None:
    sys.stderr.write(f"gradtrace: error: {message.rstrip('.')}.\n")
    raise SystemExit(2)


def run(argv: list[str] | None = None) -> None:
    """Entry point of the `gradtrace` script; exits 2 with one line on bad input."""
    try:
        code = app(args=argv, standalone_mode=False)
    except GradtraceError as err:
        _fail(str(err))
    except typer.Exit as done:
        raise SystemExit(done.exit_code) from None
    except (typer.Abort, KeyboardInterrupt) as stop:
        _fail("unexpected end of input" if isinstance(stop.__cause__, EOFError) else "interrupted")
    except typer.TyperException as err:
        # An empty message comes with the help screen printed for a bare `gradtrace`.
        _fail(err.format_message() or "a command is needed, listed above")
    except OSError as err:
        _fail(f"{err.strerror or err}: {getattr(err, 'filename', '') or ''}".rstrip(": "))
    except Exception as err:  # the last net: one line, never a traceback (GRADTRACE_DEBUG shows it)
        if os.environ.get("GRADTRACE_DEBUG"):
            raise
        text = str(err).strip().splitlines()
        _fail(f"{type(err).__name__}: {text[0] if text else 'no message'}")
    if isinstance(code, int) and code:
        raise SystemExit(code)
