"""A RESP command's trip through the middleware chain: its scope, the handler behind the chain, its reply.

Each command runs as ``pipeline(scope, receive, send)`` with ``scope["type"] == "resp"``: the plugins that list
"resp" see it as a Request (method = command, path = key), then :func:`handle` runs the command. The send
handed to the chain records the status and body of what comes out (a plugin's answer or the handler's);
:meth:`ChainCall._reply` turns that into the command's RESP reply. A multi-key command passes the chain
once per key (:meth:`ChainCall._multi`): a plugin that refuses any one of its keys refuses the command.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable

from covet_pipe._core import DONE
from covet_pipe.logsafe import logger
from covet_pipe.server.resp.codec import encode_bulk, encode_error
from covet_pipe.server.resp.commands import Command
from covet_pipe.server.resp.fastpath import answer_now

__all__ = ["ChainCall", "handle", "INTERNAL", "NOAUTH"]

log = logger("covet_pipe.resp")

NOAUTH = b"-NOAUTH Authentication required.\r\n"
INTERNAL = b"-ERR internal error while running the command (logged by the server)\r\n"
_ASGI = {"version": "3.0", "spec_version": "2.3"}


async def handle(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The ASGI-shaped handler behind the chain: run the command, answer with http.response messages."""
    conn, cmd, args = scope["resp"]
    body: bytes | None = b""                 # cmd None: a multi-key command's check of one more key
    if cmd is not None and (body := answer_now(conn, cmd, args)) is None:   # not a plain GET/SET on a sync core
        try:
            body = await cmd.run(conn, args)
        except Exception as exc:
            body = conn.failed(cmd, exc)
    conn._handled = body
    if send is conn._sender:                 # nothing wraps our send: no response hook to run
        conn._status = 200
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ChainCall:
    """The connection's side of a chain call (mixed into ``connection.RespConnection``)."""

    info: Any
    pipeline: Any
    _sender: Any
    _auth: tuple[bytes, bytes] | None
    _status: int
    _body: bytes
    _handled: bytes | None

    async def _multi(self, cmd: Command, args: list[bytes]) -> bytes:
        # Every key is checked by the chain before the command touches storage: a plugin that
        # rejects any one of them rejects the command (keys after the first run a check only).
        for key in cmd.keys(args)[1:]:
            reply = await self.check_chain(cmd, args, key)
            if reply:
                return reply
        self._status = 0
        self._handled = None
        await self._call(cmd, args, args[1])
        return self._reply()

    async def check_chain(self, cmd: Command, args: list[bytes], key: bytes) -> bytes:
        """Run the chain for *cmd* on *key* without running *cmd* (EXEC's first step): b"" if let through."""
        self._status = 0
        self._handled = None
        await self._call(None, args, key, cmd.method)
        return self._reply()

    def _call(self, cmd: Command | None, args: list[bytes], key: bytes, method: str | None = None) -> Any:
        """The chain's coroutine for *cmd* on *key* (not started)."""
        return self.pipeline(self._scope(cmd, args, key, method), _receive, self._sender)

    def _scope(self, cmd: Command | None, args: list[bytes], key: bytes,
               method: str | None = None) -> dict[str, Any]:
        info = self.info
        return {
            # union-attr: cmd is None only for a multi-key check, which passes its method
            "type": "resp", "asgi": _ASGI, "method": method or cmd.method,  # type: ignore[union-attr]
            "path": key.decode("latin-1"), "raw_path": key, "query_string": b"", "root_path": "",
            "headers": [self._auth] if self._auth is not None else [],
            "client": info.client, "server": info.server, "scheme": "redis",
            "resp": (self, cmd, args),
        }

    def _send(self, message: dict[str, Any]) -> Awaitable[None]:
        t = message["type"]
        if t == "http.response.start":
            self._status = message.get("status", 200)
            self._body = b""
        elif t == "http.response.body":
            self._body += message.get("body", b"")
        return DONE                          # no coroutine per message

    def _reply(self) -> bytes:
        """The reply to the command just run: the handler's, or a plugin's answer turned into RESP."""
        status = self._status
        if status == 0:
            log.error("RESP command got no response from the chain")
            return INTERNAL
        if status < 400:
            if self._handled is not None:
                return self._handled
            return encode_bulk(self._body)       # a plugin answered for the command
        if status == 401:
            return NOAUTH
        # a response hook changed the status of our own reply: its body is RESP, not a reason
        reason = "" if self._body == self._handled else _reason(self._body)
        if status == 403:
            return encode_error("NOPERM " + (reason or "this user has no permissions to run this command"))
        return encode_error(f"ERR {status} {reason}".rstrip())


async def _receive() -> dict[str, Any]:
    # A command has no body stream: a plugin that reads one sees the end at once.
    return {"type": "http.request", "body": b"", "more_body": False}


def _reason(body: bytes) -> str:
    """The text of an error body: the ``error`` field of a JSON body, else the body (200 chars)."""
    if body[:1] == b"{":
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        error = data.get("error") if isinstance(data, dict) else None
        if isinstance(error, str):
            return error[:200]
    return body[:200].decode("utf-8", "replace")
