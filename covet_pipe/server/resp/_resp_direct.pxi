# The fast path's inner loop (included by _resp.pyx; fastpath.py documents the fast path): the plain GETs
# and SETs at the head of a connection's queue, answered straight from an engine's synchronous core
# (MemoryStorage.get_now/set_now through the storage view, which counts them), replies encoded here.

from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcpy


cdef inline bint _named(bytes word, char a, char b, char c) noexcept:
    """*word* is the three-letter command name abc, in any case."""
    cdef const char* p
    if PyBytes_GET_SIZE(word) != 3:
        return False
    p = PyBytes_AS_STRING(word)
    return (p[0] | 32) == a and (p[1] | 32) == b and (p[2] | 32) == c


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


cdef inline str _key(bytes word):
    return PyUnicode_DecodeLatin1(PyBytes_AS_STRING(word), PyBytes_GET_SIZE(word), NULL)


cdef object _answer(list args, get_now, set_now, bytes null, failed, get_cmd, set_cmd):
    """The reply of *args* when it is a plain GET or SET (answered with *get_now*/*set_now*), else None."""
    cdef Py_ssize_t n = len(args)
    if n == 2 and _named(<bytes?>args[0], 103, 101, 116):              # get
        try:
            value = get_now(_key(<bytes?>args[1]))
        except Exception as exc:
            return failed(get_cmd, exc)
        if value is None:
            return null
        if type(value) is bytes:
            return _bulk(<bytes>value)
        return b"$%d\r\n%s\r\n" % (len(value), value)
    if n == 3 and _named(<bytes?>args[0], 115, 101, 116):              # set
        try:
            set_now(_key(<bytes?>args[1]), args[2], None)
        except Exception as exc:
            return failed(set_cmd, exc)
        return OK
    return None


def answer_plain(list args, engine, int proto, failed, get_cmd, set_cmd):
    """The reply of the command *args* when it is a plain ``GET key`` or ``SET key value``, answered with
    *engine*'s ``get_now``/``set_now`` (an exception of the engine's by ``failed(get_cmd or set_cmd, exc)``,
    as the connection answers it); None for any other command."""
    return _answer(args, engine.get_now, engine.set_now, NULL3 if proto == 3 else NULL2, failed, get_cmd, set_cmd)


def run_plain(queue, list out, engine, int proto, failed, get_cmd, set_cmd, Py_ssize_t limit):
    """Answer the plain GETs and SETs at the head of *queue* (a deque of commands) as :func:`answer_plain`
    does, appending each reply to *out*; stop at any other command, or once *limit* bytes of replies were
    added. Returns the bytes added."""
    cdef Py_ssize_t size = 0
    get_now = engine.get_now
    set_now = engine.set_now
    cdef bytes null = NULL3 if proto == 3 else NULL2
    while queue and size < limit:
        reply = _answer(<list?>queue[0], get_now, set_now, null, failed, get_cmd, set_cmd)
        if reply is None:
            break
        queue.popleft()
        out.append(reply)
        size += PyBytes_GET_SIZE(reply)
    return size
