/*
 * Compiled VarBindList decoder: the hot loop of adapters/snmp/ber.py, in C.
 *
 * varbinds(data, start, end, v2, oid_cache, oid_cache_max, ipaddress) returns the
 * list of (oid, value) pairs that ber._varbinds_py returns for the same arguments, or
 * None whenever that function would raise: this decoder never explains an error, it
 * hands the packet back to the Python decoder, which raises the precise DecodeError.
 * So it only has to agree with the Python decoder on what is valid and what it means;
 * tests/unit/test_ber_compiled.py checks that, differentially, on valid and mutated
 * packets. OIDs are looked up in (and, while it holds fewer than oid_cache_max
 * entries, added to) the same cache dict the Python decoder uses.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_OID_ARCS 128
#define MAX_OID_BYTES ((MAX_OID_ARCS - 1) * 5)
#define U32_MAX 0xFFFFFFFFULL
#define OCTETS_MAX 65535

/* Reads a TLV length at data[p] (the first length octet), bounded by limit.
 * Sets *cs (content start) and *ce (content end); returns 0, or -1 when the Python
 * decoder would raise (indefinite or over-long form, overrun of limit or datagram). */
static int
read_length(const unsigned char *d, Py_ssize_t n, Py_ssize_t p, Py_ssize_t limit,
            Py_ssize_t *cs, Py_ssize_t *ce)
{
    if (p >= n)
        return -1;
    unsigned int first = d[p];
    if (first < 0x80) {
        *cs = p + 1;
        *ce = p + 1 + (Py_ssize_t)first;
    } else {
        unsigned int k = first & 0x7F;
        if (k == 0 || k > 4)
            return -1;
        Py_ssize_t s = p + 1 + (Py_ssize_t)k;
        if (s > limit || s > n)
            return -1;
        uint64_t len = 0;
        for (Py_ssize_t i = p + 1; i < s; i++)
            len = (len << 8) | d[i];
        *cs = s;
        *ce = s + (Py_ssize_t)len;
    }
    if (*ce > limit)
        return -1;
    return 0;
}

/* The dotted text of the OID content d[0:len], or NULL (no exception set) when it is
 * invalid: empty, too long, ending inside a subidentifier, padded, more than 128
 * arcs, an arc above 2**32-1. */
static PyObject *
parse_oid(const unsigned char *d, Py_ssize_t len)
{
    if (len == 0 || len > MAX_OID_BYTES || (d[len - 1] & 0x80))
        return NULL;
    uint64_t arcs[MAX_OID_ARCS + 1];
    int count = 1; /* arcs[0] is the split-off first arc */
    uint64_t v = 0;
    for (Py_ssize_t i = 0; i < len; i++) {
        unsigned int c = d[i];
        if (c & 0x80) {
            if (v == 0 && c == 0x80)
                return NULL;
            v = (v << 7) | (c & 0x7F);
            if (v > (U32_MAX + 80))
                return NULL; /* only grows from here, and the largest valid one is 2**32-1+80 */
        } else {
            v = (v << 7) | c;
            if (v > (U32_MAX + 80))
                return NULL;
            if (count > MAX_OID_ARCS)
                return NULL;
            arcs[count++] = v;
            v = 0;
        }
    }
    uint64_t first = arcs[1];
    if (first < 40) {
        arcs[0] = 0;
    } else if (first < 80) {
        arcs[0] = 1;
        arcs[1] = first - 40;
    } else {
        arcs[0] = 2;
        arcs[1] = first - 80;
    }
    if (count > MAX_OID_ARCS)
        return NULL;
    char buf[MAX_OID_ARCS * 12];
    char *w = buf;
    for (int i = 0; i < count; i++) {
        if (arcs[i] > U32_MAX)
            return NULL;
        if (i)
            *w++ = '.';
        w += sprintf(w, "%llu", (unsigned long long)arcs[i]);
    }
    return PyUnicode_FromStringAndSize(buf, w - buf);
}

/* The OID at d[s:e] as text, through the cache. New reference; NULL with no
 * exception set when invalid, NULL with an exception set on a real error. */
