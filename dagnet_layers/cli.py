"""What every command-line program of the library does with a failure.

:func:`run_cli` runs a program's ``main`` and turns a failure into one line on
stderr and a non-zero exit status, with no traceback unless ``--debug`` was
given (or ``DAGNET_DEBUG=1`` is set):

* a library error (:class:`~dagnet_layers.errors.DAGNetError`: a bad file, record,
  config or argument, each naming what is wrong), an OS error (a missing file,
  a full disk, a refused permission), a ``ValueError`` (how the library rejects a
  bad argument value) or a program's own refusal in words (``SystemExit("...")``)
  prints ``<prog>: error: <message>`` and exits with status 2;
* anything else is a defect of the program or the library: it prints the
  exception's type and message, asks for ``--debug`` and a report, and exits 1;
* Ctrl-C prints ``<prog>: interrupted`` and exits 130.

Example:
    >>> def main(argv):
    ...     raise FileNotFoundError("annotations.mat: not found")
    >>> import contextlib, io
    >>> err = io.StringIO()
    >>> with contextlib.redirect_stderr(err):
    ...     code = run_cli(main, [], prog="demo")
    >>> code, err.getvalue()
    (2, 'demo: error: annotations.mat: not found\\n')
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from dagnet_layers.errors import DAGNetError

__all__ = ["DEBUG_FLAG", "run_cli"]

#: The flag (accepted anywhere on the command line) that shows tracebacks.
DEBUG_FLAG = "--debug"


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def run_cli(
    main: Callable[[list[str]], int | None],
    argv: Sequence[str] | None = None,
    *,
    prog: str | None = None,
) -> int:
    """Run ``main(argv)`` with failures printed as one line (see the module docstring).

    Args:
        main: The program; takes the argument list (without ``--debug``) and
            returns an exit status (``None`` means 0).
        argv: Arguments (default: ``sys.argv[1:]``).
        prog: Program name for the message (default: ``sys.argv[0]``'s name).

    Returns:
        The exit status: ``main``'s, 2 for a library or OS error or a refusal in
        words, 1 for an unexpected error, 130 for Ctrl-C.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get("DAGNET_DEBUG", "") not in ("", "0")
    args = [a for a in args if a != DEBUG_FLAG]
    name = prog or os.path.basename(sys.argv[0] or "dagnet")
    try:
        code = main(args)
    except SystemExit as stop:
        if not isinstance(stop.code, str):  # an exit status (argparse's 2 included)
            raise
        print(f"{name}: error: {_one_line(stop.code)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except (DAGNetError, OSError, ValueError) as err:
        if debug:
            raise
        print(f"{name}: error: {_one_line(str(err))}", file=sys.stderr)
        return 2
    except Exception as err:
        if debug:
            raise
        print(
            f"{name}: error: {type(err).__name__}: {_one_line(str(err))} (unexpected: rerun "
            f"with {DEBUG_FLAG} for the traceback and please report it)",
            file=sys.stderr,
        )
        return 1
    return 0 if code is None else int(code)
