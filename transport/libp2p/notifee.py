"""A py-libp2p network notifee that ignores every notification.

py-libp2p's :class:`~libp2p.abc.INotifee` declares six abstract callbacks;
our notifees (the admission guard, the transport's connection-loss watch)
each need one or two. They subclass this and override those.
"""

from __future__ import annotations

from typing import Any

from libp2p.abc import INetConn, INetStream, INetwork, INotifee

__all__ = ["QuietNotifee"]


class QuietNotifee(INotifee):
    """Every callback does nothing."""

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Any) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Any) -> None:
        pass
