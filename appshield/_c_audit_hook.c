/* appshield's audit hook, compiled: the first lines of every audit event of the process.
 *
 * Why it exists. A Python audit hook (sys.addaudithook) costs every audit event of the
 * process a new str for the event's name, a look-up of `__cantrace__` on the hook and a
 * Python call with its frame: about 2,000 instructions, whatever the hook does. appshield
 * decides 34 events; the process raises hundreds of others (`exec`, `compile`,
 * `sys._getframe`, `object.__getattr__` ...), and the most frequent one it decides, `open`,
 * is nearly always a repeat it allowed before. Registered with PySys_AddAuditHook (PEP 578's
 * C interface), this hook answers both without any of that:
 *
 * - an event appshield does not decide: one hash of the C string and a table look-up;
 * - an `open` the active policy allowed before (appshield/hooks/_file_cache.py): the same
 *   test as the Python hook's first lines (hooks/_audit_hook.py), including the `stat` that
 *   proves a remembered path still leads to the same file where symlinks matter to the
 *   policy, without building a `stat_result`.
 *
 * Everything else goes to the very same Python hook, called as CPython calls its own audit
 * hooks: tracing and profiling paused (a tracer never sees, nor raises inside, appshield's
 * frames), its exception, if any, becoming the event's. Any doubt here (a type that is not
 * exactly the one expected, a failed look-up, an error) is never an answer: the event goes
 * to the Python hook, which decides as it always did. So this file can only make an answer
 * cheaper, never different.
 *
 * Only the interpreter that installed it is served: a subinterpreter's events are not
 * appshield's (its Python hook, per interpreter, never saw them either). C hooks cannot be
 * removed; uninstalling the shield leaves this one answering through the Python hook, which
 * does nothing while no shield is active. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    uint64_t hash;
    const char *name; /* UTF-8 of `event`, owned by it */
    PyObject *event;  /* the event's name, interned: handed to the Python hook */
} Slot;

static Slot *table = NULL;
static size_t table_mask = 0;
static PyObject *python_hook = NULL;
static PyObject *gate_globals = NULL;  /* hooks/_gate.py's globals: `_shield` */
static PyObject *cache_globals = NULL; /* hooks/_file_cache.py's globals: `_memory` */
static PyObject *open_event = NULL;
static PyInterpreterState *home = NULL;
/* hooks/_file_cache._Memory, a class with __slots__: its slots are read at their offsets,
 * about a tenth of what a generic attribute look-up costs on every open. */
static PyTypeObject *memory_type = NULL;
static Py_ssize_t owner_offset, plain_offset, checked_offset;

static PyObject *name_shield, *name_memory, *name_compiled;

#if PY_VERSION_HEX >= 0x030C0000
#define OBJECT_SLOT Py_T_OBJECT_EX
#else
#define OBJECT_SLOT T_OBJECT_EX
#endif

/* The offset of the object slot `name` of `type` (a `__slots__` member); -1 and an
 * exception when it is not one. */
static Py_ssize_t
slot_offset(PyTypeObject *type, const char *name)
{
    PyObject *descriptor = PyObject_GetAttrString((PyObject *)type, name);
    if (descriptor == NULL) {
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_TYPE(descriptor) == &PyMemberDescr_Type) {
        PyMemberDef *member = ((PyMemberDescrObject *)descriptor)->d_member;
        if (member->type == OBJECT_SLOT && !(member->flags & READONLY)) {
            offset = member->offset;
        }
    }
    Py_DECREF(descriptor);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
    }
    return offset;
}

/* A new reference to the value of the slot at `offset` of `object`, or NULL when unset. */
static PyObject *
slot_value(PyObject *object, Py_ssize_t offset)
{
    PyObject *value = *(PyObject **)((char *)object + offset);
    Py_XINCREF(value);
    return value;
}

static uint64_t
fnv1a(const char *text)
{
    uint64_t hash = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    return hash;
}

static Slot *
find(const char *event)
{
    uint64_t hash = fnv1a(event);
    for (size_t i = (size_t)hash & table_mask;; i = (i + 1) & table_mask) {
        Slot *slot = &table[i];
        if (slot->event == NULL) {
            return NULL;
        }
        if (slot->hash == hash && strcmp(slot->name, event) == 0) {
            return slot;
        }
    }
}

static PyThreadState *
current_thread_state(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_GetUnchecked();
#else
    return _PyThreadState_UncheckedGet();
#endif
}

/* As CPython around its own Python audit hooks (Python/sysmodule.c, sys_audit_tstate). */
static void
pause_tracing(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyThreadState_EnterTracing(ts);
#else
    ts->tracing++;
    ts->cframe->use_tracing = 0;
#endif
}

