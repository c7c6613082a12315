"""What the covet-pipe commands exit with, and the errors that choose the code.

A command raises one of these with a message that says what to do; :func:`covet_pipe.cli.main`
prints ``covet-pipe COMMAND: message`` to stderr and exits with the error's code.
"""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_UNREACHABLE", "EXIT_REFUSED",
           "CommandError", "UsageError", "BuildError", "StartError", "FailedError", "UnreachableError",
           "RefusedError"]

#: done
EXIT_OK = 0
#: the build failed, serving could not start, or the server answered no (a failed reload, a failed plugin)
EXIT_FAILED = 1
#: bad usage or input: the message says what to give
EXIT_USAGE = 2
#: the admin API could not be reached (nothing listens at the URL, or it timed out)
EXIT_UNREACHABLE = 3
#: the admin API refused the token (401, 403) or rate-limited this address (429)
EXIT_REFUSED = 4


class CommandError(Exception):
    """A command that cannot go on: exit with :attr:`code` and the message."""
    code = EXIT_FAILED


class UsageError(CommandError):
    """Bad input: exit 2."""
    code = EXIT_USAGE


class BuildError(CommandError):
    """The compiler (or Cython) refused: exit 1."""


class StartError(CommandError):
    """The app or its plugins could not start (an import raised, --strict refused): exit 1."""


class FailedError(CommandError):
    """The server answered, and the answer is no (a reload failed, a plugin is unknown): exit 1."""


class UnreachableError(CommandError):
    """No admin API at the URL: exit 3."""
    code = EXIT_UNREACHABLE


class RefusedError(CommandError):
    """The admin API refused the credentials: exit 4."""
    code = EXIT_REFUSED
