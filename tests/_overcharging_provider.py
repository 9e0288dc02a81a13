"""A retrieval provider that asks for twice what a payment interval's bytes
cost (a dishonest one, for the client's refusal to overpay): run as
``python _overcharging_provider.py HOME LISTEN``; prints its address first.
It is ``datatransfer serve``'s provider at 2 attoFIL per byte with each
``FundsNeeded`` doubled."""

from __future__ import annotations

import sys
from dataclasses import replace
from typing import Any

import anyio

from datatransfer.errors import Pause
from datatransfer.markets.retrieval import Ask, DealPayment, DealProposal, DealResponse, DealStatus
from datatransfer.markets.retrieval.network import serve_query
from datatransfer.markets.retrieval.provider import RetrievalProvider, register_response_type
from datatransfer.markets.retrieval.serving import answer_query
from datatransfer.markets.retrieval.wallet import HomeWallet
from datatransfer.node import Node


def _doubled(pause: Pause) -> Pause:
    r = pause.result
    if isinstance(r, DealResponse) and r.status is DealStatus.FUNDS_NEEDED:
        return Pause(replace(r, payment_owed=2 * r.payment_owed))
    return pause


class Overcharging(RetrievalProvider):
    async def on_pull_data_sent(self, channel_id: Any, additional_bytes: int) -> Any:
        try:
            return await super().on_pull_data_sent(channel_id, additional_bytes)
        except Pause as pause:
            raise _doubled(pause) from None

    async def revalidate(self, channel_id: Any, voucher: Any) -> Any:
        try:
            return await super().revalidate(channel_id, voucher)
        except Pause as pause:
            raise _doubled(pause) from None


async def main(home: str, listen: str) -> None:
    nodes: list[Node] = []

    def setup(manager: Any) -> None:
        wallet = HomeWallet(home)
        ask = Ask(price_per_byte=2, payment_address=wallet.address)
        provider = Overcharging(manager, nodes[0].blockstore, ask, wallet)
        manager.register_voucher_type(DealProposal, provider)
        manager.register_revalidator(DealPayment, provider)
        register_response_type(manager)
        serve_query(nodes[0].host, lambda query: answer_query(provider, query))

    nodes.append(Node(home, listen=(listen,), setup=setup))
    async with nodes[0] as node:
        print(node.addrs()[0], flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], backend="trio")
