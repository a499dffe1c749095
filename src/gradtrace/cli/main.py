"""The `gradtrace` command: one typer app, one module per group of subcommands.

Each subcommand parses its options, calls one library function and prints or writes one result.
Heavy imports (torch, matplotlib) happen inside the commands so that `--help` stays fast.
Every `GradtraceError` and every usage error becomes ``gradtrace: error: ...`` on stderr and
exit status 2, never a traceback; so does any other exception, as a last net (set
GRADTRACE_DEBUG=1 to see its traceback instead).

The library's messages name its Python arguments (`hidden_size`, `max_iter`); `flag_message`
turns each into the option of the command the user ran (`--hidden`, `--max-iter`).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated, Any

import typer
import typer.main

from gradtrace.cli import curve as curve_cli
from gradtrace.cli import dynamics as dynamics_cli
from gradtrace.cli import explore as explore_cli
from gradtrace.cli import monitor as monitor_cli
from gradtrace.cli import reproduce as reproduce_cli
from gradtrace.cli import sweep as sweep_cli
from gradtrace.cli import tour as tour_cli
from gradtrace.cli import trace as trace_cli
from gradtrace.cli import train as train_cli
from gradtrace.cli.output import reflowed
from gradtrace.errors import GradtraceError

app = typer.Typer(
    name="gradtrace",
    help="Make vanishing and exploding gradients visible, measurable and fixable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
COMMANDS: dict[str, Any] = {
    "curve": curve_cli.curve,
    "mlp": curve_cli.mlp,
    "map": dynamics_cli.map_command,
    "mandelbrot": dynamics_cli.mandelbrot_command,
    "cliff": dynamics_cli.cliff_command,
    "trace": trace_cli.trace_command,
    "monitor": monitor_cli.monitor_command,
    "train": train_cli.train_command,
    "reproduce": reproduce_cli.reproduce_command,
    "tour": tour_cli.tour,
    "explore": explore_cli.explore_command,
}
for _name, _function in COMMANDS.items():
    app.command(_name, help=reflowed(_function))(_function)
app.command("demo", help=tour_cli.DEMO_HELP)(tour_cli.tour)
app.add_typer(sweep_cli.app, name="sweep")

# Library argument -> option, where the names differ (the rest map by name: max_iter -> --max-iter).
ALIASES: dict[str, dict[str, str]] = {
    **curve_cli.FLAGS,
    **trace_cli.FLAGS,
    **monitor_cli.FLAGS,
    **train_cli.FLAGS,
    **sweep_cli.FLAGS,
    "map": {"map": "--map", "name": "--map", "orders": "--iterates"},
}


@app.callback()
def main(
    ctx: typer.Context,
    max_memory: Annotated[
        str | None,
        typer.Option(
            "--max-memory",
            help="Refuse requests needing more memory than this (e.g. 16GB); default a quarter "
            "of this machine's, or GRADTRACE_MAX_MEMORY.",
        ),
    ] = None,
    max_seconds: Annotated[
        float | None,
        typer.Option(
            "--max-seconds",
            help="Refuse requests estimated to take longer; default 300, or GRADTRACE_MAX_SECONDS.",
        ),
    ] = None,
) -> None:
    """Make vanishing and exploding gradients visible, measurable and fixable."""
    from gradtrace.budgets import budget

    limits = budget(max_memory, max_seconds)  # in force until the command is done
    limits.__enter__()
    ctx.call_on_close(lambda: limits.__exit__(None, None, None))


def _command_flags(argv: list[str]) -> dict[str, str]:
    """Python name -> the option spelling, for the root options and the command in `argv`."""
    group = typer.main.get_command(app)
    flags: dict[str, str] = {}

    def add(params: list[object]) -> None:
        for param in params:
            name, opts = getattr(param, "name", None), getattr(param, "opts", [])
            if name and opts:
                flags[name] = max(opts, key=len)

    add(list(group.params))
    commands = getattr(group, "commands", {})
    chosen = next((word for word in argv if word in commands), None)
    if chosen is not None:
        add(list(commands[chosen].params))
        flags |= ALIASES.get(chosen, {})
    return flags


def flag_message(message: str, argv: list[str]) -> str:
    """`message` with each backticked Python argument replaced by the option the user typed."""
    flags = _command_flags(argv)

    def swap(match: re.Match[str]) -> str:
        name = match.group(1)
        return f"`{flags[name]}`" if name in flags else match.group(0)

    return re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", swap, message)


def _typed(err: typer.TyperException, words: list[str]) -> str:
    """The parser's message, with what was typed for the option it names: its type checks
    ("Input should be a valid integer") do not say what they received."""
    message = str(err.format_message())
    opts = getattr(getattr(err, "param", None), "opts", None) or []
    typed: list[str] = []
    for i, word in enumerate(words):
        option, equals, value = word.partition("=")
        if word in opts and i + 1 < len(words):
            typed.append(words[i + 1])
        elif equals and option in opts:
            typed.append(value)
    if not typed or repr(typed[-1]) in message:
        return message
    return f"{message.rstrip('.')}; got {typed[-1]!r}"


INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C (128 + SIGINT)


def _fail(message: str) -> None:
    sys.stderr.write(f"gradtrace: error: {message.rstrip('.')}.\n")
    raise SystemExit(2)


def run(argv: list[str] | None = None) -> None:
    """Entry point of the `gradtrace` script; exits 2 with one line on bad input."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=words, standalone_mode=False)
    except GradtraceError as err:
        _fail(flag_message(str(err), words))
    except typer.Exit as done:
        code = done.exit_code
    except (typer.Abort, KeyboardInterrupt) as stop:
        if isinstance(stop.__cause__, EOFError):
            _fail("unexpected end of input")
        code = INTERRUPTED
    except typer.TyperException as err:
        # An empty message comes with the help screen printed for a bare `gradtrace`.
        _fail(_typed(err, words) or "a command is needed, listed above")
    except OSError as err:
        _fail(f"{err.strerror or err}: {getattr(err, 'filename', '') or ''}".rstrip(": "))
    except MemoryError:
        _fail("out of memory; lower the sizes, or the budget with --max-memory")
    except Exception as err:  # the last net: one line, never a traceback (GRADTRACE_DEBUG shows it)
        if os.environ.get("GRADTRACE_DEBUG"):
            raise
        text = str(err).strip().splitlines()
        _fail(f"{type(err).__name__}: {text[0] if text else 'no message'}")
    if code == INTERRUPTED:  # Ctrl-C (typer's exit status for it): one line, no traceback
        sys.stderr.write("gradtrace: interrupted.\n")
    if isinstance(code, int) and code:
        raise SystemExit(code)
