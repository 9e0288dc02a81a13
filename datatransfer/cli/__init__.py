"""The ``datatransfer`` command line.

Each command group lives in a module of this package named for what it does;
this module only assembles them and sets up logging (``-q``, ``-v``, ``-vv``:
see :mod:`datatransfer.cli.output`).
"""

from __future__ import annotations

import click

#: Environment variable click's shell completion reads (see ``completion``).
COMPLETE_VAR = "_DATATRANSFER_COMPLETE"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="py-data-transfer", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True,
              help="More log output: -v our info and the libraries' warnings, -vv everything.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Log errors only.")
def main(verbose: int, quiet: bool) -> None:
    """Move content-addressed data between peers."""
    from datatransfer.cli.output import setup_logging

    setup_logging(-1 if quiet else verbose)


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL.

    \b
    bash: eval "$(datatransfer completion bash)"   (e.g. in ~/.bashrc)
    zsh:  eval "$(datatransfer completion zsh)"    (e.g. in ~/.zshrc)
    fish: datatransfer completion fish > ~/.config/fish/completions/datatransfer.fish
    """
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None  # the choices are the shells click knows
    click.echo(cls(main, {}, "datatransfer", COMPLETE_VAR).source())


def _register() -> None:
    from datatransfer.cli import blocks, control, fsm, node, peers

    main.add_command(fsm.fsm)
    main.add_command(completion)
    blocks.register(main)
    node.register(main)
    control.register(main)
    peers.register(main)


_register()
