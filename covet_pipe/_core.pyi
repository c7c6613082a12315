"""Type stubs of covet-pipe's compiled dispatch core (covet_pipe/_core.pyx)."""

from typing import Any, AsyncIterable, AsyncIterator, Awaitable, Callable, ClassVar, Iterable, Iterator, Literal, Mapping

from typing_extensions import disjoint_base, final

# Each extension type below with C fields of its own is a disjoint base (PEP 800): no class
# derives from two of them. `make typecheck` checks this stub against the compiled module (stubtest).

_HeaderInput = Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]] | "Headers"

@disjoint_base
class Headers:
    """A case-insensitive multi-map over the ASGI header list."""

    def __init__(self, headers: _HeaderInput | None = None, /) -> None: ...
    @property
    def raw(self) -> list[tuple[bytes, bytes]]: ...
    def get(self, name: str | bytes, default: str | None = None) -> str | None: ...
    def getall(self, name: str | bytes) -> list[str]: ...
    def add(self, name: str | bytes, value: str | bytes) -> None: ...
    def set(self, name: str | bytes, value: str | bytes) -> None: ...
    def setdefault(self, name: str | bytes, value: str | bytes) -> str: ...
    def remove(self, name: str | bytes) -> int: ...
    def keys(self) -> list[str]: ...
    def values(self) -> list[str]: ...
    def items(self) -> list[tuple[str, str]]: ...
    def __getitem__(self, name: str | bytes, /) -> str: ...
    def __setitem__(self, name: str | bytes, value: str | bytes, /) -> None: ...
    def __delitem__(self, name: str | bytes, /) -> None: ...
    def __contains__(self, name: object, /) -> bool: ...
    def __iter__(self) -> Iterator[str]: ...
    def __len__(self) -> int: ...

@disjoint_base
class Request:
    """The request a plugin sees: a lazy, copy-on-write view over the ASGI scope."""

    scope: dict[str, Any]
    def __init__(
        self,
        scope: dict[str, Any] | None = None,
        *,
        method: str = "GET",
        path: str = "/",
        headers: _HeaderInput | None = None,
        query_string: bytes | str = b"",
        body: bytes | None = None,
        client: tuple[str, int] | None = None,
        scheme: str = "http",
        type: str = "http",
    ) -> None: ...
    def build_scope(self) -> dict[str, Any]: ...
    @property
    def type(self) -> str: ...
    method: str
    path: str
    query_string: bytes
    @property
    def raw_path(self) -> bytes: ...
    @property
    def query_params(self) -> dict[str, str]: ...
    @property
    def headers(self) -> Headers: ...
    @property
    def client(self) -> tuple[str, int] | None: ...
    @property
    def scheme(self) -> str: ...
    @property
    def http_version(self) -> str: ...
    @property
    def body(self) -> bytes | None: ...
    @property
    def state(self) -> dict[str, Any]: ...
    @property
    def url(self) -> str: ...

#: a streamed body: chunks of bytes (str is sent as UTF-8); a sync iterator's next() runs in a thread
_BodySource = AsyncIterable[bytes | str] | Iterable[bytes | str]
#: a body transform: (chunk, last) -> the bytes to send in its place (may be async)
_BodyTransform = Callable[[bytes, bool], bytes | Awaitable[bytes]]

@disjoint_base
class Response:
    """Status, headers and (for responses a plugin makes) a body, whole or streamed."""

    #: read-only (ResponseStartedError) once the response start went to the server
    status: int
    #: None in a response hook (the app's body streams past) and for a streamed body
    body: bytes | None
    media_type: str | None
    #: read-only (ResponseStartedError) once the response start went to the server
    headers: Headers
    def __init__(
        self,
        status: int = 200,
        headers: _HeaderInput | None = None,
        body: bytes | bytearray | memoryview | str | _BodySource | None = b"",
        media_type: str | None = None,
    ) -> None: ...
    @classmethod
    def json(cls, data: Any, status: int = 200, headers: _HeaderInput | None = None) -> "Response": ...
    def transform_body(self, transform: _BodyTransform) -> None:
        """Transform the body as it streams: ``transform(chunk, last)`` returns the bytes to send.

        Composes in response-hook order; Content-Length is dropped unless the body came whole.
        Raises ResponseStartedError once the response has started.
        """