static void
resume_tracing(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030B0000
    PyThreadState_LeaveTracing(ts);
#else
    ts->cframe->use_tracing = (ts->c_tracefunc || ts->c_profilefunc);
    ts->tracing--;
#endif
}

/* 1 when `value` is the exact int `expected` (unsigned, or the same bits signed). */
static int
same_number(PyObject *value, unsigned long long expected)
{
    if (!PyLong_CheckExact(value)) {
        return 0;
    }
    unsigned long long number = PyLong_AsUnsignedLongLong(value);
    if (number == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        long long signed_number = PyLong_AsLongLong(value);
        if (signed_number == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        number = (unsigned long long)signed_number;
    }
    return number == expected;
}

/* 1 when `flags` is in `allowed` (a set of ours); 0 for no and for any error. */
static int
flags_in(PyObject *allowed, PyObject *flags)
{
    if (!PySet_CheckExact(allowed)) {
        return 0;
    }
    int found = PySet_Contains(allowed, flags);
    if (found < 0) {
        PyErr_Clear();
        return 0;
    }
    return found;
}

/* The remembered path still leads to the file it led to (inode, device): one `stat`, as
 * hooks/_file_cache.same_file. `seen` is (inode, device, flags, path as bytes, ...). */
static int
still_same_file(PyObject *seen)
{
    PyObject *path = PyTuple_GET_ITEM(seen, 3);
    if (!PyBytes_CheckExact(path)) {
        return 0;
    }
    const char *text = PyBytes_AS_STRING(path);
    if ((Py_ssize_t)strlen(text) != PyBytes_GET_SIZE(path)) {
        return 0;
    }
    struct stat found;
    int failed;
    Py_INCREF(seen); /* the GIL is let go: the tuple and its path stay ours meanwhile */
    Py_BEGIN_ALLOW_THREADS
    failed = stat(text, &found);
    Py_END_ALLOW_THREADS
    int same = !failed && same_number(PyTuple_GET_ITEM(seen, 0), (unsigned long long)found.st_ino)
               && same_number(PyTuple_GET_ITEM(seen, 1), (unsigned long long)found.st_dev);
    Py_DECREF(seen);
    return same;
}

/* 1: an open the active policy allowed before (hooks/_audit_hook.py's first lines, for a
 * policy without per-distribution grants and an absolute path). 0: ask the Python hook. */
static int
open_allowed_again(PyObject *args)
{
    PyObject *path = PyTuple_GET_ITEM(args, 0);
    PyObject *flags = PyTuple_GET_ITEM(args, 2);
    if (!(PyUnicode_CheckExact(path) || PyBytes_CheckExact(path)) || !PyLong_CheckExact(flags)) {
        return 0;
    }
    PyObject *active = PyDict_GetItemWithError(gate_globals, name_shield);
    if (active == NULL || active == Py_None) {
        PyErr_Clear();
        return 0;
    }
    PyObject *opened = PyDict_GetItemWithError(cache_globals, name_memory);
    if (opened == NULL || Py_TYPE(opened) != memory_type) {
        PyErr_Clear();
        return 0;
    }
    int allowed = 0;
    PyObject *owner = NULL, *compiled = NULL, *plain = NULL, *checked = NULL;
    Py_INCREF(active);
    Py_INCREF(opened);
    owner = slot_value(opened, owner_offset);
    if (owner == NULL || owner == Py_None) {
        goto done; /* None: a policy with grants, which the Python hook answers */
    }
    compiled = PyObject_GetAttr(active, name_compiled);
    if (compiled == NULL || compiled != owner) {
        goto done;
    }
    plain = slot_value(opened, plain_offset);
    if (plain == NULL || !PyDict_CheckExact(plain)) {
        goto done;
    }
    PyObject *flags_before = PyDict_GetItemWithError(plain, path);
    if (flags_before != NULL && flags_in(flags_before, flags)) {
        allowed = 1;
        goto done;
    }
    checked = slot_value(opened, checked_offset);
    if (checked == NULL || !PyDict_CheckExact(checked)) {
        goto done;
    }
    PyObject *seen = PyDict_GetItemWithError(checked, path);
    if (seen != NULL && PyTuple_CheckExact(seen) && PyTuple_GET_SIZE(seen) >= 4
        && flags_in(PyTuple_GET_ITEM(seen, 2), flags)) {
        allowed = still_same_file(seen);
    }
done:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(checked);
    Py_XDECREF(plain);
    Py_XDECREF(compiled);
    Py_XDECREF(owner);
    Py_DECREF(opened);
    Py_DECREF(active);
    return allowed;
}

static int
audit_hook(const char *event, PyObject *args, void *unused)
{
    (void)unused;
    PyThreadState *ts = current_thread_state();
    if (ts == NULL || PyThreadState_GetInterpreter(ts) != home) {
        return 0;
    }
    Slot *slot = find(event);
    if (slot == NULL) {
        return 0; /* an event appshield does not decide */
    }
    if (slot->event == open_event && PyTuple_CheckExact(args) && PyTuple_GET_SIZE(args) == 3
        && open_allowed_again(args)) {
        return 0;
    }
    PyObject *call[2] = {slot->event, args};
    pause_tracing(ts);
    PyObject *result = PyObject_Vectorcall(python_hook, call, 2, NULL);
    resume_tracing(ts);
    if (result == NULL) {
        return -1; /* the hook's exception is the event's: the operation does not happen */
    }
    Py_DECREF(result);
    return 0;
}

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (python_hook != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the compiled audit hook is already installed");
        return NULL;
    }
    if (nargs != 5 || !PyCallable_Check(args[0]) || !PyTuple_CheckExact(args[1])
        || !PyDict_CheckExact(args[2]) || !PyDict_CheckExact(args[3]) || !PyType_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "install(hook, events: tuple[str, ...], gate_globals: dict, "
                        "file_cache_globals: dict, memory_type: type)");
        return NULL;
    }
    PyTypeObject *memory = (PyTypeObject *)args[4];
    Py_ssize_t owner_at = slot_offset(memory, "owner");
    Py_ssize_t plain_at = owner_at < 0 ? -1 : slot_offset(memory, "plain");
    Py_ssize_t checked_at = plain_at < 0 ? -1 : slot_offset(memory, "checked");
    if (checked_at < 0) {
        return NULL;
    }
    PyObject *events = args[1];
    Py_ssize_t count = PyTuple_GET_SIZE(events);
    size_t size = 16;
    while (size < (size_t)count * 4) {
        size *= 2;
    }
    Slot *slots = PyMem_RawCalloc(size, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *event = PyTuple_GET_ITEM(events, i);
        if (!PyUnicode_CheckExact(event)) {
            PyErr_SetString(PyExc_TypeError, "audit event names must be str");
            goto fail;
        }
        Py_INCREF(event);
        PyUnicode_InternInPlace(&event);
        const char *name = PyUnicode_AsUTF8(event);
        if (name == NULL) {
            Py_DECREF(event);
            goto fail;
        }
        uint64_t hash = fnv1a(name);
        size_t at = (size_t)hash & (size - 1);
        while (slots[at].event != NULL && strcmp(slots[at].name, name) != 0) {
            at = (at + 1) & (size - 1);
        }
        if (slots[at].event != NULL) {
            Py_DECREF(event); /* named twice */
            continue;
        }
        slots[at].hash = hash;
        slots[at].name = name;
        slots[at].event = event;
        if (strcmp(name, "open") == 0) {
            open_event = event;
        }
    }
    name_shield = PyUnicode_InternFromString("_shield");
    name_memory = PyUnicode_InternFromString("_memory");
    name_compiled = PyUnicode_InternFromString("compiled");
    if (!name_shield || !name_memory || !name_compiled) {
        goto fail;
    }
    table = slots;
    table_mask = size - 1;
    home = PyInterpreterState_Get();
    Py_INCREF(args[0]);
    python_hook = args[0];
    Py_INCREF(args[2]);
    gate_globals = args[2];
    Py_INCREF(args[3]);
    cache_globals = args[3];
    Py_INCREF(args[4]);
    memory_type = memory;
    owner_offset = owner_at;
    plain_offset = plain_at;
    checked_offset = checked_at;
    /* Refused by an earlier hook, this may return 0 without adding the hook: the caller
     * proves it works with an event of its own (appshield/runtime.py). */
    if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    for (size_t i = 0; i < size; i++) {
        Py_XDECREF(slots[i].event);
    }
    PyMem_RawFree(slots);
    open_event = NULL;
    return NULL;
}

static PyMethodDef methods[] = {
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL,
     "install(hook, events, gate_globals, file_cache_globals, memory_type): register the "
     "compiled audit "
     "hook, once per process. It answers the events not in `events` and the repeated opens "
     "itself, and calls `hook(event, args)` for the rest."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appshield._c_audit_hook",
    .m_doc = "appshield's audit hook, compiled: see appshield/_c_audit_hook.c.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__c_audit_hook(void)
{
    return PyModule_Create(&module_def);
}
