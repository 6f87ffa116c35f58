"""The ``probe`` command line: one module per sub-command, each with ``register(subparsers)``.

Every sub-command validates its input before writing anything; bad input prints one line
``probe: error: <what is wrong>`` and exits with code 2; an I/O failure (a full disk ...) exits with code 1. ``probe
train`` exits with code 3 when the loss became non-finite (the run directory keeps every committed epoch and
``diverged.json``). Sub-command modules import their heavy dependencies inside the command, so ``probe --help`` stays
fast.

``--plugin MODULE`` (repeatable, before or after the sub-command) imports a module that registers datasets and models
before the command runs, after the plugins installed packages declare in the entry-point group ``probe.plugins``
(``docs/plugins.md``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from probe.cli import analyze, attribute, data, demo, export, import_, info, sweep, train, verify
from probe.errors import EXIT_BAD_INPUT, EXIT_IO_ERROR, ProbeError, ProbeInputError
from probe.plugins import import_plugins, load_entry_point_plugins

#: sub-command modules in the order ``probe --help`` lists them.
COMMANDS = (train, sweep, import_, info, verify, data, analyze, attribute, export, demo)


def build_parser() -> argparse.ArgumentParser:
    from probe import __version__

    parser = argparse.ArgumentParser(
        prog="probe",
        description="Train learning-rate sweeps with every epoch kept in HDF5, and analyse spurious-feature "
                    "reliance and compressibility. See README.md and docs/.",
    )
    parser.add_argument("--version", action="version", version=f"probe {__version__}")
    parser.add_argument("--plugin", action="append", metavar="MODULE",
                        help="import MODULE (registering datasets or models) before the command runs; repeatable, "
                             "before or after the sub-command")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS:
        module.register(sub)
    return parser


def _ignore_file_size_signal() -> None:
    """A file-size limit (``ulimit -f``) makes writes fail with EFBIG, an ``OSError`` reported on one line, instead of
    killing the process with SIGXFSZ. CPython already ignores SIGXFSZ at start-up; saying so here keeps it true when
    ``main`` runs in a host process that restored the default."""
    import signal
    import threading

    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def split_plugin_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(plugin modules, other arguments)``: every ``--plugin MODULE`` or ``--plugin=MODULE`` before a ``--`` is taken
    out, wherever it stands, so that every sub-command accepts it."""
    plugins: list[str] = []
    rest: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--":
            rest += [arg, *args]
            break
        if arg == "--plugin":
            module = next(args, None)
            if module is None or module.startswith("-"):
                raise ProbeInputError("--plugin needs a module name, e.g. --plugin my_package.plugin")
            plugins.append(module)
        elif arg.startswith("--plugin="):
            plugins.append(arg.partition("=")[2])
        else:
            rest.append(arg)
    return plugins, rest


def main(argv: Sequence[str] | None = None) -> int:
    _ignore_file_size_signal()
    try:
        plugins, argv = split_plugin_arguments(sys.argv[1:] if argv is None else argv)
    except ProbeInputError as err:
        print(f"probe: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        load_entry_point_plugins()
        import_plugins(plugins)
        return int(args.func(args) or 0)
    except ProbeInputError as err:
        print(f"probe: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # output piped into `head` and the like
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ProbeError, OSError) as err:  # OSError: a full disk, a vanished folder ... (committed epochs are kept)
        print(f"probe: error: {err}", file=sys.stderr)
        return EXIT_IO_ERROR
    except KeyboardInterrupt:
        print("probe: interrupted; committed epochs are kept (resume with --resume)", file=sys.stderr)
        return 130
