"""What ``datatransfer serve`` adds so that the Filecoin network's retrieval
clients (Lassie, boost's) can retrieve from the node: the retrieval
provider, free by default, registered on the Manager before it serves.

HOOK (issue 13): the provider lives in
:mod:`datatransfer.markets.retrieval.provider` (``register_provider``),
built apart. Until that module exists, :func:`provider_setup` registers
nothing and a node refuses Lassie's ``RetrievalDealProposal/1`` (counted,
logged and kept for ``ls --all``: see :mod:`datatransfer.refusals`); once it
exists, ``serve`` registers it with no other change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["PROVIDER_MODULE", "provider_available", "provider_setup"]

log = logging.getLogger(__name__)

#: Where ``register_provider(manager, blockstore, ask=None, payments=None)`` lives.
PROVIDER_MODULE = "datatransfer.markets.retrieval.provider"


def _register_provider() -> Callable[..., Any] | None:
    """``register_provider``, or None while its module does not exist (an
    import error inside it is raised: a broken provider must not pass for
    a missing one)."""
    import importlib

    try:
        module = importlib.import_module(PROVIDER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != PROVIDER_MODULE:
            raise
        return None
    return getattr(module, "register_provider", None)


def provider_available() -> bool:
    """Whether this installation has the retrieval provider."""
    return _register_provider() is not None


def provider_setup(blockstore: Callable[[], Any], ask: Any = None) -> Callable[[Any], None]:
    """A :class:`~datatransfer.node.Node` ``setup`` serving retrieval deals
    on what ``blockstore()`` holds (called when the Manager is set up: the
    node's store is open by then), at ``ask`` (None: free)."""

    def setup(manager: Any) -> None:
        register = _register_provider()
        if register is None:
            log.info("no retrieval provider in this installation (%s): retrieval deal "
                     "proposals (Lassie's) are refused", PROVIDER_MODULE)
            return
        register(manager, blockstore(), ask)

    return setup
