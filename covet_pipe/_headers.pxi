# Headers: a case-insensitive multi-map over the ASGI header list.
# Included by _core.pyx.

cdef inline bytes _enc(object s):
    if type(s) is bytes:
        return <bytes>s
    if type(s) is str:
        return (<str>s).encode("latin-1")
    if isinstance(s, (bytes, bytearray, memoryview)):
        return bytes(s)
    if isinstance(s, str):
        return str(s).encode("latin-1")
    raise TypeError(
        f"header names and values are str or bytes, got {type(s).__name__} ({s!r})")


cdef inline bytes _key(object name):
    return _enc(name).lower()


# Every Headers object, and each edit of one, takes a number never used before: a native
# plugin's view is rebuilt when the number changes, even if a plugin replaced the whole map.
cdef unsigned long _headers_clock = 0


cdef inline unsigned long _next_version() noexcept:
    global _headers_clock
    _headers_clock += 1
    return _headers_clock


cdef inline bint _name_is(object k, bytes key) except -1:
    # Servers send lower-case names; lower() only a name of the same length.
    if type(k) is not bytes:
        k = _enc(k)
    return k == key or (len(<bytes>k) == len(key) and (<bytes>k).lower() == key)


cdef inline bint _is_framing(object name) except -1:
    return _name_is(name, b"content-length") or _name_is(name, b"transfer-encoding")


cdef list _without_framing(object raw):
    # The header list without Content-Length and Transfer-Encoding: how long a body is
    # is for whoever sends it to say.
    return [item for item in (raw or ()) if not _is_framing(item[0])]


# What went on can no longer change: a response's headers and status once its start went to
# the server, a request's once the app has its scope. An edit then raises ResponseStartedError
# naming the plugin and hook that got it, instead of being silently lost.

from covet_pipe.errors import ResponseStartedError as _ResponseStartedError

#: the entry whose body transform runs now (its edits are named after it), or None
cdef object _transform_entry = None

cdef enum:
    _EDIT_HEADERS = 0
    _EDIT_STATUS = 1
    _EDIT_TRANSFORM = 2
    _EDIT_REQUEST = 3


cdef object _started_error(object who, Py_ssize_t ran, int what):
    """The ResponseStartedError for an edit of what *who* froze.

    who: the Segment whose first *ran* entries got it (hook style), a (plugin name, hook) pair,
    or None (nobody known).
    """
    cdef list names = []
    cdef Segment seg
    cdef Entry e
    hook = "process_response"
    if _transform_entry is not None and what != _EDIT_REQUEST:
        names.append((<Entry>_transform_entry).name)
        hook = "body transform"
    elif type(who) is tuple:
        names.append(who[0])
        hook = who[1]
    elif isinstance(who, Segment):
        seg = <Segment>who
        for i in range(min(ran, seg.count)):
            e = <Entry>seg.hooks[i]
            if e.resp_hook is not None or e.c_response != NULL:
                names.append(e.name)
        if not names and 0 < ran <= seg.count:
            hook = "process_request"
            if what == _EDIT_REQUEST:
                names = [(<Entry>seg.hooks[i]).name for i in range(ran)]
            else:
                names.append((<Entry>seg.hooks[ran - 1]).name)     # the plugin that answered
    if what == _EDIT_REQUEST:
        told = ("the request has already gone to the app; its headers, method, path and query string "
                "can no longer change \u2014 edit them in process_request")
    else:
        thing = ("a body transform can no longer be added" if what == _EDIT_TRANSFORM
                 else "its status can no longer change" if what == _EDIT_STATUS
                 else "its headers can no longer change")
        told = f"the response has already started; {thing} \u2014 " + (
            "edit them in process_response, or in the transform's first call"
            if hook == "body transform" else
            "call transform_body in process_response before returning" if what == _EDIT_TRANSFORM
            else "edit them in process_response before returning")
    if len(names) == 1:
        who_text = f"plugin {names[0]!r} {hook}: "
    elif names:
        who_text = "one of plugins " + ", ".join(repr(n) for n in names) + f" ({hook}): "
    else:
        who_text = ""
    return _ResponseStartedError(who_text + told, plugin_name=names[0] if len(names) == 1 else None,
                                 hook=hook if names else None)


