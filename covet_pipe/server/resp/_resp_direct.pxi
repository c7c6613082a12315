# The fast path's inner loop (included by _resp.pyx; fastpath.py documents the fast path): the plain GETs
# and SETs (and, on an engine with ``sync_ops``, INCR/DECR/INCRBY/DECRBY, MGET, MSET, MSETNX) at the head of
# a connection's queue, answered straight from an engine's synchronous core (MemoryStorage.get_now, set_now,
# incr_by_now, get_many_now, set_many_now through the storage view), replies encoded here.

cimport cython
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcpy

from covet_pipe.storage.errors import NotANumberError
from covet_pipe.storage.numbers import parse_int

cdef bytes NOT_INT = b"-ERR value is not an integer or out of range\r\n"
cdef bytes DECR_OVERFLOW = b"-ERR decrement would overflow\r\n"
cdef object LLONG_MIN = -(2 ** 63)


cdef inline bint _is(bytes word, const char* name, Py_ssize_t size) noexcept:
    """*word* is the command name *name* (lower case, *size* letters), in any case."""
    cdef const char* p
    cdef Py_ssize_t i
    if PyBytes_GET_SIZE(word) != size:
        return False
    p = PyBytes_AS_STRING(word)
    for i in range(size):
        if (p[i] | 32) != name[i]:
            return False
    return True


cdef bytes _bulk(bytes value):
    """``$<len>\\r\\n<value>\\r\\n``, built in one allocation."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(value)
    cdef bytes head = b"$%d\r\n" % n
    cdef Py_ssize_t h = PyBytes_GET_SIZE(head)
    cdef bytes out = PyBytes_FromStringAndSize(NULL, h + n + 2)
    cdef char* p = PyBytes_AS_STRING(out)
    memcpy(p, PyBytes_AS_STRING(head), h)
    memcpy(p + h, PyBytes_AS_STRING(value), n)
    p[h + n] = 13
    p[h + n + 1] = 10
    return out


cdef inline bytes _value(value, bytes null):
    if value is None:
        return null
    if type(value) is bytes:
        return _bulk(<bytes>value)
    return b"$%d\r\n%s\r\n" % (len(value), value)


cdef inline str _key(bytes word):
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(word), PyBytes_GET_SIZE(word), NULL)


@cython.auto_pickle(False)       # a batch's own: nothing to pickle (and no pickling helpers in the module)
@cython.final
cdef class _Core:
    """One batch's synchronous engine calls, and what their replies need."""
    cdef object get_now, set_now, incr_now, mget_now, mset_now, failed
    cdef bytes null
    cdef tuple cmds         # GET SET INCR DECR INCRBY DECRBY MGET MSET MSETNX: for failed(cmd, exc)
    cdef bint ops           # the engine's counters and multi-key calls are synchronous too

    def __cinit__(self, engine, failed, tuple cmds, bint ops):
        self.get_now = engine.get_now
        self.set_now = engine.set_now
        self.ops = ops
        if ops:
            self.incr_now = engine.incr_by_now
            self.mget_now = engine.get_many_now
            self.mset_now = engine.set_many_now
        self.failed = failed
        self.cmds = cmds
        self.null = NULL2


cdef object _incr(_Core c, bytes key, delta, Py_ssize_t which):
    try:
        value = c.incr_now(_key(key), delta)
        return _INTS[value + 2] if -2 <= value < 256 else b":%d\r\n" % value
    except NotANumberError as exc:
        return encode_error("ERR %s" % (exc,))
    except Exception as exc:
        return c.failed(c.cmds[which], exc)


