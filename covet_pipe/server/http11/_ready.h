/* _ready.h -- an awaitable whose value is already there.
 *
 * receive() and send() of the HTTP/1.1 connection usually have their answer at once (the body
 * already arrived, the bytes went to the transport). Returning a Future would cost a loop round
 * trip; a coroutine would cost a frame. A CovetReady answers `await` through am_send with
 * PYGEN_RETURN, so the awaiting coroutine gets the value without a StopIteration being raised.
 */
#ifndef COVET_READY_H
#define COVET_READY_H
#include <Python.h>

typedef struct {
  PyObject_HEAD
  PyObject *value;
} CovetReady;

static PySendResult covet_ready_am_send(PyObject *op, PyObject *arg, PyObject **result) {
  CovetReady *self = (CovetReady *)op;
  (void)arg;
  Py_INCREF(self->value);
  *result = self->value;
  return PYGEN_RETURN;
}

static PyObject *covet_ready_iternext(PyObject *op) {
  CovetReady *self = (CovetReady *)op;
  if (self->value != Py_None) {
    PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, self->value);
    if (e != NULL) { PyErr_SetObject(PyExc_StopIteration, e); Py_DECREF(e); }
  }
  return NULL;  /* NULL without an exception set: StopIteration(None) */
}

static PyObject *covet_ready_send(PyObject *op, PyObject *arg) {
  (void)arg;
  return covet_ready_iternext(op);
}

static PyObject *covet_ready_await(PyObject *op) { Py_INCREF(op); return op; }

static void covet_ready_dealloc(PyObject *op) {
  Py_XDECREF(((CovetReady *)op)->value);
  PyObject_Free(op);
}

static PyMethodDef covet_ready_methods[] = {
  {"send", (PyCFunction)covet_ready_send, METH_O, NULL},
  {NULL, NULL, 0, NULL},
};

static PyAsyncMethods covet_ready_async = {covet_ready_await, 0, 0, covet_ready_am_send};

static PyTypeObject CovetReady_Type = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "covet_pipe.server.http11._http11._Ready",
  .tp_basicsize = sizeof(CovetReady),
  .tp_dealloc = covet_ready_dealloc,
  .tp_as_async = &covet_ready_async,
  .tp_flags = Py_TPFLAGS_DEFAULT,
  .tp_iter = PyObject_SelfIter,
  .tp_iternext = covet_ready_iternext,
  .tp_methods = covet_ready_methods,
};

static int covet_ready_init_type(void) { return PyType_Ready(&CovetReady_Type); }

/* A new awaitable that returns `value` (a new reference; NULL on failure). */
static PyObject *covet_ready_new(PyObject *value) {
  CovetReady *self = PyObject_New(CovetReady, &CovetReady_Type);
  if (self == NULL) return NULL;
  Py_INCREF(value);
  self->value = value;
  return (PyObject *)self;
}
#endif
