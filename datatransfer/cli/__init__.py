"""The ``datatransfer`` command line.

Each command group lives in a module of this package named for what it does,
imported only when one of its commands is used (:data:`COMMAND_MODULES`);
this module only assembles them and sets up logging (``-q``, ``-v``, ``-vv``:
see :mod:`datatransfer.cli.output`).
"""

from __future__ import annotations

import atexit
import gc
import importlib

import click

#: Environment variable click's shell completion reads (see ``completion``).
COMPLETE_VAR = "_DATATRANSFER_COMPLETE"


#: The module of each command, imported when the command is looked up (run,
#: completed, or listed by ``--help``), so ``datatransfer --version`` or
#: ``ls`` do not import the node, py-libp2p and trio that ``pull`` needs.
#: A module adds its commands with ``register(group)`` (else its attribute
#: of the command's name is the command).
COMMAND_MODULES = {
    "add": "datatransfer.cli.blocks",
    "cat": "datatransfer.cli.blocks",
    "car": "datatransfer.cli.blocks",
    "fsm": "datatransfer.cli.fsm",
    "serve": "datatransfer.cli.node",
    "pull": "datatransfer.cli.node",
    "push": "datatransfer.cli.node",
    "ls": "datatransfer.cli.node",
    "demo": "datatransfer.cli.node",
    "retrieve": "datatransfer.cli.retrieve",
    "cancel": "datatransfer.cli.control",
    "pause": "datatransfer.cli.control",
    "resume": "datatransfer.cli.control",
    "restart": "datatransfer.cli.control",
    "watch": "datatransfer.cli.control",
    "peers": "datatransfer.cli.peers",
    "bench": "datatransfer.cli.bench",
}


class _LazyGroup(click.Group):
    """A group whose commands are imported from :data:`COMMAND_MODULES`
    on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(self.commands) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            _load(COMMAND_MODULES[cmd_name])
        return self.commands.get(cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="py-data-transfer", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", count=True,
              help="More log output: -v our info and the libraries' warnings, -vv everything.")
@click.option("-q", "--quiet", is_flag=True, default=False, help="Log errors only.")
def main(verbose: int, quiet: bool) -> None:
    """Move content-addressed data between peers."""
    from datatransfer.cli.output import setup_logging

    setup_logging(-1 if quiet else verbose)
    _skip_exit_collection()


_exit_hook: list[bool] = []


def _skip_exit_collection() -> None:
    """At interpreter exit, take every object out of the garbage collector's
    reach first (``gc.freeze``): the command is done, and the collections of
    the interpreter's shutdown would otherwise walk the whole heap of
    imported modules (about 0.3 s after a pull, py-libp2p's heap) to free
    memory the process is returning anyway. Registered once per process;
    atexit handlers, logging's flush included, still run."""
    if not _exit_hook:
        _exit_hook.append(True)
        atexit.register(gc.freeze)


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


def _load(module_name: str) -> None:
    module = importlib.import_module(module_name)
    register = getattr(module, "register", None)
    if register is not None:
        register(main)
    else:
        for name, owner in COMMAND_MODULES.items():
            if owner == module_name:
                main.add_command(getattr(module, name))


main.add_command(completion)
