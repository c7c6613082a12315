/* _callnext.h -- the C slots of the call_next style's awaitables (_callnext*.pxi).
 *
 * Each awaitable is its own iterator, stepped by whoever awaits it through am_send (PyIter_Send:
 * no method lookup, no StopIteration raised to return a value). The Cython class writes one step
 * function, `int step(self, arg, PyObject **out) except -1` (1 yielded *out, 0 returned *out, -1
 * raised), and covet_cn_install() puts it in am_send, and tp_iternext on top of it, at import.
 */
#ifndef COVET_CALLNEXT_H
#define COVET_CALLNEXT_H
#include <Python.h>

typedef int (*covet_step_fn)(PyObject *self, PyObject *arg, PyObject **out);

/* next(it): the step with None; a returned value other than None becomes StopIteration(value). */
static PyObject *covet_cn_iternext(PyObject *op) {
  PyObject *res = NULL;
  PySendResult r = Py_TYPE(op)->tp_as_async->am_send(op, Py_None, &res);
  if (r == PYGEN_NEXT) return res;
  if (r == PYGEN_RETURN) {
    if (res != Py_None) {
      PyObject *e = PyObject_CallOneArg(PyExc_StopIteration, res);
      if (e != NULL) { PyErr_SetObject(PyExc_StopIteration, e); Py_DECREF(e); }
    }
    Py_DECREF(res);   /* None: NULL with no exception set is the end of an iterator */
  }
  return NULL;
}

static int covet_cn_install(PyObject *type, covet_step_fn step) {
  PyTypeObject *t = (PyTypeObject *)type;
  if (t->tp_as_async == NULL || t->tp_as_async->am_await == NULL) {
    PyErr_Format(PyExc_SystemError, "%s defines no __await__", t->tp_name);
    return -1;
  }
  t->tp_as_async->am_send = (sendfunc)step;
  t->tp_iternext = covet_cn_iternext;
  PyType_Modified(t);
  return 0;
}

#endif
