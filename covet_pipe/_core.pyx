# cython: language_level=3, boundscheck=False, wraparound=False
"""covet-pipe's dispatch core: chain snapshots and the request path, compiled.

One extension built from several files (uvloop's layout): the included .pxi
files each hold one concept. _core.pxd declares the C-level fields; _core.pyi
is what Python users and type checkers see.
"""

cimport cython
from cpython.ref cimport PyObject, Py_XDECREF
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

cdef extern from "Python.h":
    # 3.10+: step a coroutine without a method lookup; -1 error, 0 returned, 1 yielded.
    int PyIter_Send(object iter, object arg, PyObject** presult) except -1

include "_headers.pxi"
include "_messages.pxi"
include "_chain.pxi"
include "_dispatch.pxi"

CONTINUE = _CONTINUE
