# cython: language_level=3, boundscheck=False, wraparound=False
"""covet-pipe's dispatch core: chain snapshots and the request path, compiled.

One extension built from several files (uvloop's layout): the included .pxi
files each hold one concept. _core.pxd declares the C-level fields; _core.pyi
is what Python users and type checkers see.
"""

cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, realloc
from cpython.ref cimport PyObject, Py_XDECREF
from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC
from covet_pipe.covet_plugin cimport *

cdef extern from "_apprun.h":
    ctypedef void (*covet_release_fn)(PyObject *snap) noexcept
    ctypedef object (*covet_error_fn)(object owner, object exc)
    int covet_apprun_ready() except -1
    object covet_apprun_new(object coro, object snap, covet_release_fn release, object owner,
                            covet_error_fn on_error)

cdef extern from "Python.h":
    ctypedef struct PyTypeObject:
        Py_ssize_t tp_vectorcall_offset
        unsigned long tp_flags
    unsigned long Py_TPFLAGS_HAVE_VECTORCALL
    size_t PY_VECTORCALL_ARGUMENTS_OFFSET
    # 3.10+: step a coroutine without a method lookup; -1 error, 0 returned, 1 yielded.
    int PyIter_Send(object iter, object arg, PyObject** presult) except -1
    const char *PyUnicode_AsUTF8AndSize(object s, Py_ssize_t *size) except NULL

import logging as _logging

include "_headers.pxi"
include "_messages.pxi"
include "_chain.pxi"
include "_native.pxi"
include "_awaitables.pxi"
include "_phases.pxi"
include "_bodies.pxi"
include "_sending.pxi"
include "_dispatch.pxi"
include "_callnext.pxi"
include "_callnext_drive.pxi"
include "_callnext_app.pxi"
include "_callnext_response.pxi"
include "_callnext_request.pxi"

CONTINUE = _CONTINUE
