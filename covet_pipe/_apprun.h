/* _apprun.h -- the app's coroutine, awaited as is, counting a request in flight until it ends.
 *
 * A chain whose request hooks are all sync needs no coroutine of its own: the hooks already
 * ran. What is left is to know when the app's coroutine ends, so that a drain knows the request
 * is over. This object forwards am_send to that coroutine (PyIter_Send, no method lookup, no
 * StopIteration raised on the way) and calls `release(snap)` once when it ends, fails, is
 * closed, or is dropped unawaited.
 *
 * When the app's coroutine raises an Exception (not a cancellation), `on_error(owner, exc)` may
 * answer for it: it returns an awaitable (the pipeline's 500) that takes the coroutine's place,
 * or None to let the exception go on. The path where nothing fails makes no coroutine of its own.
 */
#ifndef COVET_APPRUN_H
#define COVET_APPRUN_H
#include <Python.h>

typedef void (*covet_release_fn)(PyObject *snap);
/* a new reference: an awaitable that answers for `exc`, or None; NULL with an exception set */
typedef PyObject *(*covet_error_fn)(PyObject *owner, PyObject *exc);

typedef struct {
  PyObject_HEAD
  PyObject *coro;
  PyObject *snap;             /* NULL once released */
  covet_release_fn release;
  PyObject *owner;            /* handed to on_error; NULL once asked (it answers once at most) */
  covet_error_fn on_error;
} CovetAppRun;

static void covet_apprun_finish(CovetAppRun *self) {
  PyObject *snap = self->snap;
  if (snap != NULL) {
    self->snap = NULL;
    /* keep an exception that is on its way out */
    PyObject *et, *ev, *tb;
    PyErr_Fetch(&et, &ev, &tb);
    self->release(snap);
    Py_DECREF(snap);
    PyErr_Restore(et, ev, tb);
  }
}

/* The coroutine raised (the exception is set). 1: on_error's awaitable took its place and the
   exception is cleared; 0: the exception goes on (still set); -1: on_error failed (its error set). */
static int covet_apprun_recover(CovetAppRun *self) {
  if (self->owner == NULL || !PyErr_ExceptionMatches(PyExc_Exception) ||
      PyErr_ExceptionMatches(PyExc_StopIteration))
    return 0;
  PyObject *et, *ev, *tb;
  PyErr_Fetch(&et, &ev, &tb);
  PyErr_NormalizeException(&et, &ev, &tb);
  if (tb != NULL) PyException_SetTraceback(ev, tb);
  PyObject *owner = self->owner;
  self->owner = NULL;
  PyObject *alt = self->on_error(owner, ev);
  Py_DECREF(owner);
  if (alt == NULL) {
    /* on_error itself failed: its exception goes on, the app's as its context */
    PyObject *t2, *v2, *tb2;
    PyErr_Fetch(&t2, &v2, &tb2);
    PyErr_NormalizeException(&t2, &v2, &tb2);
    if (v2 != NULL) { Py_INCREF(ev); PyException_SetContext(v2, ev); }
    Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
    PyErr_Restore(t2, v2, tb2);
    return -1;
  }
  if (alt == Py_None) {
    Py_DECREF(alt);
    PyErr_Restore(et, ev, tb);
    return 0;
  }
  Py_XDECREF(et); Py_XDECREF(ev); Py_XDECREF(tb);
  PyObject *it = alt;
  if (!PyCoro_CheckExact(alt) && !PyGen_CheckExact(alt)) {
    it = PyObject_CallMethod(alt, "__await__", NULL);
    Py_DECREF(alt);
    if (it == NULL) return -1;
  }
  Py_SETREF(self->coro, it);
  return 1;
}

static PySendResult covet_apprun_am_send(PyObject *op, PyObject *arg, PyObject **result) {
  CovetAppRun *self = (CovetAppRun *)op;
  PySendResult r = PyIter_Send(self->coro, arg, result);
  if (r == PYGEN_ERROR && covet_apprun_recover(self) == 1)
    r = PyIter_Send(self->coro, Py_None, result);     /* the answer's first step */
  if (r != PYGEN_NEXT) covet_apprun_finish(self);
  return r;
}

static PyObject *covet_apprun_return(PySendResult r, PyObject *res) {
  if (r == PYGEN_NEXT) return res;
  if (r == PYGEN_RETURN) {
    if (res == Py_None) {
      PyErr_SetNone(PyExc_StopIteration);
    } else {
      PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, res);
      if (e != NULL) { PyErr_SetObject(PyExc_StopIteration, e); Py_DECREF(e); }
    }
    Py_DECREF(res);
  }
  return NULL;
}

