"""``datatransfer fsm``: print the channel state machine as a diagram.

The diagram is generated from ``statemachine.table`` at run time, so it is
always the rules the engine actually enforces.
"""

from __future__ import annotations

import click

from statemachine.diagram import FORMATS, render


@click.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="mermaid",
    show_default=True,
    help="Diagram language: mermaid (stateDiagram-v2) or Graphviz dot.",
)
def fsm(fmt: str) -> None:
    """Print the channel state machine (every status and transition)."""
    click.echo(render(fmt), nl=False)
