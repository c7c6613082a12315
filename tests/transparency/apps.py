"""A sample of what real Starlette apps do, for the transparency suite: one app, many features.

Routing with path parameters and slash redirects, Jinja2 templates (which send ``http.response.debug``
where the server offers it, and a push promise where ``http.response.push`` is offered), BackgroundTasks,
StreamingResponse, FileResponse (Range, HEAD, ``http.response.pathsend`` where offered), StaticFiles
(ETag, 304), websockets (accept with a subprotocol, close codes, denial before accept), HTTPException
and custom exception handlers, an unhandled error (ServerErrorMiddleware's 500), redirects, cookies,
204 and 304.

:func:`build_app` makes a fresh app whose background tasks write to the list it returns.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from starlette.applications import Starlette
from starlette.background import BackgroundTasks
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response,
                                 StreamingResponse)
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.websockets import WebSocket

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
DATA = STATIC / "data.txt"
templates = Jinja2Templates(directory=str(HERE / "templates"))


class Conflict(Exception):
    """An app's own exception, turned into a 409 by its handler."""


async def home(request: Request) -> Response:
    return PlainTextResponse("home")


async def user(request: Request) -> Response:
    if request.method == "GET":
        return JSONResponse({"id": request.path_params["user_id"], "q": request.query_params.get("q")})
    data = await request.json()
    return JSONResponse({"id": request.path_params["user_id"], "got": data}, status_code=201,
                        headers={"location": f"/users/{request.path_params['user_id']}"})


async def page(request: Request) -> Response:
    await request.send_push_promise("/static/style.css")      # only where http.response.push is offered
    return templates.TemplateResponse(request, "page.jinja",
                                      {"name": request.path_params["name"], "items": ["one", "two", "three"]})


async def stream(request: Request) -> Response:
    async def chunks():
        for i in range(5):
            await asyncio.sleep(0)
            yield f"chunk {i}\n".encode()
    return StreamingResponse(chunks(), media_type="text/plain", headers={"x-streamed": "1"})


async def file(request: Request) -> Response:
    return FileResponse(DATA, filename="data.txt", media_type="text/plain")


async def teapot(request: Request) -> Response:
    raise HTTPException(418, detail="short and stout", headers={"x-teapot": "1"})


async def conflict(request: Request) -> Response:
    raise Conflict("already there")


async def crash(request: Request) -> Response:
    raise RuntimeError("the handler broke (ServerErrorMiddleware answers 500)")


async def redirect(request: Request) -> Response:
    return RedirectResponse("/users/1?q=r")


async def redirect_found(request: Request) -> Response:
    return RedirectResponse("/", status_code=302)


async def cookies(request: Request) -> Response:
    response = JSONResponse({"seen": dict(sorted(request.cookies.items()))})
    response.set_cookie("session", "abc", max_age=3600, httponly=True, samesite="strict")
    response.set_cookie("theme", "dark", path="/app", secure=True)
    response.set_cookie("gone", "", max_age=0, expires="Thu, 01 Jan 1970 00:00:00 GMT")
    return response


async def no_content(request: Request) -> Response:
    return Response(status_code=204, headers={"x-empty": "1"})


async def not_modified(request: Request) -> Response:
    return Response(status_code=304, headers={"etag": '"v1"', "cache-control": "max-age=60"})


async def ws_echo(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol="chat" if "chat" in offered else None, headers=[(b"x-ws", b"1")])
    text = await websocket.receive_text()
    await websocket.send_text(f"echo:{text}")
    data = await websocket.receive_bytes()
    await websocket.send_bytes(data[::-1])
    await websocket.close(code=4001, reason="bye")


async def ws_deny(websocket: WebSocket) -> None:
    await websocket.close(code=1008)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


async def conflict_error(request: Request, exc: Exception) -> Response:
    return PlainTextResponse(f"conflict: {exc}", status_code=409)


def build_app() -> tuple[Starlette, list]:
    """A fresh sample app, and the list its background tasks append to."""
    record: list = []

    async def background(request: Request) -> Response:
        tasks = BackgroundTasks()
        tasks.add_task(record.append, ("sync-task", request.query_params.get("n")))

        async def later() -> None:
            await asyncio.sleep(0)
            record.append(("async-task", request.query_params.get("n")))

        tasks.add_task(later)
        return PlainTextResponse("queued", background=tasks)

    routes = [
        Route("/", home),
        Route("/users/{user_id:int}", user, methods=["GET", "POST"]),
        Route("/page/{name}", page),
        Route("/background", background),
        Route("/stream", stream),
        Route("/file", file),
        Route("/teapot", teapot),
        Route("/conflict", conflict),
        Route("/crash", crash),
        Route("/redirect", redirect),
        Route("/redirect-found", redirect_found),
        Route("/cookies", cookies),
        Route("/no-content", no_content),
        Route("/not-modified", not_modified),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/ws-deny", ws_deny),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, Conflict: conflict_error})
    return app, record
