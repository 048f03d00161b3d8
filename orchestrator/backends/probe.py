"""Before orch hands an address to Dask or Ray: is it an address, does anything listen there, and
does what answers speak the engine's protocol? Each question has a deadline, so a port that
accepts and says nothing (an HTTP server, a bare listening socket) is a one-line error within
seconds, not a hang (Dask's `Client(timeout=...)` does not bound its handshake: it waited on
such a socket until killed).

A Dask scheduler speaks first: on accepting a connection it sends its handshake (a msgpack
frame naming `compression`, `python` and `pickle-protocol`). A Ray GCS is a gRPC server: it
answers the HTTP/2 client preface with a SETTINGS frame (RFC 9113, section 3.4).
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from orchestrator.errors import EnvironmentUnavailable, InputError

DEFAULT_CONNECT_TIMEOUT_S = 10.0
_HOST_PORT = re.compile(r"^(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9.\-_]+)):(?P<port>\d{1,5})$")
_DASK_SCHEMES = ("tcp", "tls")
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
T = TypeVar("T")


def connect_timeout_s() -> float:
    """`ORCH_CONNECT_TIMEOUT_S` (seconds, positive), else 10."""
    raw = os.environ.get("ORCH_CONNECT_TIMEOUT_S")
    if raw is None:
        return DEFAULT_CONNECT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < 3600:
        raise InputError(f"ORCH_CONNECT_TIMEOUT_S: must be a number of seconds between 0 and 3600 (got {raw!r})")
    return value


def split_address(address: str, schemes: tuple[str, ...], example: str) -> tuple[str, str, int]:
    """(scheme, host, port) of `scheme://host:port` or `host:port`; bad input names the form."""
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = schemes[0], address
    match = _HOST_PORT.match(rest)
    if scheme not in schemes or not match or not 0 < int(match["port"]) < 65536:
        raise InputError(f"--address {address!r}: not an address of the form {example}",
                         fix=f"pass e.g. --address {example}")
    return scheme, match["ipv6"] or match["host"], int(match["port"])


def within(seconds: float, what: str, fn: Callable[[], T]) -> T:
    """`fn()` in a daemon thread; EnvironmentUnavailable when it has not returned in `seconds`."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"orch-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        raise EnvironmentUnavailable(f"{what}: no answer within {seconds:g} s",
                                     fix="check the address, or raise ORCH_CONNECT_TIMEOUT_S")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _open(address: str, host: str, port: int, deadline: float) -> socket.socket:
    try:
        infos = within(max(deadline - time.monotonic(), 0.1), f"--address {address}: resolving {host}",
                       lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
    except socket.gaierror as exc:
        raise EnvironmentUnavailable(f"--address {address}: cannot resolve host {host!r} ({exc.strerror})",
                                     fix="check the host name") from None
    family, kind, proto, _, where = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.settimeout(max(deadline - time.monotonic(), 0.1))
    try:
        sock.connect(where)
    except TimeoutError:
        sock.close()
        raise EnvironmentUnavailable(f"--address {address}: no answer from {host}:{port} "
                                     f"(connection timed out)", fix="check the address and any firewall") from None
    except OSError as exc:
        sock.close()
        raise EnvironmentUnavailable(f"--address {address}: unreachable, nothing listens at {host}:{port} "
                                     f"({exc.strerror or exc})", fix="start the scheduler, or check the address") from None
    return sock


def _read(sock: socket.socket, deadline: float, enough: Callable[[bytes], bool]) -> bytes:
    data = b""
    while not enough(data):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sock.settimeout(left)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data


def _heard(data: bytes) -> str:
    """What answered, for the message: printable text, or a byte count."""
    text = data[:60].decode("ascii", "replace")
    if data and all(ch.isprintable() or ch in "\r\n" for ch in text):
        return f"it answered {text.splitlines()[0]!r}"
    return f"it sent {len(data)} bytes that are not the engine's handshake" if data else "it sent nothing"


def dask_scheduler(address: str) -> None:
    """Exit 2 for a malformed address; exit 3, within the connect timeout, unless a Dask
    scheduler's handshake comes back from a tcp:// address (tls:// is checked to TCP only)."""
    timeout = connect_timeout_s()
    scheme, host, port = split_address(address, _DASK_SCHEMES, "tcp://host:8786")
    deadline = time.monotonic() + timeout
    with _open(address, host, port, deadline) as sock:
        if scheme != "tcp":
            return
        data = _read(sock, deadline, lambda d: b"pickle-protocol" in d or len(d) >= 512)
    if b"compression" not in data or b"pickle-protocol" not in data:
        raise EnvironmentUnavailable(f"--address {address}: not a Dask scheduler: {host}:{port} accepted the "
                                     f"connection but {_heard(data)} within {timeout:g} s",
                                     fix="point --address at a `dask scheduler` (default port 8786)")


def ray_gcs(address: str) -> tuple[str, int]:
    """(host, port) of a Ray GCS address `host:port` that answers HTTP/2; exit 2 or 3 otherwise."""
    timeout = connect_timeout_s()
    _, host, port = split_address(address, ("ray", "gcs"), "127.0.0.1:6379")
    deadline = time.monotonic() + timeout
    with _open(address, host, port, deadline) as sock:
        sock.sendall(HTTP2_PREFACE)
        data = _read(sock, deadline, lambda d: len(d) >= 9)
    if len(data) < 9 or data[3] != 0x04:  # a frame header whose type is SETTINGS
        raise EnvironmentUnavailable(f"--address {address}: not a Ray cluster: {host}:{port} accepted the "
                                     f"connection but {_heard(data)} to an HTTP/2 (gRPC) preface within {timeout:g} s",
                                     fix="point --address at the Ray head's GCS (`ray start --head`, port 6379)")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or a name) is this machine's loopback; unresolvable is not."""
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False