cdef object _answer(list args, _Core c):
    """The reply of *args* when it is a command the loop answers, else None (the caller runs it)."""
    cdef Py_ssize_t n = len(args)
    cdef bytes name = <bytes?>args[0]
    cdef Py_ssize_t size = PyBytes_GET_SIZE(name)
    cdef Py_ssize_t i
    cdef list parts
    if size == 3:
        if n == 2 and _is(name, b"get", 3):
            try:
                value = c.get_now(_key(<bytes?>args[1]))
            except Exception as exc:
                return c.failed(c.cmds[0], exc)
            return _value(value, c.null)
        if n == 3 and _is(name, b"set", 3):
            try:
                c.set_now(_key(<bytes?>args[1]), args[2], None)
            except Exception as exc:
                return c.failed(c.cmds[1], exc)
            return OK
        return None
    if not c.ops:
        return None
    if size == 4:
        if n == 2 and _is(name, b"incr", 4):
            return _incr(c, <bytes?>args[1], 1, 2)
        if n == 2 and _is(name, b"decr", 4):
            return _incr(c, <bytes?>args[1], -1, 3)
        if n >= 2 and _is(name, b"mget", 4):
            try:
                values = c.mget_now([_key(<bytes?>args[i]) for i in range(1, n)])
            except Exception as exc:
                return c.failed(c.cmds[6], exc)
            parts = [b"*%d\r\n" % len(values)]
            for value in values:
                parts.append(_value(value, c.null))
            return b"".join(parts)
        if n >= 3 and n % 2 == 1 and _is(name, b"mset", 4):
            try:
                c.mset_now([(_key(<bytes?>args[i]), args[i + 1]) for i in range(1, n, 2)], False)
            except Exception as exc:
                return c.failed(c.cmds[7], exc)
            return OK
        return None
    if size == 6:
        if n == 3 and _is(name, b"incrby", 6):
            delta = parse_int(args[2])
            return NOT_INT if delta is None else _incr(c, <bytes?>args[1], delta, 4)
        if n == 3 and _is(name, b"decrby", 6):
            delta = parse_int(args[2])
            if delta is None:
                return NOT_INT
            if delta == LLONG_MIN:
                return DECR_OVERFLOW
            return _incr(c, <bytes?>args[1], -delta, 5)
        if n >= 3 and n % 2 == 1 and _is(name, b"msetnx", 6):
            try:
                stored = c.mset_now([(_key(<bytes?>args[i]), args[i + 1]) for i in range(1, n, 2)], True)
            except Exception as exc:
                return c.failed(c.cmds[8], exc)
            return _INTS[3] if stored else _INTS[2]
    return None


def plain_core(engine, failed, tuple cmds, bint ops):
    """What :func:`answer_plain` and :func:`run_plain` call: *engine*'s synchronous core (``get_now``,
    ``set_now``; with *ops* also ``incr_by_now``, ``get_many_now``, ``set_many_now``, for INCR, DECR, INCRBY,
    DECRBY, MGET, MSET, MSETNX), fetched once; an exception of the engine's is answered by
    ``failed(cmd, exc)``, *cmd* the matching one of *cmds* (GET SET INCR DECR INCRBY DECRBY MGET MSET MSETNX),
    as the connection answers it. Kept while the engine is the same object."""
    return _Core(engine, failed, cmds, ops)


def answer_plain(list args, _Core core not None, int proto):
    """The reply of the command *args* when *core* (:func:`plain_core`) answers it: a plain ``GET key`` or
    ``SET key value``, or one of the commands its *ops* adds; None for any other command."""
    core.null = NULL3 if proto == 3 else NULL2
    return _answer(args, core)


def run_plain(queue, list out, _Core core not None, int proto, Py_ssize_t limit):
    """Answer the commands at the head of *queue* (a deque of commands) that :func:`answer_plain` answers,
    appending each reply to *out*; stop at any other command, or once *limit* bytes of replies were
    added. Returns the bytes added."""
    cdef Py_ssize_t size = 0
    core.null = NULL3 if proto == 3 else NULL2
    while queue and size < limit:
        reply = _answer(<list?>queue[0], core)
        if reply is None:
            break
        queue.popleft()
        out.append(reply)
        size += PyBytes_GET_SIZE(reply)
    return size