@disjoint_base
class StreamedResponse(Response):
    """What ``call_next`` returns: the app's status and headers, editable; the body streams later.

    Reading ``body_iterator`` consumes the body: then return a new Response built from what you read.
    """

    @property
    def body_iterator(self) -> AsyncIterator[bytes]: ...

class RequestBody(bytes):
    """The request body once read: the bytes, and still callable (``await request.body()``)."""

    def __call__(self) -> Awaitable["RequestBody"]: ...

@final
class _UnreadBody:
    """``request.body`` of a call_next plugin before the body was read."""

    def __call__(self) -> Awaitable[RequestBody]: ...

@disjoint_base
class CallNextRequest(Request):
    """The request a call_next plugin gets (the chain's request, as the plugins before it left it).

    ``await request.body()`` reads the whole body, ``async for chunk in request.stream()`` reads it
    as it comes, before ``call_next``; what was read is replayed to the app.
    """

    @property
    def body(self) -> RequestBody | _UnreadBody: ...  # type: ignore[override]
    def stream(self) -> AsyncIterator[bytes]: ...

@disjoint_base
class _Action:
    @property
    def kind(self) -> int: ...
    @property
    def response(self) -> Response | None: ...

CONTINUE: _Action

#: an already finished awaitable (what a send with nothing to wait on returns)
DONE: Awaitable[None]

def resume(coro: Any, yielded: Any) -> Awaitable[Any]:
    """The rest of *coro*, stepped once with ``send(None)`` and yielding *yielded*, as an awaitable."""

class MiddlewareAction:
    """What a request hook returns: None / CONTINUE, respond(...) or reject(...)."""

    CONTINUE: ClassVar[_Action]
    @staticmethod
    def respond(response: Response) -> _Action: ...
    @staticmethod
    def reject(status: int = 403, reason: str | None = None, headers: _HeaderInput | None = None) -> _Action: ...

@disjoint_base
class PluginStats:
    calls: int
    errors: int
    short_circuits: int
    skipped_open: int
    sampled_calls: int
    sampled_ns: int
    inflight: int
    @staticmethod
    def merged(stats: Iterable[PluginStats]) -> PluginStats:
        """One PluginStats holding the sums of *stats* (a plugin's totals over its protocols)."""
    def hook_histogram(self) -> tuple[tuple[float, ...], tuple[int, ...]]:
        """The sampled hook times: (upper bounds in seconds, the last inf; per-bucket counts)."""
    def short_circuits_by_class(self) -> dict[str, int]:
        """Short-circuits by the answer's status class (``"4xx"``: n), the classes seen only."""
    def hook_quantile_us(self, q: float) -> float | None:
        """The *q* quantile of the sampled hook times in microseconds (None with no samples)."""
    def as_dict(self) -> dict[str, Any]: ...

