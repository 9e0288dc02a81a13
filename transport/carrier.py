"""A transport that carries a graphsync engine over some network.

The engine (:class:`~transport.graphsync.engine.GraphsyncEngine`) holds every
rule of the data path and sends through two callables it is given; a carrier
owns one engine, hands it what arrives, and serves it inside its own task
group, attaching to its network once the engine runs and detaching when it
stops. :class:`~transport.libp2p.transport.Libp2pTransport` carries it over
libp2p streams; :class:`transport.inmem.InMemoryNode` (made by
:meth:`transport.inmem.InMemoryNetwork.transport`) over the in-memory fault
network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio

from datatransfer.ipld.blockstore import Blockstore
from datatransfer.refusals import Refusals
from datatransfer.types import ChannelID, PeerID
from transport.base import Transport, TransportEvents
from transport.graphsync.engine import EngineStats, GraphsyncEngine

if TYPE_CHECKING:  # pragma: no cover
    from anyio.abc import TaskGroup, TaskStatus

__all__ = ["EngineCarrier"]


class EngineCarrier(Transport):
    """A :class:`~transport.base.Transport` made of a graphsync engine and
    the network that carries it. Subclasses attach to their network in
    :meth:`_attach` (the engine is serving) and detach in :meth:`_detach`."""

    supports_pause = True

    def __init__(self, engine: GraphsyncEngine) -> None:
        #: The graphsync engine this transport carries.
        self.engine = engine
        self._tg: TaskGroup | None = None

    # -- lifecycle -----------------------------------------------------------------

    async def serve(
        self, events: TransportEvents, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        if self._tg is not None:
            raise RuntimeError("already serving")
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.engine.serve, events)
                self._attach()
                task_status.started()
                try:
                    await anyio.sleep_forever()
                finally:
                    self._detach()
        finally:
            self._tg = None

    def _attach(self) -> None:
        """The engine serves: start taking what the network delivers."""

    def _detach(self) -> None:
        """The transport stops: stop taking deliveries, release the network."""

    # -- the engine's, as a Transport ------------------------------------------------

    @property
    def peer_id(self) -> PeerID:
        return self.engine.peer_id

    @property
    def active_channels(self) -> frozenset[ChannelID]:
        """Channels whose data this node moves now."""
        return self.engine.active_channels

    @property
    def queued_channels(self) -> frozenset[ChannelID]:
        return self.engine.queued_channels

    @property
    def blockstore(self) -> Blockstore:
        return self.engine.blockstore

    @property
    def stats(self) -> EngineStats:
        return self.engine.stats

    @property
    def refusals(self) -> Refusals:
        return self.engine.refusals

    def is_idle(self) -> bool:
        return self.engine.is_idle()

    def resources(self) -> dict[str, int]:
        return self.engine.resources()

    async def send_message(self, peer: PeerID, message: Any) -> None:
        await self.engine.send_message(peer, message)

    async def open_channel(self, *args: Any, **kwargs: Any) -> None:
        await self.engine.open_channel(*args, **kwargs)

    async def close_channel(self, channel_id: ChannelID) -> None:
        await self.engine.close_channel(channel_id)

    async def pause_channel(self, channel_id: ChannelID) -> None:
        await self.engine.pause_channel(channel_id)

    async def resume_channel(self, channel_id: ChannelID, message: Any = None) -> None:
        await self.engine.resume_channel(channel_id, message)

    async def cleanup_channel(self, channel_id: ChannelID) -> None:
        await self.engine.cleanup_channel(channel_id)
