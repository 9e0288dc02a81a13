"""What the command line writes and where: one stderr console, the logging
set-up behind ``-q``/``-v``/``-vv``, and output files (``-`` for stdout,
no overwriting without ``--force``).

Every log record, ours and the libraries', goes through one handler on the
same stderr console the progress bars draw on, so a log line is printed
above a live bar instead of through it. Data goes to stdout only when asked
for with ``-`` (then every message, the channel id included, goes to stderr).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

#: Loggers of this project (the others are the libraries': py-libp2p, ...).
OWN_LOGGERS = ("datatransfer", "transport", "registry", "statemachine")
#: Format of every log line (the level is its own column).
LOG_FORMAT = "%(name)s: %(message)s"

_console: Any = None


def console() -> Any:
    """The stderr console every message, log line and progress bar shares."""
    global _console
    if _console is None:
        from rich.console import Console

        _console = Console(stderr=True)
    return _console


def levels(verbosity: int) -> tuple[int, int]:
    """(level of our loggers, level of the libraries') for a verbosity:
    -1 (``-q``): errors only, libraries silent; 0: our warnings, libraries
    silent (their errors are the dial failures the CLI reports itself);
    1 (``-v``): our info, library warnings; 2 (``-vv``): everything."""
    if verbosity < 0:
        return logging.ERROR, logging.CRITICAL + 1
    if verbosity == 0:
        return logging.WARNING, logging.CRITICAL + 1
    if verbosity == 1:
        return logging.INFO, logging.WARNING
    return logging.DEBUG, logging.DEBUG


class _Handler(logging.Handler):
    """Prints each record as one line on the shared console (above any live
    progress bar): ``LEVEL name: message``. ``out`` None: the stderr
    console, built at the first record (a command that logs nothing does not
    import rich)."""

    def __init__(self, out: Any = None) -> None:
        super().__init__()
        self.out = out
        self.setFormatter(logging.Formatter(LOG_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from rich.text import Text

            line = Text(f"{record.levelname:<7} ", style=_STYLES.get(record.levelno, ""))
            line.append(self.format(record))
            out = self.out if self.out is not None else console()
            out.print(line, soft_wrap=True, highlight=False, markup=False)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


_STYLES = {logging.ERROR: "bold red", logging.CRITICAL: "bold red", logging.WARNING: "yellow",
           logging.DEBUG: "dim"}


def setup_logging(verbosity: int, out: Any = None) -> logging.Handler:
    """Route every log record through one handler on ``out`` (default: the
    stderr console) with the levels of :func:`levels`; return the handler."""
    own, libraries = levels(verbosity)
    handler = _Handler(out)
    root = logging.getLogger()
    for old in list(root.handlers):
        if isinstance(old, _Handler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(libraries)
    global _libraries
    _libraries = libraries
    adopt_libp2p_logger()
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(own)
    logging.getLogger("transitions").setLevel(max(own, logging.WARNING) if verbosity < 2
                                              else logging.DEBUG)
    logging.captureWarnings(True)
    return handler


_libraries = logging.CRITICAL + 1


def adopt_libp2p_logger() -> None:
    """Bring py-libp2p's logger under the shared handler. Importing
    ``libp2p`` makes its logger keep to itself (no propagation, no handler:
    its records reached stderr raw, through logging's last resort), so call
    this again once it is imported."""
    libp2p = logging.getLogger("libp2p")
    libp2p.handlers.clear()
    libp2p.propagate = True
    libp2p.setLevel(_libraries)


#: Exit status after SIGINT/SIGTERM stopped (or detached) a pull or push.
INTERRUPTED = 130


def progress_bar() -> Any:
    """A transfer's progress bar (description, bar, bytes, rate, time left)
    on the shared stderr console."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), console=console(),
                    transient=False)


# -- output files ----------------------------------------------------------------------

force_option = click.option("--force", "-f", is_flag=True, default=False,
                            help="Overwrite an existing output file.")


def is_stdout(path: Path | str | None) -> bool:
    return path is not None and str(path) == "-"


def check_output(path: Path | None, force: bool, param_hint: str) -> None:
    """Refuse (usage error, exit 2) an output file that exists unless
    ``force``, or that is a directory; ``-`` (stdout) is always fine. Called
    before any work is done."""
    if path is None or is_stdout(path):
        return
    path = Path(path)
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory", param_hint=param_hint)
    if path.exists() and not force:
        raise click.BadParameter(f"{path} exists (use --force to overwrite it)",
                                 param_hint=param_hint)


@contextmanager
def open_output(path: Path | str) -> Iterator[IO[bytes]]:
    """Binary stdout for ``-``; else a file that appears at ``path`` only if
    the block completes (written next to it, then renamed over it)."""
    if is_stdout(path):
        with click.open_file("-", "wb") as out:  # binary stdout, left open
            yield out
            out.flush()
        return
    from datatransfer.cli.blocks import _atomic_output

    with _atomic_output(Path(path)) as fh:
        yield fh


def message(text: str, *, to_stdout: bool = True) -> None:
    """A result line (a CID, a channel id): stdout unless stdout carries data."""
    click.echo(text, err=not to_stdout)


__all__ = ["INTERRUPTED", "adopt_libp2p_logger", "check_output", "console", "force_option", "is_stdout", "levels", "message",
           "open_output", "progress_bar", "setup_logging"]