@disjoint_base
class Entry:
    """One plugin as the core runs it (built by the registry)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def style(self) -> Literal["hook", "call_next"]: ...
    @property
    def plugin(self) -> Any: ...
    @property
    def protocols(self) -> frozenset[str]: ...
    @property
    def stats(self) -> PluginStats: ...
    @property
    def protocol_stats(self) -> dict[str, PluginStats]: ...
    @property
    def req_hook(self) -> Callable[..., Any] | None: ...
    @property
    def resp_hook(self) -> Callable[..., Any] | None: ...
    @property
    def fail_open(self) -> bool: ...
    @property
    def needs_body(self) -> bool: ...
    @property
    def paths(self) -> tuple[str, ...] | None: ...
    @property
    def sort_key(self) -> tuple[int, str]: ...
    @property
    def native(self) -> bool:
        """Whether the core calls this entry's hooks through C pointers."""
    def set_native(self, on_request: int, on_response: int, on_done: int, instance: int,
                   keep: Any) -> None: ...
    def __init__(
        self,
        plugin: Any,
        *,
        name: str,
        version: str = "0",
        priority: int = 1000,
        kind: str = "middleware",
        style: str = "hook",                    # "hook" or "call_next" (else ValueError)
        protocols: Iterable[str] = ("http",),
        req_hook: Callable[..., Any] | None = None,
        resp_hook: Callable[..., Any] | None = None,
        req_async: bool = False,
        resp_async: bool = False,
        fail_open: bool = False,
        needs_body: bool = False,
        stats: PluginStats | None = None,
        protocol_stats: dict[str, PluginStats] | None = None,
        paths: Iterable[str] | None = None,
    ) -> None: ...

@disjoint_base
class Segment:
    @property
    def names(self) -> tuple[str, ...]: ...

@disjoint_base
class Snapshot:
    """An immutable chain: what one request runs from its start to its end."""

    @property
    def entries(self) -> tuple[Entry, ...]: ...
    @property
    def generation(self) -> int: ...
    inflight: int
    on_idle: Callable[["Snapshot"], None] | None
    def __init__(self, entries: Iterable[Entry] = (), generation: int = 0) -> None: ...
    def segments(self, protocol: str) -> tuple[Segment, ...]: ...
    def may_suspend(self, protocol: str = "http") -> bool: ...
    def order(self, protocol: str = "http") -> tuple[str, ...]: ...

@disjoint_base
class Chain:
    current: Snapshot
    ready: bool
    services: Any
    def __init__(self, services: Any = None) -> None: ...
    def swap(self, snap: Snapshot) -> Snapshot: ...

@disjoint_base
class RequestContext:
    """Per-request context handed to hooks beside the request or response."""

    @property
    def request(self) -> Request: ...
    @property
    def protocol(self) -> str: ...
    @property
    def state(self) -> dict[str, Any]: ...
    @property
    def plugin_name(self) -> str | None: ...
    def get_service(self, name: str) -> Any: ...

_ReceiveCallable = Callable[[], Awaitable[dict[str, Any]]]
_SendCallable = Callable[[dict[str, Any]], Awaitable[None]]

@disjoint_base
class PipelineCore:
    """The compiled half of covet_pipe.Pipeline; a subclass provides the two hooks below."""

    app: Any
    chain: Chain
    def call(self, scope: dict[str, Any], receive: _ReceiveCallable, send: _SendCallable) -> Awaitable[None]: ...
    # The subclass contract: the core calls these two and defines neither.
    def _first_request(self, scope: dict[str, Any], receive: _ReceiveCallable, send: _SendCallable) -> Awaitable[None]:
        """Serve a request that arrived while the chain is not ready (start the plugins first)."""
    def _lifespan(self, scope: dict[str, Any], receive: _ReceiveCallable, send: _SendCallable) -> Awaitable[None]:
        """Run a ``lifespan`` scope (the plugins' startup and shutdown around the app's)."""

def make_request_context(request: Request, protocol: str = "http", services: Any = None) -> RequestContext: ...
def _error_response(status: int) -> Response: ...


# Native plugins (covet_pipe.native): the ABI the core was built with and the host side.
ABI_VERSION: int
ABI_MAJOR: int
ABI_MINOR: int
HOST_API_SIZE: int
DESCRIPTOR_SIZE: int
VIEW_SIZE: int

@disjoint_base
class NativeHost:
    """The host's handle for one loaded native plugin: its config, its log, its last error."""

    @property
    def name(self) -> str: ...
    last_error: str | None
    def __init__(self, name: str, config: Mapping[str, Any] | None = None) -> None: ...
    @property
    def address(self) -> int: ...

def host_api_address() -> int: ...
DISCARD_GRACE: float
