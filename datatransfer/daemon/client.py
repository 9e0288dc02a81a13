"""A client of a running daemon's control API, on the standard library only.

The command line uses it when a daemon holds the home (as kubo's CLI uses
its daemon): importing it costs no libp2p, no trio and no event loop, so a
command through the daemon starts at once. Every method raises
:class:`~datatransfer.daemon.protocol.ApiError` with the daemon's code and
message, or :class:`DaemonUnavailable` when no daemon answers.
"""

from __future__ import annotations

import http.client
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from datatransfer.daemon.protocol import API_FILE, PREFIX, TOKEN_FILE, ApiError
from datatransfer.home import LOCK_FILE

#: Seconds to wait for an answer to one request (a watch waits without end).
TIMEOUT = 60.0


class DaemonUnavailable(ConnectionError):
    """No daemon answers on this home (none runs, or it just stopped)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _holder(home: Path) -> int | None:
    """The pid written in the home's lock file (the node holding it), if any."""
    try:
        text = (home / LOCK_FILE).read_text().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


class ControlClient:
    """Requests to the daemon at ``url`` with ``token``."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"not a control API URL: {url!r}")
        self.url = url
        self.host = parts.hostname
        self.port = parts.port or 80
        self.token = token

    @classmethod
    def for_home(cls, home: Path) -> ControlClient | None:
        """The client of the daemon holding ``home``, or None when no daemon
        holds it (no API file, or one left by a process that is gone or no
        longer holds the home's lock)."""
        try:
            info = json.loads((home / API_FILE).read_text())
            url, pid = info["url"], int(info["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _alive(pid) or _holder(home) != pid:
            return None
        try:
            token = (home / TOKEN_FILE).read_text().strip()
        except PermissionError:
            raise ApiError("unauthorized", f"cannot read {home / TOKEN_FILE}: the daemon "
                           "belongs to another user") from None
        except OSError:
            return None
        return cls(url, token)

    # -- requests --------------------------------------------------------------------

    def _open(self, method: str, path: str, body: Any = None,
              timeout: float | None = TIMEOUT) -> tuple[http.client.HTTPConnection,
                                                        http.client.HTTPResponse]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, PREFIX + path, body=data, headers=headers)
            response = conn.getresponse()
        except ConnectionRefusedError:
            conn.close()
            raise DaemonUnavailable(f"no daemon answers at {self.url}") from None
        except OSError as exc:
            conn.close()
            raise DaemonUnavailable(f"the daemon at {self.url} did not answer: {exc}") from None
        if response.status != 200:
            raw = response.read()
            conn.close()
            raise _error_of(response.status, raw)
        return conn, response

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """One request; the decoded JSON answer."""
        conn, response = self._open(method, path, body)
        try:
            return json.loads(response.read())
        finally:
            conn.close()

    def node(self) -> dict[str, Any]:
        """The daemon's peer id, addresses, pid and version."""
        return self.call("GET", "/node")

    def channels(self, *, every: bool = False) -> list[dict[str, Any]]:
        """Rows of the live channels (every one with ``every``)."""
        return self.call("GET", "/channels" + ("?all=1" if every else ""))

    def channel(self, name: str) -> dict[str, Any]:
        """The row of the channel ``name`` (full or short id) names."""
        return self.call("GET", f"/channels/{quote(name, safe='')}")

    def act(self, name: str, action: str) -> dict[str, Any]:
        """``cancel``, ``pause``, ``resume`` or ``restart`` a channel; its row after."""
        return self.call("POST", f"/channels/{quote(name, safe='')}/{action}")

    def open(self, addr: str, root: str, selector: str | None = None, *,
             pull: bool = True) -> dict[str, Any]:
        """Pull (or push) ``root``: ``{channel, resumed}``."""
        body = {"addr": addr, "root": root, "selector": selector}
        return self.call("POST", "/pull" if pull else "/push", body)

    def watch(self, names: list[str] | tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        """Channel rows as they change: of the channels named until all have
        ended, or of every live channel without end."""
        query = urlencode([("channel", n) for n in names])
        conn, response = self._open("GET", "/watch" + (f"?{query}" if query else ""),
                                    timeout=None)
        try:
            for line in response:
                if line.strip():
                    yield json.loads(line)
        except (http.client.IncompleteRead, OSError) as exc:
            raise DaemonUnavailable(f"the daemon at {self.url} stopped answering: "
                                    f"{exc}") from None
        finally:
            conn.close()


def _error_of(status: int, raw: bytes) -> ApiError:
    try:
        err = json.loads(raw)["error"]
        return ApiError(str(err["code"]), str(err["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError("internal", f"HTTP {status}: {raw[:200]!r}")


__all__ = ["TIMEOUT", "ControlClient", "DaemonUnavailable"]
