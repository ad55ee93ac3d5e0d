"""A TCP proxy that cuts connections mid-upload: the "interrupted upload" fault, against any endpoint."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CuttingProxy:
    """Forwards 127.0.0.1:``port`` → ``upstream``; the first ``cuts`` connections that send more than
    ``after`` bytes upstream are reset there (RST, as a dropped network link looks to the client)."""

    def __init__(self, upstream_port: int, after: int, cuts: int = 1, host: str = "127.0.0.1"):
        self.upstream = (host, upstream_port)
        self.after, self.cuts_left, self.cut = after, cuts, 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.closed = False
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://{self.upstream[0]}:{self.port}"

    def _serve(self) -> None:
        while not self.closed:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                client.close()
                continue
            state = {"sent": 0, "dead": False}
            threading.Thread(target=self._pump, args=(client, server, state, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, state, False), daemon=True).start()

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict, upstream: bool) -> None:
        try:
            while not state["dead"]:
                data = src.recv(65536)
                if not data:
                    break
                if upstream:
                    state["sent"] += len(data)
                    if state["sent"] > self.after:
                        with self.lock:
                            cut = self.cuts_left > 0
                            if cut:
                                self.cuts_left -= 1
                                self.cut += 1
                        if cut:  # forward part of this chunk, then drop the link
                            dst.sendall(data[: max(0, len(data) - (state["sent"] - self.after))])
                            state["dead"] = True
                            self._reset(src, dst)
                            return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            if not state["dead"]:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
