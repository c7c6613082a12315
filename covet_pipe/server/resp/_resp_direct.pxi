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


def run_plain(queue, list out, engine, int proto, failed, get_cmd, set_cmd, Py_ssize_t limit):
    """Answer the plain ``GET key`` and ``SET key value`` commands at the head of *queue* (a deque of
    commands) with *engine*'s ``get_now``/``set_now``, appending each reply to *out*; stop at any other
    command, or once *limit* bytes of replies were added. An exception of the engine's is answered by
    ``failed(get_cmd or set_cmd, exc)``, as the connection answers it. Returns the bytes added."""
    cdef Py_ssize_t size = 0, n
    cdef list args
    cdef bytes reply
    get_now = engine.get_now
    set_now = engine.set_now
    cdef bytes null = NULL3 if proto == 3 else NULL2
    while queue and size < limit:
        args = <list?>queue[0]
        n = len(args)
        if n == 2 and _named(<bytes?>args[0], 103, 101, 116):          # get
            queue.popleft()
            try:
                value = get_now(_key(<bytes?>args[1]))
            except Exception as exc:
                reply = failed(get_cmd, exc)
            else:
                if value is None:
                    reply = null
                elif type(value) is bytes:
                    reply = _bulk(<bytes>value)
                else:
                    reply = b"$%d\r\n%s\r\n" % (len(value), value)
        elif n == 3 and _named(<bytes?>args[0], 115, 101, 116):        # set
            queue.popleft()
            try:
                set_now(_key(<bytes?>args[1]), args[2], None)
            except Exception as exc:
                reply = failed(set_cmd, exc)
            else:
                reply = OK
        else:
            break
        out.append(reply)
        size += PyBytes_GET_SIZE(reply)
    return size
