/*
 * trio_upgrade.ws._speedups: WebSocket payload masking in C (RFC 6455 §5.3).
 *
 * Optional: trio_upgrade works without it (wsproto's pure-Python masker is
 * used then; see _fastmask.py). Masking and unmasking are the same XOR of the
 * payload with the 4-byte key repeated, byte i with key[i % 4].
 *
 * Masker: the state of one frame's payload arriving in pieces. wsproto calls
 * masker.process(piece) once per piece; each call continues with the key byte
 * after the last one used, so the pieces may have any lengths.
 *
 * mask(data, key, offset=0): a pure function, the XOR of data with the key
 * starting at key byte `offset % 4`, as new bytes.
 *
 * The GIL is kept while XORing: a MiB takes tens of microseconds, and giving
 * the GIL up would let another thread keep it for a whole switch interval
 * (5 ms by default) before this one could continue.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <string.h>

/* XOR n bytes of src into dst (which may be src) with key bytes
 * key[offset % 4], key[(offset + 1) % 4], ... */
static void
xor_key(unsigned char *dst, const unsigned char *src, Py_ssize_t n,
        const unsigned char key[4], unsigned int offset)
{
    unsigned char rot[4];
    Py_ssize_t i = 0;
    for (int k = 0; k < 4; k++) {
        rot[k] = key[(offset + (unsigned int)k) & 3];
    }
    if (n >= 16) {
        /* Eight bytes at a time. rot[] is repeated twice in memory order, so
         * the word works whatever the byte order; memcpy keeps unaligned
         * loads and stores legal and compiles to plain moves. */
        uint64_t word, k8;
        unsigned char k8_bytes[8];
        memcpy(k8_bytes, rot, 4);
        memcpy(k8_bytes + 4, rot, 4);
        memcpy(&k8, k8_bytes, 8);
        for (; i + 8 <= n; i += 8) {
            memcpy(&word, src + i, 8);
            word ^= k8;
            memcpy(dst + i, &word, 8);
        }
    }
    /* i is a multiple of 8 here, so the tail starts again at rot[0]. */
    for (; i < n; i++) {
        dst[i] = src[i] ^ rot[i & 3];
    }
}

/* Copy a 4-byte key out of any buffer; -1 with an exception set otherwise. */
static int
get_key(PyObject *obj, unsigned char key[4])
{
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0) {
        return -1;
    }
    if (view.len != 4) {
        PyBuffer_Release(&view);
        PyErr_Format(PyExc_ValueError, "a masking key is 4 bytes, got %zd", view.len);
        return -1;
    }
    memcpy(key, view.buf, 4);
    PyBuffer_Release(&view);
    return 0;
}

/* ---------------------------------------------------------------- Masker */

typedef struct {
    PyObject_HEAD
    unsigned char key[4];
    /* Index of the key byte that applies to the next payload byte (0..3). */
    unsigned int offset;
} MaskerObject;

static int
Masker_init(MaskerObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *key;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "Masker() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "O:Masker", &key)) {
        return -1;
    }
    if (get_key(key, self->key) < 0) {
        return -1;
    }
    self->offset = 0;
    return 0;
}

PyDoc_STRVAR(Masker_process_doc,
"process(data, /) -> bytearray\n"
"\n"
"XOR the next piece of the payload with the key and return it. A bytearray\n"
"is changed in place and returned (wsproto hands over a fresh one per piece);\n"
"any other buffer is copied into a new bytearray. The key position carries\n"
"over to the next call.");

static PyObject *
Masker_process(MaskerObject *self, PyObject *data)
{
    Py_buffer view;
    PyObject *result;
    if (PyByteArray_CheckExact(data)) {
        /* In place. Holding the buffer keeps the bytearray from resizing. */
        if (PyObject_GetBuffer(data, &view, PyBUF_WRITABLE) < 0) {
            return NULL;
        }
        xor_key(view.buf, view.buf, view.len, self->key, self->offset);
        Py_INCREF(data);
        result = data;
    }
    else {
        if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
            return NULL;
        }
        result = PyByteArray_FromStringAndSize(NULL, view.len);
        if (result == NULL) {
            PyBuffer_Release(&view);
            return NULL;
        }
        xor_key((unsigned char *)PyByteArray_AS_STRING(result), view.buf, view.len,
                self->key, self->offset);
    }
    self->offset = (self->offset + (unsigned int)(view.len & 3)) & 3;
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef Masker_methods[] = {
    {"process", (PyCFunction)Masker_process, METH_O, Masker_process_doc},
    {NULL, NULL, 0, NULL},
};

PyDoc_STRVAR(Masker_doc,
"Masker(key, /)\n"
"\n"
"Unmasks (or masks) the successive pieces of one frame's payload with a\n"
"4-byte key, continuing with the right key byte from one piece to the next.");

static PyTypeObject MaskerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "trio_upgrade.ws._speedups.Masker",
    .tp_basicsize = sizeof(MaskerObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = Masker_doc,
    .tp_methods = Masker_methods,
    .tp_init = (initproc)Masker_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------ functions */

PyDoc_STRVAR(mask_doc,
"mask(data, key, offset=0, /) -> bytes\n"
"\n"
"XOR data with the 4-byte key repeated, starting at key byte offset % 4.\n"
"Masking and unmasking are the same operation.");

static PyObject *
speedups_mask(PyObject *module, PyObject *args)
{
    PyObject *data, *key_obj;
    Py_ssize_t offset = 0;
    unsigned char key[4];
    Py_buffer view;
    PyObject *result;
    (void)module;
    if (!PyArg_ParseTuple(args, "OO|n:mask", &data, &key_obj, &offset)) {
        return NULL;
    }
    if (get_key(key_obj, key) < 0) {
        return NULL;
    }
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    result = PyBytes_FromStringAndSize(NULL, view.len);
    if (result != NULL) {
        /* Python's modulo: a negative offset counts back from the end of the key. */
        unsigned int start = (unsigned int)(((offset % 4) + 4) % 4);
        xor_key((unsigned char *)PyBytes_AS_STRING(result), view.buf, view.len, key, start);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef speedups_methods[] = {
    {"mask", speedups_mask, METH_VARARGS, mask_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef speedups_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "trio_upgrade.ws._speedups",
    .m_doc = "WebSocket payload masking in C (optional; see trio_upgrade/ws/_fastmask.py).",
    .m_size = -1,
    .m_methods = speedups_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *module;
    if (PyType_Ready(&MaskerType) < 0) {
        return NULL;
    }
    module = PyModule_Create(&speedups_module);
    if (module == NULL) {
        return NULL;
    }
    Py_INCREF(&MaskerType);
    if (PyModule_AddObject(module, "Masker", (PyObject *)&MaskerType) < 0) {
        Py_DECREF(&MaskerType);
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
