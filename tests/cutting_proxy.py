"""A loopback TCP proxy that drops connections mid-answer, to test that clients resume streams.

Real sockets, no mocks: the client talks to the proxy, the proxy to the real server. The first
`cuts` connections are closed once `after_bytes` bytes of the server's answer have been passed on
(so the client sees a stream end mid-frame, as when a network or a load balancer drops it); later
connections are passed through whole.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType


class CuttingProxy:
    def __init__(self, upstream_port: int, *, after_bytes: int, cuts: int = 1) -> None:
        self._upstream_port = upstream_port
        self._after_bytes = after_bytes
        self._cuts_left = cuts
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0
        """Connections accepted so far."""
        self.cuts_made = 0
        """Connections this proxy dropped mid-answer."""
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                self.connections += 1
                cut = self._cuts_left > 0
                if cut:
                    self._cuts_left -= 1
            threading.Thread(target=self._serve, args=(client, cut), daemon=True).start()

    def _serve(self, client: socket.socket, cut: bool) -> None:
        upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        passed = 0
        try:
            while True:
                chunk = upstream.recv(65536)
                if not chunk:
                    break
                if cut and passed + len(chunk) >= self._after_bytes:
                    client.sendall(chunk[: self._after_bytes - passed])
                    with self._lock:
                        self.cuts_made += 1
                    break
                client.sendall(chunk)
                passed += len(chunk)
        except OSError:
            pass
        finally:
            _close(client)
            _close(upstream)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()

    def __enter__(self) -> CuttingProxy:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """The request direction, passed on whole until either side closes."""
    try:
        while chunk := source.recv(65536):
            target.sendall(chunk)
    except OSError:
        pass


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
