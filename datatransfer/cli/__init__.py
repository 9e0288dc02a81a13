"""The ``datatransfer`` command line.

Each command group lives in a module of this package named for what it does;
this module only assembles them.
"""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="py-data-transfer")
def main() -> None:
    """Move content-addressed data between peers."""


def _register() -> None:
    from datatransfer.cli import blocks, fsm, node

    main.add_command(fsm.fsm)
    blocks.register(main)
    node.register(main)


_register()
