"""WebSockets for covet-pipe's HTTP/1.1: the ASGI websocket protocol over ``websockets``' sans-I/O core.

Why ``websockets`` (its ``ServerProtocol``) and not wsproto: it is already what uvicorn's
default websocket stack installs beside httptools, so ``covet-pipe serve`` adds no new
package; its frame masking has a C speed-up; its handshake checks (``accept``/``reject``)
and close handshake are maintained with the library that most Python clients use, which
keeps the two ends in step. The HTTP connection hands over the request's bytes at the
upgrade; this protocol owns the connection from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

if TYPE_CHECKING:
    from websockets.typing import BytesLike

__all__ = ["WebSocketProtocol"]

log = logging.getLogger("covet_pipe.server")

#: how long a close handshake we started may take before the connection is cut
CLOSE_TIMEOUT = 10.0


class _Gone(Exception):
    """The client went away while the app was sending."""


class WebSocketProtocol(asyncio.Protocol):
    """One websocket connection: handshake, frames in and out, the app's task.

    :param info: the connection's ConnectionInfo (client, server, scheme).
    :param settings: the HTTP/1.1 settings of the server (app, loop, state, limits).
    """

    def __init__(self, info: Any, settings: Any) -> None:
        self.info = info
        self.settings = settings
        self.app = settings.app
        self.loop = settings.loop
        self.transport: Any = None
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.proto = ServerProtocol(max_size=settings.ws_max_size, logger=log)
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.read_paused = False
        self.writable = asyncio.Event()
        self.writable.set()
        self.close_timer: Any = None
        self.response: Response | None = None
        self.initial: tuple[int, list[tuple[str, str]], bytes] | None = None
        self.frames: list[BytesLike] = []
        #: bytes that came after the handshake request, before its answer (reading paused meanwhile)
        self.early: bytes | None = None
        self.text = False
        self.task: asyncio.Task[None] | None = None
        self.scope: dict[str, Any] = {}
        config = getattr(settings.server, "config", None)
        #: keepalive: a ping every ping_interval s; no pong within ping_timeout s closes with 1011
        self.ping_interval = float(getattr(config, "ws_ping_interval", 20.0) or 0)
        self.ping_timeout = float(getattr(config, "ws_ping_timeout", 20.0) or 0)
        self.ping_payload: bytes | None = None
        self.ping_timer: Any = None
        self.pong_timer: Any = None

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.settings.connections.add(self)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006})
        self.handshake_complete = True
        self.disconnected = True
        self.writable.set()
        if self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = None
        self._stop_keepalive()
        if self.task is None or self.task.done():
            self.settings.connections.discard(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        if self.response is not None and not self.handshake_complete:
            # RFC 6455 4.1: a client waits for the handshake's answer before it sends frames. What
            # comes early is kept until the app has answered: frames once accepted, dropped otherwise.
            self.early = self.early + data if self.early else data
            self.transport.pause_reading()
            return
        self.proto.receive_data(data)
        if self.proto.parser_exc is not None:
            self._parser_failed()
            return
        if self.response is None and self.proto.handshake_exc is not None:
            self._bad_request()
            return
        for event in self.proto.events_received():
            if isinstance(event, Request):
                self._connect(event)
            elif isinstance(event, Frame):
                self._frame(event)

    def _bad_request(self) -> None:
        # websockets could not read the handshake request: it queued a 414 or 431 for a limit,
        # nothing otherwise (then it is a 400), as uvicorn answers.
        self.handshake_complete = self.close_sent = True
        out = b"".join(self.proto.data_to_send())
        if not out:
            out = self.proto.reject(400, "Failed to open a WebSocket connection: invalid request.\n").serialize()
        if not self.transport.is_closing():
            self.transport.write(out)
        self.transport.close()

    def _flush(self) -> None:
        out = self.proto.data_to_send()
        if out and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    # -- events from the client ----------------------------------------------------------------

    def _connect(self, request: Request) -> None:
        self.response = self.proto.accept(request)
        if self.response.status_code != 101:
            self.handshake_complete = self.close_sent = True
            self.proto.send_response(self.response)
            self._flush()
            self.transport.close()
            return
        headers = [(k.lower().encode("ascii"), v.encode("latin-1")) for k, v in request.headers.raw_items()]
        raw_path, _, query = request.path.partition("?")
        subprotocols: list[str] = []
        for value in request.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend(token.strip() for token in value.split(","))
        root = self.settings.root_path
        info = self.info
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0", "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if info.scheme == "https" else "ws",
            "server": info.server,
            "client": info.client,
            "root_path": root,
            "path": root + unquote(raw_path),
            "raw_path": root.encode("ascii") + raw_path.encode("ascii"),
            "query_string": query.encode("ascii"),
            "headers": headers,
            "subprotocols": subprotocols,
            "state": self.settings.state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self.queue.put_nowait({"type": "websocket.connect"})
        self.task = self.loop.create_task(self._run())

    def _frame(self, frame: Frame) -> None:
        op = frame.opcode
        if op in (Opcode.TEXT, Opcode.BINARY):
            self.text = op == Opcode.TEXT
            self.frames = [frame.data]
        elif op == Opcode.CONT:
            self.frames.append(frame.data)
        elif op == Opcode.PING:
            self._flush()          # the protocol queued the pong
            return
        elif op == Opcode.PONG:
            if self.ping_payload is not None and frame.data == self.ping_payload:
                self.ping_payload = None
                if self.pong_timer is not None:
                    self.pong_timer.cancel()
                    self.pong_timer = None
                self._schedule_ping()
            return
        elif op == Opcode.CLOSE:
            self._closed_by_peer()
            return
        else:
            return
        if not frame.fin:
            return
        data = b"".join(self.frames)
        self.frames = []
        if self.close_sent:
            return
        message: dict[str, Any]
        if self.text:
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self.proto.send_close(1007)
                self._parser_failed()
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self.queue.put_nowait(message)
        if not self.read_paused:     # one message at a time: the app's receive resumes reading
            self.read_paused = True
            self.transport.pause_reading()

    def _closed_by_peer(self) -> None:
        if self.close_sent:
            if self.close_timer is not None:
                self.close_timer.cancel()
                self.close_timer = None
            self.transport.close()
            return
        rcvd = self.proto.close_rcvd
        self.queue.put_nowait({"type": "websocket.disconnect", "code": rcvd.code if rcvd else 1005,
                               "reason": rcvd.reason if rcvd else ""})
        self._flush()
        self.transport.close()

    def _parser_failed(self) -> None:
        sent = self.proto.close_sent
        self.queue.put_nowait({"type": "websocket.disconnect", "code": sent.code if sent else 1002,
                               "reason": sent.reason if sent else ""})
        self._flush()
        self.close_sent = True
        self.transport.close()

    # -- the app ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            result = await self.app(self.scope, self.receive, self.send)
        except _Gone:
            pass
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                log.error("Exception in ASGI application", exc_info=exc)
            self._reject_500()
        else:
            if not self.handshake_complete:
                log.error("ASGI callable returned without completing the websocket handshake.")
                self._reject_500()
            elif result is not None:
                log.error("ASGI callable should return None, but returned %r.", result)
        finally:
            if self.close_timer is None and self.transport is not None:
                self.transport.close()
            if self.disconnected:
                self.settings.connections.discard(self)

    def _reject_500(self) -> None:
        if self.initial is not None or self.handshake_complete:
            return
        self.proto.send_response(self.proto.reject(500, "Internal Server Error"))
        self._flush()

    async def receive(self) -> dict[str, Any]:
        """ASGI receive: connect, then messages, then a disconnect."""
        message = await self.queue.get()
        if self.read_paused and self.queue.empty() and not self.disconnected:
            self.read_paused = False
            self.transport.resume_reading()
        return message

    async def send(self, message: dict[str, Any]) -> None:
        """ASGI send: accept/close/http.response before the handshake, send/close after."""
        await self.writable.wait()
        if self.disconnected:
            raise _Gone()
        t = message["type"]
        if not self.handshake_complete and self.initial is None:
            self._send_handshake(t, message)
        elif self.initial is not None:
            self._send_denial_body(t, message)
        elif not self.close_sent:
            try:
                if t == "websocket.send":
                    data, text = message.get("bytes"), message.get("text")
                    if data is not None:
                        self.proto.send_binary(data)
                    elif text is not None:
                        self.proto.send_text(text.encode())
                    self._flush()
                elif t == "websocket.close":
                    code = message.get("code", 1000)
                    reason = message.get("reason", "") or ""
                    self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
                    self.proto.send_close(code, reason)
                    self._flush()
                    self.close_sent = True
                    if self.read_paused:
                        self.read_paused = False
                        self.transport.resume_reading()
                    self.close_timer = self.loop.call_later(CLOSE_TIMEOUT, self.transport.close)
                else:
                    raise RuntimeError(f"Expected ASGI message 'websocket.send' or 'websocket.close', but got {t!r}.")
            except InvalidState:
                raise _Gone() from None
        else:
            raise RuntimeError(f"Unexpected ASGI message {t!r}, after sending 'websocket.close'.")

    def _send_handshake(self, t: str, message: dict[str, Any]) -> None:
        if t == "websocket.accept":
            assert self.response is not None
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", [])]
            if message.get("subprotocol"):
                headers.append(("Sec-WebSocket-Protocol", message["subprotocol"]))
            self.response.headers.update(headers)
            if not self.transport.is_closing():
                self.handshake_complete = True
                self.proto.send_response(self.response)
                self._flush()
                self._schedule_ping()
                if self.early is not None:
                    early, self.early = self.early, None
                    self.transport.resume_reading()
                    self.data_received(early)
        elif t == "websocket.close":
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
            self.proto.send_response(self.proto.reject(HTTPStatus.FORBIDDEN, ""))
            self._flush()
            self.close_sent = self.handshake_complete = True
            self.transport.close()
        elif t == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code {status!r} in response.")
            headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in message.get("headers", [])]
            self.initial = (status, headers, b"")
        else:
            raise RuntimeError("Expected ASGI message 'websocket.accept', 'websocket.close' or "
                               f"'websocket.http.response.start' but got {t!r}.")

    # -- keepalive -------------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        if self.ping_interval > 0 and not self.disconnected and not self.close_sent:
            self.ping_timer = self.loop.call_later(self.ping_interval, self._ping)

    def _ping(self) -> None:
        self.ping_timer = None
        if self.disconnected or self.close_sent or self.transport.is_closing():
            return
        self.ping_payload = os.urandom(4)
        try:
            self.proto.send_ping(self.ping_payload)
        except InvalidState:
            return
        self._flush()
        if self.ping_timeout > 0:
            self.pong_timer = self.loop.call_later(self.ping_timeout, self._pong_missing)
        else:
            self._schedule_ping()

    def _pong_missing(self) -> None:
        self.pong_timer = None
        if self.disconnected or self.close_sent:
            return
        log.info("websocket from %s: no pong within %.1f s; closing with 1011", self.info.client,
                 self.ping_timeout)
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1011, "reason": "keepalive ping timeout"})
        try:
            self.proto.send_close(1011, "keepalive ping timeout")
            self._flush()
        except InvalidState:
            pass
        self.close_sent = True
        self.transport.close()

    def _stop_keepalive(self) -> None:
        for timer in (self.ping_timer, self.pong_timer):
            if timer is not None:
                timer.cancel()
        self.ping_timer = self.pong_timer = None

    def _send_denial_body(self, t: str, message: dict[str, Any]) -> None:
        if t != "websocket.http.response.body":
            raise RuntimeError(f"Expected ASGI message 'websocket.http.response.body' but got {t!r}.")
        assert self.initial is not None
        status, headers, body = self.initial
        body += message.get("body", b"")
        self.initial = (status, headers, body)
        if message.get("more_body", False):
            return
        h = Headers(headers)
        h.setdefault("Connection", "close")
        h.setdefault("Content-Length", str(len(body)))
        h.setdefault("Content-Type", "text/plain; charset=utf-8")
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else ""
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1006})
        self.proto.send_response(Response(status, phrase, h, body))
        self._flush()
        self.close_sent = True
        self.transport.close()

    # -- server shutdown ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Graceful shutdown: close with 1012 (service restart)."""
        if self.transport is None or self.transport.is_closing():
            return
        if self.handshake_complete and not self.close_sent:
            self.queue.put_nowait({"type": "websocket.disconnect", "code": 1012})
            self.proto.send_close(1012)
            self._flush()
        else:
            self._reject_500()
        self.transport.close()

    def abort(self) -> None:
        """Forced shutdown: cut the connection and cancel the app."""
        if self.task is not None:
            self.task.cancel()
        if self.transport is not None:
            self.transport.abort()

    def is_idle(self) -> bool:
        return False
