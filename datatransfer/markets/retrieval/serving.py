"""What ``datatransfer serve`` adds so that the Filecoin network's retrieval
clients (Lassie, boost's) can retrieve from the node: the retrieval
provider, free by default, registered on the Manager before it serves.

The provider lives in :mod:`datatransfer.markets.retrieval.provider`
(``register_provider``); were that module missing, :func:`provider_setup`
would register nothing and a node would refuse Lassie's
``RetrievalDealProposal/1`` (counted, logged and kept for ``ls --all``: see
:mod:`datatransfer.refusals`). A paid ask (``serve --price-per-byte ...``)
is paid through the home's :class:`~datatransfer.markets.retrieval.wallet.HomeWallet`;
the ask is also the answer to retrieval queries (``/fil/retrieval/qry/1.0.0``).
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


def provider_setup(blockstore: Callable[[], Any], ask: Any = None, payments: Any = None,
                   host: Callable[[], Any] | None = None) -> Callable[[Any], None]:
    """A :class:`~datatransfer.node.Node` ``setup`` serving retrieval deals
    on what ``blockstore()`` holds (called when the Manager is set up: the
    node's store is open by then), at ``ask`` (None: free), paid through
    ``payments`` (None: free deals only); with ``host()``, the node's libp2p
    host, it also answers retrieval queries with the ask."""

    def setup(manager: Any) -> None:
        register = _register_provider()
        if register is None:
            log.info("no retrieval provider in this installation (%s): retrieval deal "
                     "proposals (Lassie's) are refused", PROVIDER_MODULE)
            return
        provider = register(manager, blockstore(), ask, payments)
        if host is not None:
            from datatransfer.markets.retrieval.network import serve_query

            serve_query(host(), lambda query: answer_query(provider, query))

    return setup


def answer_query(provider: Any, query: Any) -> Any:
    """The :class:`~datatransfer.markets.retrieval.query.QueryResponse` of
    ``provider`` to ``query``: its ask, and whether it holds the payload."""
    from datatransfer.markets.retrieval.query import QueryResponse, QueryStatus

    ask = provider.ask
    if not provider.blockstore.has(query.payload_cid):
        return QueryResponse(QueryStatus.UNAVAILABLE, payment_address=ask.payment_address,
                             message=f"{query.payload_cid} is not held here")
    return QueryResponse(
        QueryStatus.AVAILABLE, size=_dag_size(provider.blockstore, query.payload_cid),
        payment_address=ask.payment_address, min_price_per_byte=ask.price_per_byte,
        max_payment_interval=ask.payment_interval,
        max_payment_interval_increase=ask.payment_interval_increase,
        unseal_price=ask.unseal_price)


def _dag_size(blockstore: Any, root: Any) -> int:
    """The DAG's bytes as its root's links declare them (DAG-PB: the block
    and its links' ``Tsize``), or 0 (unknown)."""
    from datatransfer.ipld import dagpb
    from datatransfer.ipld.cid import DAG_PB

    try:
        data = blockstore.get(root)
        if root.codec != DAG_PB:
            return len(data)
        sizes = [link.get("Tsize") for link in dagpb.decode(data)["Links"]]
    except Exception:  # noqa: BLE001 - a size is a hint: unknown then
        return 0
    return 0 if None in sizes else len(data) + sum(sizes)
