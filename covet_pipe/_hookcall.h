/* _hookcall.h -- how the hook loops (_phases.pxi) call a Python hook.
 *
 * Without a try block per hook: the call hands back a new reference, or NULL with the
 * exception set, and the loop takes its failure path on NULL; covet_reraise() lets that
 * path's Cython `try` catch the exception the call left set.
 */
#ifndef COVET_HOOKCALL_H
#define COVET_HOOKCALL_H
#include <Python.h>

/* fn(*args): a new reference, or NULL with the exception set. Vectorcall as Cython calls
   (PyVectorcall_Function, written out: the compiler keeps that one out of line). */
static inline PyObject *covet_vcall(PyObject *fn, PyObject *const *args, size_t n) {
  PyTypeObject *t = Py_TYPE(fn);
  vectorcallfunc f;
  if (PyType_HasFeature(t, Py_TPFLAGS_HAVE_VECTORCALL)) {
    f = *(vectorcallfunc *)(((char *)fn) + t->tp_vectorcall_offset);
    if (f != NULL)
      return f(fn, args, n, NULL);
  }
  return PyObject_Vectorcall(fn, args, n, NULL);
}

/* hook(a, b): the loop's Entry holds the hook and the loop holds a and b, so no reference
   counting; a bound method's function is called with its self in front. */
static inline PyObject *covet_call_hook(PyObject *hook, PyObject *a, PyObject *b) {
  PyObject *args[3];
  args[1] = a;
  args[2] = b;
  if (PyMethod_Check(hook)) {
    args[0] = PyMethod_GET_SELF(hook);
    return covet_vcall(PyMethod_GET_FUNCTION(hook), args, 3);
  }
  return covet_vcall(hook, args + 1, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET);
}

/* "the exception is already set" */
#define covet_reraise() (-1)

#endif
