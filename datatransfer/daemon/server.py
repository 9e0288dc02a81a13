"""The daemon's control API: HTTP/1.1 + JSON on 127.0.0.1 over a running node.

h11 does the HTTP (the sans-I/O parser the brief points to); this module
only reads requests, checks the token, routes, and writes answers, so
nothing here owns a thread or a framework. The routes and error codes are
in :mod:`datatransfer.daemon.protocol`.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

import anyio
import h11
from anyio.abc import ByteStream, SocketAttribute

from datatransfer.core.channels import selector_node
from datatransfer.daemon.protocol import (
    API_FILE,
    MAX_BODY,
    TOKEN_FILE,
    ApiError,
    channel_row,
    pick_channel,
)
from datatransfer.errors import ChannelNotFound, DataTransferError, Unsupported
from datatransfer.ipld.cid import CID
from datatransfer.ipld.selector import ALL_SELECTOR_NODE
from datatransfer.node import Node, OpenVoucher, dag_size, describe_dial_failure
from datatransfer.types import ChannelID, ChannelState
from statemachine import FINAL_STATUSES, StateMachineError

log = logging.getLogger(__name__)

#: Seconds a client may take to send one request.
REQUEST_DEADLINE = 60.0
#: How often a watch reads the channels that had events (seconds).
WATCH_INTERVAL = 0.2
#: A watch with nothing to say writes a blank line this often (seconds), so a
#: client that went away is noticed.
KEEPALIVE = 5.0


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` readable and writable by its owner only,
    atomically (a reader never sees half a token)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("py-data-transfer")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class ControlServer:
    """The control API of one running :class:`~datatransfer.node.Node`.

    :meth:`serve` listens on ``host:port`` (loopback; port 0: any free one),
    writes the API file and a new token to the node's home, and answers
    until cancelled; the files are removed when it stops.
    """

    def __init__(self, node: Node, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.node = node
        self.host = host
        self.port = port
        self.token = secrets.token_urlsafe(32)
        self.url = ""
        self._expected: dict[ChannelID, int] = {}

    @property
    def manager(self) -> Any:
        if self.node.manager is None:
            raise ApiError("internal", "the node is not running")
        return self.node.manager

    async def serve(self, *, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        """Answer requests until cancelled; ``task_status.started(url)`` once
        the API file names where."""
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        async with listener:
            port = listener.extra(SocketAttribute.local_port)
            self.url = f"http://{self.host}:{port}"
            home = self.node.home
            write_private(home / TOKEN_FILE, self.token + "\n")
            write_private(home / API_FILE, json.dumps({"url": self.url, "pid": os.getpid()}))
            try:
                task_status.started(self.url)
                await listener.serve(self._connection)
            finally:
                for name in (API_FILE, TOKEN_FILE):
                    try:
                        (home / name).unlink()
                    except FileNotFoundError:
                        pass

    # -- HTTP ------------------------------------------------------------------------

    async def _connection(self, stream: ByteStream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_BODY)
            while True:
                try:
                    with anyio.fail_after(REQUEST_DEADLINE):
                        request = await self._read_request(conn, stream)
                except ApiError as exc:
                    await self._answer_error(conn, stream, exc)
                    return
                except (h11.RemoteProtocolError, TimeoutError):
                    await self._answer_error(conn, stream, ApiError("bad-request",
                                                                    "malformed HTTP request"))
                    return
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                if request is None:
                    return
                try:
                    await self._respond(conn, stream, *request)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return  # the client went away (a watch it stopped reading)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()

    async def _next_event(self, conn: h11.Connection, stream: ByteStream) -> Any:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await stream.receive(65536)
            except anyio.EndOfStream:
                data = b""
            conn.receive_data(data)

    async def _read_request(self, conn: h11.Connection,
                            stream: ByteStream) -> tuple[h11.Request, bytes] | None:
        event = await self._next_event(conn, stream)
        if isinstance(event, h11.ConnectionClosed):
            return None
        if not isinstance(event, h11.Request):
            raise h11.RemoteProtocolError("expected a request")
        body = bytearray()
        while True:
            part = await self._next_event(conn, stream)
            if isinstance(part, h11.EndOfMessage):
                return event, bytes(body)
            if isinstance(part, h11.Data):
                body += part.data
                if len(body) > MAX_BODY:
                    raise ApiError("too-large", f"request body over {MAX_BODY} bytes")
            else:
                raise h11.RemoteProtocolError("connection closed inside a request")

    async def _respond(self, conn: h11.Connection, stream: ByteStream,
                       request: h11.Request, body: bytes) -> None:
        try:
            self._authorize(request)
            answer = await self._route(request.method.decode(), request.target.decode(), body)
            if isinstance(answer, AsyncIterator):
                first = await anext(answer, None)  # errors before the stream starts
        except ApiError as exc:
            await self._answer_error(conn, stream, exc)
            return
        except Exception as exc:  # noqa: BLE001 - every failure is an answer
            await self._answer_error(conn, stream, _api_error(exc))
            return
        if not isinstance(answer, AsyncIterator):
            await self._answer_json(conn, stream, 200, answer)
            return
        await stream.send(conn.send(h11.Response(status_code=200, headers=[
            ("content-type", "application/x-ndjson"), ("cache-control", "no-store")])))
        try:
            if first is not None:
                await stream.send(conn.send(h11.Data(data=first)))
            async for line in answer:
                await stream.send(conn.send(h11.Data(data=line)))
        finally:
            await answer.aclose()
        await stream.send(conn.send(h11.EndOfMessage()))

    def _authorize(self, request: h11.Request) -> None:
        for name, value in request.headers:
            if name == b"authorization":
                scheme, _, given = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and hmac.compare_digest(
                        given.strip().encode(), self.token.encode()):
                    return
                break
        raise ApiError("unauthorized", f"missing or wrong token: send 'Authorization: Bearer "
                       f"<token>' with the token in {TOKEN_FILE} in the node's home")

    async def _answer_json(self, conn: h11.Connection, stream: ByteStream, status: int,
                           value: Any) -> None:
        data = json.dumps(value).encode() + b"\n"
        await stream.send(conn.send(h11.Response(status_code=status, headers=[
            ("content-type", "application/json"), ("content-length", str(len(data)))])))
        await stream.send(conn.send(h11.Data(data=data)))
        await stream.send(conn.send(h11.EndOfMessage()))

    async def _answer_error(self, conn: h11.Connection, stream: ByteStream,
                            exc: ApiError) -> None:
        if conn.our_state is not h11.SEND_RESPONSE:
            return
        try:
            await self._answer_json(conn, stream, exc.status, exc.to_json())
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, h11.LocalProtocolError):
            pass

    # -- routes ----------------------------------------------------------------------

    async def _route(self, method: str, target: str, body: bytes) -> Any:
        path, _, query = target.partition("?")
        params = parse_qs(query)
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if parts[:1] != ["v0"]:
            raise ApiError("not-found", f"no route {path} (the API lives under /v0)")
        route = parts[1:]
        gets = {("node",): self._node_info, ("channels",): self._list, ("watch",): self._watch}
        if len(route) == 1 and tuple(route) in gets:
            _allow(method, "GET")
            return await gets[tuple(route)](params)
        if route[:1] == ["channels"] and len(route) == 2:
            _allow(method, "GET")
            return self._row(self.manager.channel_state(self._find(route[1])))
        if route[:1] == ["channels"] and len(route) == 3 and route[2] in _ACTIONS:
            _allow(method, "POST")
            chid = self._find(route[1])
            await getattr(self.manager, _ACTIONS[route[2]])(chid)
            return self._row(self.manager.channel_state(chid))
        if route in (["pull"], ["push"]):
            _allow(method, "POST")
            return await self._open(_json_body(body), pull=route == ["pull"])
        raise ApiError("not-found", f"no route {path}")

    def _find(self, text: str) -> ChannelID:
        return pick_channel(text, list(self.manager.channels()))

    def _row(self, state: ChannelState) -> dict[str, Any]:
        return channel_row(state, self._expected_bytes(state))

    def _expected_bytes(self, state: ChannelState) -> int | None:
        """What a receiving channel of the whole DAG will hold in all, once
        the root block says (None before, and for other selectors)."""
        chid = state.channel_id
        if chid in self._expected:
            return self._expected[chid]
        if state.sender == state.self_peer or selector_node(state.selector) != ALL_SELECTOR_NODE:
            return None
        total = dag_size(state.base_cid, self.node.blockstore)
        if total is not None:
            self._expected[chid] = total
        return total

    async def _node_info(self, params: dict[str, list[str]]) -> dict[str, Any]:
        return {"peer_id": str(self.node.peer_id), "addrs": self.node.addrs(),
                "pid": os.getpid(), "version": _version()}

    async def _list(self, params: dict[str, list[str]]) -> list[dict[str, Any]]:
        every = _flag(params, "all")
        states = self.manager.channels() if every else self.manager.in_progress_channels()
        ordered = sorted(states.values(),
                         key=lambda s: (str(s.channel_id.initiator), s.channel_id.id))
        return [self._row(s) for s in ordered]

    async def _open(self, body: dict[str, Any], *, pull: bool) -> dict[str, Any]:
        addr, root, selector = _transfer_args(body)
        node = self.node
        if not pull and dag_size(root, node.blockstore) is None:
            raise ApiError("not-in-store", f"{root} is not in the node's block store")
        try:
            peer = await node.connect(addr)
        except (TypeError, ValueError) as exc:
            raise ApiError("bad-request", str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - dial errors come in many types
            raise ApiError("peer-unreachable", describe_dial_failure(addr, exc)) from None
        chid = node.live_channel(peer, root, selector, pull=pull)
        resumed = chid is not None
        if chid is None:
            opener = self.manager.open_pull_channel if pull else self.manager.open_push_channel
            chid = await opener(peer, OpenVoucher(), root, selector)
        return {"channel": self._row(self.manager.channel_state(chid)), "resumed": resumed}

    async def _watch(self, params: dict[str, list[str]]) -> AsyncIterator[bytes]:
        named = [self._find(text) for text in params.get("channel", [])]
        return self._watch_lines(named)

    async def _watch_lines(self, named: list[ChannelID]) -> AsyncIterator[bytes]:
        """Rows of the channels that had events since the last look.

        The event bus marks a channel from its own thread; every
        ``WATCH_INTERVAL`` the loop reads only the marked ones. A burst of
        per-block progress becomes one line per channel per interval, and
        the idle channels of a busy node cost nothing per look.
        """
        manager = self.manager
        wanted = set(named)
        lock = threading.Lock()
        marked: set[ChannelID] = set(wanted or manager.in_progress_channels())

        def mark(_event: object, state: ChannelState) -> None:
            if not wanted or state.channel_id in wanted:
                with lock:
                    marked.add(state.channel_id)

        unsubscribe = manager.subscribe(mark)
        last: dict[ChannelID, tuple[Any, ...]] = {}
        quiet = 0.0
        try:
            while True:
                live = [c for c in named if manager.channel_state(c).status not in FINAL_STATUSES]
                ending = bool(named) and not live
                with lock:
                    batch = sorted(marked | wanted if ending else marked, key=str)
                    marked.clear()
                said = False
                for chid in batch:
                    row = self._row(manager.channel_state(chid))
                    key = (row["status"], row["sent"], row["received"], row["expected"],
                           row["message"])
                    if last.get(chid) != key:
                        last[chid] = key
                        said = True
                        yield json.dumps(row).encode() + b"\n"
                if ending:  # the rows above were read after the last one ended
                    return
                quiet = 0.0 if said else quiet + WATCH_INTERVAL
                if quiet >= KEEPALIVE:
                    quiet = 0.0
                    yield b"\n"
                if len(live) == 1:  # wake at once when it ends
                    try:
                        await manager.wait(live[0], timeout=WATCH_INTERVAL)
                    except TimeoutError:
                        pass
                else:
                    await anyio.sleep(WATCH_INTERVAL)
        finally:
            unsubscribe()


#: Channel actions: route name -> Manager method.
_ACTIONS = {"cancel": "close_channel", "pause": "pause_channel",
            "resume": "resume_channel", "restart": "restart_channel"}


def _allow(method: str, wanted: str) -> None:
    if method != wanted:
        raise ApiError("method-not-allowed", f"use {wanted} here, not {method}")


def _flag(params: dict[str, list[str]], name: str) -> bool:
    return any(v.lower() in ("1", "true", "yes", "") for v in params.get(name, []))


def _json_body(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body or b"{}")
    except ValueError:
        raise ApiError("bad-request", "the request body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError("bad-request", "the request body must be a JSON object")
    return value


def _transfer_args(body: dict[str, Any]) -> tuple[str, CID, Any]:
    """``addr``, ``root`` and ``selector`` of a pull or push request."""
    addr, root_text, sel_text = body.get("addr"), body.get("root"), body.get("selector")
    if not isinstance(addr, str) or not isinstance(root_text, str):
        raise ApiError("bad-request", "give 'addr' (a multiaddr ending in /p2p/<peer id>) "
                       "and 'root' (a CID) as strings")
    try:
        root = CID.parse(root_text)
    except ValueError as exc:
        raise ApiError("bad-request", f"root: {exc}") from None
    if sel_text is None:
        return addr, root, ALL_SELECTOR_NODE
    if not isinstance(sel_text, str):
        raise ApiError("bad-request", "selector: give it as DAG-JSON text")
    from datatransfer.ipld import dagjson
    from datatransfer.ipld.selector import SelectorError, parse_selector

    try:
        node = dagjson.decode(sel_text.encode(), strict=False)
        parse_selector(node)
    except (ValueError, SelectorError) as exc:
        raise ApiError("bad-request", f"selector: {exc}") from None
    return addr, root, node


def _api_error(exc: BaseException) -> ApiError:
    """The API's answer to an exception a route raised."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ChannelNotFound):
        return ApiError("channel-not-found", str(exc).strip("'\""))
    if isinstance(exc, Unsupported):
        return ApiError("unsupported", str(exc))
    if isinstance(exc, StateMachineError):
        return ApiError("illegal-transition", str(exc))
    if isinstance(exc, (TypeError, ValueError)):
        return ApiError("bad-request", str(exc))
    if isinstance(exc, DataTransferError):
        return ApiError("bad-request", str(exc))
    log.exception("control API: unexpected error")
    return ApiError("internal", f"{type(exc).__name__}: {exc}")


__all__ = ["ControlServer", "write_private"]
