"""The covet-pipe command line.

``covet-pipe new`` scaffolds a plugin, ``check`` validates one without serving it, ``build`` compiles
native plugins (and checks what it built), ``plugins`` lists the installed plugin packages and ``install``
installs one, ``serve`` serves an app; ``list``, ``health`` and ``reload``
talk to a running server's admin API; ``bench`` runs the per-layer benchmark suite.
Each command is a module of this package; the exit codes are :mod:`covet_pipe.cli.errors`'.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from covet_pipe.cli.bench import add_bench
from covet_pipe.cli.build import add_build
from covet_pipe.cli.check import add_check
from covet_pipe.cli.client import add_client_commands
from covet_pipe.cli.errors import EXIT_USAGE, CommandError
from covet_pipe.cli.install import add_install
from covet_pipe.cli.new import add_new
from covet_pipe.cli.plugins_list import add_plugins
from covet_pipe.cli.serve import add_serve

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``covet-pipe`` parser with every subcommand."""
    from covet_pipe import __version__
    from covet_pipe._core import ABI_MAJOR, ABI_MINOR
    parser = argparse.ArgumentParser(
        prog="covet-pipe", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="exit codes: 0 done; 1 failed (a build, a start, or the server said no); 2 bad usage; "
               "3 the admin API cannot be reached; 4 the admin API refused the token",
    )
    parser.add_argument("--version", action="version",
                        version=f"covet-pipe {__version__} (native ABI {ABI_MAJOR}.{ABI_MINOR}, Python "
                                f"{sys.version.split()[0]})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_build(sub)
    add_serve(sub)
    add_client_commands(sub)
    add_bench(sub)
    add_new(sub)
    add_check(sub)
    add_plugins(sub)
    add_install(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed the usage (or --version, --help: code 0)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return int(args.run(args))
    except CommandError as exc:
        print(f"covet-pipe {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print(f"covet-pipe {args.command}: interrupted", file=sys.stderr)
        return 130