@cython.freelist(64)
cdef class Headers:
    """Request or response headers: a multi-map, case-insensitive, order kept.

    Values come back as ``str`` (latin-1, as HTTP defines). ``raw`` is the ASGI
    list of ``(bytes, bytes)`` pairs. Repeated headers (``Set-Cookie``) are kept
    as separate entries: use :meth:`getall` and :meth:`add`.
    """

    def __init__(self, headers=None):
        cdef list raw = []
        if headers is None:
            pass
        elif isinstance(headers, Headers):
            raw = list((<Headers>headers)._raw)
        elif hasattr(headers, "items"):
            for k, v in headers.items():
                raw.append((_key(k), _enc(v)))
        else:
            for k, v in headers:
                raw.append((_key(k), _enc(v)))
        self._raw = raw
        self._dirty = False
        self._version = _next_version()

    @staticmethod
    cdef Headers wrap(object raw):
        """Headers over an ASGI list without copying it (copy on first edit)."""
        cdef Headers h = Headers.__new__(Headers)
        if type(raw) is list:
            h._raw = <list>raw
        elif raw is None:
            h._raw = []
        else:
            h._raw = list(raw)
        h._dirty = False
        h._version = _next_version()
        return h

    cdef list raw_list(self):
        return self._raw

    cdef int _freeze(self, object who, Py_ssize_t ran, bint request) except -1:
        self._frozen = who if who is not None else False
        self._frozen_ran = ran
        self._frozen_req = request
        return 0

    cdef int _refuse(self) except -1:
        raise _started_error(self._frozen, self._frozen_ran,
                             _EDIT_REQUEST if self._frozen_req else _EDIT_HEADERS)

    cdef void _own(self):
        # The first edit copies the list: the server's scope stays untouched.
        self._version = _next_version()
        if not self._dirty:
            self._raw = [(k, v) for k, v in self._raw]
            self._dirty = True

    @property
    def raw(self):
        """The ASGI form: a list of ``(name, value)`` byte pairs."""
        return list(self._raw)

    def get(self, name, default=None):
        """The first value of header *name*, or *default*."""
        cdef bytes key = _key(name)
        cdef Py_ssize_t n = len(key)
        for k, v in self._raw:
            # Servers send lower-case names; lower() only a name of the same length.
            if k == key or (len(<bytes>k) == n and (<bytes>k).lower() == key):
                return (<bytes>v).decode("latin-1")
        return default

    def getall(self, name):
        """Every value of header *name*, in order (``[]`` when absent)."""
        cdef bytes key = _key(name)
        return [(<bytes>v).decode("latin-1") for k, v in self._raw
                if k == key or k.lower() == key]

    # C-level edits (keys already lower-case bytes): the Python methods and the
    # native host functions share them.
    cdef Py_ssize_t _c_remove(self, bytes key) except -1:
        cdef Py_ssize_t found = 0
        if self._frozen is not None:
            self._refuse()
        for item in self._raw:
            if _name_is(item[0], key):
                found += 1
        if found:
            self._own()
            self._raw = [item for item in self._raw if not _name_is(item[0], key)]
        return found

    cdef int _c_add(self, bytes key, bytes value) except -1:
        if self._frozen is not None:
            self._refuse()
        self._own()
        self._raw.append((key, value))
        return 0

    cdef int _c_set(self, bytes key, bytes value) except -1:
        self._c_remove(key)
        return self._c_add(key, value)

    def add(self, name, value):
        """Append a header, keeping any others of the same name."""
        self._c_add(_key(name), _enc(value))

    def set(self, name, value):
        """Replace every header *name* with one of *value*."""
        self._c_set(_key(name), _enc(value))

    def setdefault(self, name, value):
        """Set header *name* unless present; return its (first) value."""
        cur = self.get(name)
        if cur is None:
            self.add(name, value)
            return value if isinstance(value, str) else _enc(value).decode("latin-1")
        return cur

    def remove(self, name):
        """Remove every header *name*; return how many were removed."""
        return self._c_remove(_key(name))

    def __getitem__(self, name):
        v = self.get(name)
        if v is None:
            raise KeyError(name)
        return v

    def __setitem__(self, name, value):
        self.set(name, value)

    def __delitem__(self, name):
        if not self.remove(name):
            raise KeyError(name)

    def __contains__(self, name):
        cdef bytes key = _key(name)
        for k, v in self._raw:
            if k == key or k.lower() == key:
                return True
        return False

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self._raw)

    def keys(self):
        return [(<bytes>k).decode("latin-1").lower() for k, v in self._raw]

    def values(self):
        return [(<bytes>v).decode("latin-1") for k, v in self._raw]

    def items(self):
        return [((<bytes>k).decode("latin-1").lower(), (<bytes>v).decode("latin-1"))
                for k, v in self._raw]

    def __eq__(self, other):
        if isinstance(other, Headers):
            return sorted((k.lower(), v) for k, v in self._raw) == \
                sorted((k.lower(), v) for k, v in (<Headers>other)._raw)
        return NotImplemented

    def __repr__(self):
        return f"Headers({self.items()!r})"