static PyObject *covet_apprun_iternext(PyObject *op) {
  PyObject *res = NULL;
  PySendResult r = covet_apprun_am_send(op, Py_None, &res); /* before res is read */
  return covet_apprun_return(r, res);
}

static PyObject *covet_apprun_send(PyObject *op, PyObject *arg) {
  PyObject *res = NULL;
  PySendResult r = covet_apprun_am_send(op, arg, &res);
  return covet_apprun_return(r, res);
}

static PyObject *covet_apprun_throw(PyObject *op, PyObject *args) {
  CovetAppRun *self = (CovetAppRun *)op;
  PyObject *meth = PyObject_GetAttrString(self->coro, "throw");
  if (meth == NULL) { covet_apprun_finish(self); return NULL; }
  PyObject *res = PyObject_Call(meth, args, NULL);
  Py_DECREF(meth);
  if (res == NULL && covet_apprun_recover(self) == 1) {
    PyObject *out = NULL;
    PySendResult r = PyIter_Send(self->coro, Py_None, &out);
    if (r != PYGEN_NEXT) covet_apprun_finish(self);
    return covet_apprun_return(r, out);
  }
  if (res == NULL) covet_apprun_finish(self);
  return res;
}

static PyObject *covet_apprun_close(PyObject *op, PyObject *unused) {
  CovetAppRun *self = (CovetAppRun *)op;
  PyObject *res = PyObject_CallMethod(self->coro, "close", NULL);
  covet_apprun_finish(self);
  return res;
}

static PyObject *covet_apprun_await(PyObject *op) { Py_INCREF(op); return op; }

static int covet_apprun_traverse(PyObject *op, visitproc visit, void *arg) {
  CovetAppRun *self = (CovetAppRun *)op;
  Py_VISIT(self->coro);
  Py_VISIT(self->snap);
  Py_VISIT(self->owner);
  return 0;
}

static int covet_apprun_clear(PyObject *op) {
  CovetAppRun *self = (CovetAppRun *)op;
  covet_apprun_finish(self);
  Py_CLEAR(self->coro);
  Py_CLEAR(self->owner);
  return 0;
}

static void covet_apprun_dealloc(PyObject *op) {
  PyObject_GC_UnTrack(op);
  covet_apprun_clear(op);
  PyObject_GC_Del(op);
}

static PyMethodDef covet_apprun_methods[] = {
  {"send", (PyCFunction)covet_apprun_send, METH_O, NULL},
  {"throw", (PyCFunction)covet_apprun_throw, METH_VARARGS, NULL},
  {"close", (PyCFunction)covet_apprun_close, METH_NOARGS, NULL},
  {NULL, NULL, 0, NULL},
};

static PyAsyncMethods covet_apprun_async = {covet_apprun_await, 0, 0, covet_apprun_am_send};

static PyTypeObject CovetAppRun_Type = {
  PyVarObject_HEAD_INIT(NULL, 0)
  .tp_name = "covet_pipe._core._AppRun",
  .tp_basicsize = sizeof(CovetAppRun),
  .tp_dealloc = covet_apprun_dealloc,
  .tp_as_async = &covet_apprun_async,
  .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
  .tp_traverse = covet_apprun_traverse,
  .tp_clear = covet_apprun_clear,
  .tp_iter = PyObject_SelfIter,
  .tp_iternext = covet_apprun_iternext,
  .tp_methods = covet_apprun_methods,
};

static int covet_apprun_ready(void) { return PyType_Ready(&CovetAppRun_Type); }

/* A new run of `coro` (an awaitable: a coroutine, or anything with __await__); `owner` (or None)
   is what on_error is handed if the coroutine raises. */
static PyObject *covet_apprun_new(PyObject *coro, PyObject *snap, covet_release_fn release,
                                  PyObject *owner, covet_error_fn on_error) {
  PyObject *it;
  if (PyCoro_CheckExact(coro) || PyGen_CheckExact(coro)) {
    Py_INCREF(coro);
    it = coro;
  } else {
    it = PyObject_CallMethod(coro, "__await__", NULL);
    if (it == NULL) return NULL;
  }
  CovetAppRun *self = PyObject_GC_New(CovetAppRun, &CovetAppRun_Type);
  if (self == NULL) { Py_DECREF(it); return NULL; }
  self->coro = it;
  Py_INCREF(snap);
  self->snap = snap;
  self->release = release;
  if (owner == Py_None || on_error == NULL) {
    self->owner = NULL;
  } else {
    Py_INCREF(owner);
    self->owner = owner;
  }
  self->on_error = on_error;
  PyObject_GC_Track((PyObject *)self);
  return (PyObject *)self;
}
#endif
