"""``python -m datatransfer``: the ``datatransfer`` command (for ``-X
importtime`` and other interpreter options, or without the script on PATH)."""

from datatransfer.cli import main

main(prog_name="datatransfer")