static PyObject *
oid_at(const unsigned char *d, Py_ssize_t s, Py_ssize_t e, PyObject *cache, Py_ssize_t cache_max)
{
    PyObject *key = PyBytes_FromStringAndSize((const char *)d + s, e - s);
    if (key == NULL)
        return NULL;
    PyObject *name = PyDict_GetItemWithError(cache, key);
    if (name != NULL) {
        Py_INCREF(name);
        Py_DECREF(key);
        return name;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    name = parse_oid(d + s, e - s);
    if (name != NULL && PyDict_GET_SIZE(cache) < cache_max) {
        if (PyDict_SetItem(cache, key, name) < 0) {
            Py_DECREF(name);
            name = NULL;
        }
    }
    Py_DECREF(key);
    return name;
}

/* Unsigned content d[s:e] (first octet's top bit clear) as a number of at most
 * `octets` significant octets; -1 when it has more. */
static int
unsigned_at(const unsigned char *d, Py_ssize_t s, Py_ssize_t e, int octets, uint64_t *out)
{
    while (s < e && d[s] == 0)
        s++;
    if (e - s > octets)
        return -1;
    uint64_t v = 0;
    for (; s < e; s++)
        v = (v << 8) | d[s];
    *out = v;
    return 0;
}

static PyObject *
varbinds(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "varbinds() takes 7 arguments");
        return NULL;
    }
    PyObject *data_obj = args[0];
    if (!PyDict_CheckExact(args[4])) {
        PyErr_SetString(PyExc_TypeError, "varbinds() needs a dict cache");
        return NULL;
    }
    if (!PyBytes_CheckExact(data_obj))
        Py_RETURN_NONE; /* a bytearray or memoryview: the Python decoder takes it */
    Py_ssize_t pos = PyLong_AsSsize_t(args[1]);
    Py_ssize_t end = PyLong_AsSsize_t(args[2]);
    int v2 = PyObject_IsTrue(args[3]);
    Py_ssize_t cache_max = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred() || v2 < 0)
        return NULL;
    PyObject *cache = args[4];
    PyObject *ip_type = args[6];
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(data_obj);
    Py_ssize_t n = PyBytes_GET_SIZE(data_obj);
    if (pos >= end)
        return PyList_New(0);
    if (pos < 0 || end > n)
        Py_RETURN_NONE; /* the callers never pass a span outside the datagram */

    PyObject *out = PyList_New(0);
    if (out == NULL)
        return NULL;
    while (pos < end) {
        Py_ssize_t start, vb_end, o_start, o_end, vs, ve;
        if (d[pos] != 0x30 || read_length(d, n, pos + 1, end, &start, &vb_end) < 0)
            goto invalid;
        if (start + 2 > vb_end || d[start] != 0x06)
            goto invalid;
        if (read_length(d, n, start + 1, vb_end, &o_start, &o_end) < 0)
            goto invalid;
        if (o_end + 2 > vb_end)
            goto invalid;
        unsigned int t = d[o_end];
        if (read_length(d, n, o_end + 1, vb_end, &vs, &ve) < 0 || ve != vb_end)
            goto invalid;

        PyObject *name = oid_at(d, o_start, o_end, cache, cache_max);
        if (name == NULL)
            goto fail_or_invalid;
        PyObject *value = NULL;
        uint64_t u;
        if (t == 0x43 || t == 0x41 || t == 0x42) {
            if (ve == vs || (d[vs] & 0x80) || unsigned_at(d, vs, ve, 4, &u) < 0) {
                Py_DECREF(name);
                goto invalid;
            }
            value = PyLong_FromUnsignedLongLong(u);
        } else if (t == 0x06) {
            value = oid_at(d, vs, ve, cache, cache_max);
            if (value == NULL) {
                Py_DECREF(name);
                goto fail_or_invalid;
            }
        } else if (t == 0x02) {
            Py_ssize_t len = ve - vs;
            if (len == 0) {
                Py_DECREF(name);
                goto invalid;
            }
            if (len <= 8) {
                int64_t v = (d[vs] & 0x80) ? -1 : 0;
                for (Py_ssize_t i = vs; i < ve; i++)
                    v = (int64_t)(((uint64_t)v << 8) | d[i]);
                if (v2 && (v < INT32_MIN || v > INT32_MAX)) {
                    Py_DECREF(name);
                    goto invalid;
                }
                value = PyLong_FromLongLong(v);
            } else {
                /* Over 8 octets (a padded or an unbounded v1 INTEGER): Python reads it. */
                value = _PyLong_FromByteArray(d + vs, (size_t)len, 0, 1);
                if (value != NULL && v2) {
                    int overflow = 0;
                    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
                    if (overflow || v < INT32_MIN || v > INT32_MAX) {
                        Py_DECREF(value);
                        Py_DECREF(name);
                        goto invalid;
                    }
                }
            }
        } else if (t == 0x04 || t == 0x44) {
            if (v2 && ve - vs > OCTETS_MAX) {
                Py_DECREF(name);
                goto invalid;
            }
            value = PyBytes_FromStringAndSize((const char *)d + vs, ve - vs);
        } else if (t == 0x40) {
            if (ve - vs != 4) {
                Py_DECREF(name);
                goto invalid;
            }
            char buf[16];
            int len = snprintf(buf, sizeof buf, "%u.%u.%u.%u", d[vs], d[vs + 1], d[vs + 2], d[vs + 3]);
            PyObject *text = PyUnicode_FromStringAndSize(buf, len);
            if (text != NULL) {
                value = PyObject_CallOneArg(ip_type, text);
                Py_DECREF(text);
            }
        } else if (t == 0x05 || (v2 && t >= 0x80 && t <= 0x82)) {
            if (ve != vs) {
                Py_DECREF(name);
                goto invalid;
            }
            value = Py_NewRef(Py_None);
        } else if (t == 0x46 && v2) {
            if (ve == vs || (d[vs] & 0x80) || unsigned_at(d, vs, ve, 8, &u) < 0) {
                Py_DECREF(name);
                goto invalid;
            }
            value = PyLong_FromUnsignedLongLong(u);
        } else {
            Py_DECREF(name);
            goto invalid;
        }
        if (value == NULL) {
            Py_DECREF(name);
            goto fail;
        }
        PyObject *pair = PyTuple_New(2);
        if (pair == NULL) {
            Py_DECREF(name);
            Py_DECREF(value);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, name);
        PyTuple_SET_ITEM(pair, 1, value);
        int rc = PyList_Append(out, pair);
        Py_DECREF(pair);
        if (rc < 0)
            goto fail;
        pos = vb_end;
    }
    return out;

fail_or_invalid:
    if (PyErr_Occurred())
        goto fail;
invalid:
    Py_DECREF(out);
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    return NULL;
}

static PyMethodDef methods[] = {
    {"varbinds", (PyCFunction)(void (*)(void))varbinds, METH_FASTCALL,
     "varbinds(data, start, end, v2, oid_cache, oid_cache_max, ipaddress) -> list | None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_cber", "Compiled VarBindList decoder (see ber.py).", -1, methods,
};

PyMODINIT_FUNC
PyInit__cber(void)
{
    return PyModule_Create(&module);
}
