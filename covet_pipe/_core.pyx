# cython: language_level=3, boundscheck=False, wraparound=False
"""covet-pipe's dispatch core: chain snapshots and the request path, compiled.

One extension built from several files (uvloop's layout): the included .pxi
files each hold one concept. _core.pxd declares the C-level fields; _core.pyi
is what Python users and type checkers see.
"""

from posix.time cimport clock_gettime, timespec, CLOCK_MONOTONIC

include "_headers.pxi"
include "_messages.pxi"
include "_chain.pxi"
include "_dispatch.pxi"

CONTINUE = _CONTINUE
