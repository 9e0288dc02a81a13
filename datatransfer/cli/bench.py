"""``datatransfer bench``: the benchmark harness for installed users.

The same program as ``python -m benchmarks`` (the ``benchmarks`` package
ships with the project), imported only when the command runs; every option
is the harness's own (``datatransfer bench --help``).
"""

from __future__ import annotations

import click


@click.command("bench", context_settings={"ignore_unknown_options": True,
                                          "allow_extra_args": True, "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Measure transfers: scenarios, sweeps, JSON results, comparisons, plots."""
    from benchmarks.__main__ import main as run

    run(list(args), prog="datatransfer bench")
