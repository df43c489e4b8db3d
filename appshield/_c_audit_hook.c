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
 *   policy (and, for a relative path, the current folder), without building a
 *   `stat_result`;
 * - a repeat of a socket action or a lookup the active policy allowed before: the same
 *   tests as hooks/network's checks before the gate (`_repeat_allowed`, `_repeat_resolve`),
 *   on the same memories;
 * - the import system's own work on a first import, in its plainest form: the `import` event
 *   of the import statement while appshield's patched import layer is intact
 *   (hooks/imports `_import_statement_fast`), and importlib's own open of a module file
 *   while a wrapped loader reads its code (hooks/file `_import_work_open`);
 * - a program start the describer remembers (hooks/process `_popen_allowed`'s commonest
 *   case), proved again with the same system calls and decided by the policy every time;
 *   the fork_exec call subprocess makes next is then handed the judged file alone by this
 *   file's front of `_posixsubprocess.fork_exec` (`spawn_repeat`, `_judged_fork_exec`'s
 *   tests).
 *
 * Everything else goes to the very same Python hook, called as CPython calls its own audit
 * hooks: tracing and profiling paused (a tracer never sees, nor raises inside, appshield's
 * frames), its exception, if any, becoming the event's. Any doubt here (a type that is not
 * exactly the one expected, a failed look-up, an error) is never an answer: the event goes
 * to the Python hook, which decides as it always did. So this file can only make an answer
 * cheaper, never different.
 *
 * What it reads on every event is read where Python keeps it, never pushed here: the module
 * globals naming the active shield and the memories (kept between events only while their
 * dict's version says nothing changed, `global_value`), the shield's `compiled` and the
 * memories' fields (slots, at their offsets). The last key found in each network memory is
 * kept the same way, while that dict's version stands (`Remembered`).
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
#include <time.h>
#include <unistd.h>

enum {
    PLAIN_EVENT,
    OPEN_EVENT,
    LISTING_EVENT,     /* os.listdir, os.scandir: hooks/file/describe `listing_repeat` */
    PATH_CHANGE_EVENT, /* os.utime, os.chmod, ...: `change_repeat`, for a path */
    SQLITE_EVENT,      /* sqlite3.connect: `sqlite_repeat`, for a str name */
    SOCKET_ACTION_EVENT,
    LOOKUP_EVENT,
    IMPORT_EVENT, /* the import statement's `import`: hooks/imports `_import_statement_fast` */
    POPEN_EVENT,  /* subprocess.Popen: hooks/process `_popen_allowed`, for a remembered start */
};

typedef struct {
    uint64_t hash;
    size_t length;       /* of `name`, in bytes */
    const char *name;    /* UTF-8 of `event`, owned by it */
    PyObject *event;     /* the event's name, interned: handed to the Python hook */
    int kind;            /* which check before the Python hook, if any */
    PyObject *operation; /* SOCKET_ACTION_EVENT: "connect", "bind" or "send"; the file
                            events: the flags their repeats are remembered under */
} Slot;

static Slot *table = NULL;
static size_t table_mask = 0;
static PyObject *python_hook = NULL;
static PyInterpreterState *home = NULL;
/* hooks/_file_cache._Memory, a class with __slots__: its slots are read at their offsets,
 * about a tenth of what a generic attribute look-up costs on every open. */
static PyTypeObject *memory_type = NULL;
/* The file system's encoding is UTF-8 with surrogateescape (os.getcwd() is the UTF-8 of
 * the folder's bytes): only then is a relative path's folder compared here. */
static int utf8_file_names = 0;
static Py_ssize_t owner_offset, plain_offset, checked_offset, relative_offset;

static PyObject *name_shield, *name_memory, *name_compiled, *name_resolves, *dot_text;
/* appshield.runtime.Shield, whose `compiled` is a slot: read at its offset on a shield of
 * exactly that class (a generic look-up of an attribute costs about 190 instructions). */
static PyTypeObject *shield_type = NULL;
static Py_ssize_t compiled_offset;

/* A module global read on every event: `_gate._shield`, `_file_cache._memory`,
 * `network._resolves`. CPython gives every dict a version that changes with each change of
 * it (PEP 509's `ma_version_tag`, there from 3.6 to 3.13): while the module's dict keeps the
 * version it had at the last look-up, that look-up's answer stands, and it costs a compare
 * instead of a hash-table probe. `install` proves the version moves on a set, a replace and
 * a delete before it trusts it (`versions_move`); without that proof every read looks up. */
typedef struct {
    PyObject *dict;  /* the module's globals: a strong reference, kept for good */
    PyObject *name;
    uint64_t version;
    PyObject *value; /* borrowed from `dict`, which holds it while `version` stands */
    int known;
} Global;

static Global global_shield, global_memory, global_resolves;
static int versions_move = 0;

/* The import system's own work (NULL until `install` is given them): importlib's path
 * machinery, known by its module globals (`_frozen_importlib_external.__dict__`); the
 * per-thread state where the loader wrappers mark the import system's work (`importing`,
 * naming the files of the module being read); and hooks/imports' `_intact`, the patched layer's
 * proxies where they were installed, read through `global_layer`. */
static PyObject *machinery_globals = NULL, *thread_state = NULL;
static PyObject *name_importing, *name_intact;
static Global global_layer;

/* The network memories (appshield/hooks/network): NULL until `install` is given them. */
static PyObject *allowed_actions = NULL; /* `_allowed`, an _AllowCache, never replaced */
static PyObject *names_by_address = NULL; /* the resolver memory's `_by_address` */
static PyTypeObject *allow_cache_type, *names_entry_type, *resolves_type, *network_op_type;
static Py_ssize_t allow_owner_offset, allow_entries_offset, names_offset, soonest_offset,
    resolves_key_offset, resolves_entries_offset, op_address_index;
static PyMemberDescrObject *socket_family, *socket_type;

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

/* `object`'s attribute `name` as `getattr` finds it when its type looks attributes up the
 * generic way (no `__getattr__` or `__getattribute__` of its own) and has no attribute of
 * that name anywhere on its MRO (so no descriptor: only the instance's own attributes can
 * answer, and reading them runs no code): a new reference, or NULL (not there, or any
 * doubt; no exception left set). Read through the generic look-up itself, which reads an
 * instance's inline values without making its `__dict__`. */
static PyObject *
plain_attribute(PyObject *object, PyObject *name)
{
    PyTypeObject *type = Py_TYPE(object);
    if (type->tp_getattro != PyObject_GenericGetAttr || _PyType_Lookup(type, name) != NULL) {
        return NULL;
    }
    PyObject *value = PyObject_GenericGetAttr(object, name);
    if (value == NULL) {
        PyErr_Clear();
    }
    return value;
}

/* The exception being raised, taken (a new reference, normalised, its traceback attached),
 * or NULL when none is: 3.12's PyErr_GetRaisedException, on every version. */
static PyObject *
take_raised(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* `raised` (from `take_raised`) raised again; the reference is taken. */
static void
raise_again(PyObject *raised)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(raised);
#else
    PyObject *type = (PyObject *)Py_TYPE(raised);
    Py_INCREF(type);
    PyErr_Restore(type, raised, PyException_GetTraceback(raised));
#endif
}

/* FNV-1a of the C string `text`, and its length in `*length`. */
static uint64_t
fnv1a(const char *text, size_t *length)
{
    uint64_t hash = 1469598103934665603ULL;
    const unsigned char *p = (const unsigned char *)text;
    for (; *p; p++) {
        hash ^= *p;
        hash *= 1099511628211ULL;
    }
    *length = (size_t)(p - (const unsigned char *)text);
    return hash;
}

/* The `length` bytes at `a` and `b` are the same (both are at least that long), inline and
 * a word at a time: event names are short, and a call of the C library's memcmp costs more
 * than comparing them. (`memcpy` of a constant size is one load, and reads nothing past
 * `length`.) */
static int
same_bytes(const char *a, const char *b, size_t length)
{
    for (; length >= 8; a += 8, b += 8, length -= 8) {
        uint64_t word_a, word_b;
        memcpy(&word_a, a, 8);
        memcpy(&word_b, b, 8);
        if (word_a != word_b) {
            return 0;
        }
    }
    if (length >= 4) {
        uint32_t word_a, word_b;
        memcpy(&word_a, a, 4);
        memcpy(&word_b, b, 4);
        if (word_a != word_b) {
            return 0;
        }
        a += 4;
        b += 4;
        length -= 4;
    }
    for (; length > 0; a++, b++, length--) {
        if (*a != *b) {
            return 0;
        }
    }
    return 1;
}

static Slot *
find(const char *event)
{
    size_t length;
    uint64_t hash = fnv1a(event, &length);
    for (size_t i = (size_t)hash & table_mask;; i = (i + 1) & table_mask) {
        Slot *slot = &table[i];
        if (slot->event == NULL) {
            return NULL;
        }
        if (slot->hash == hash && slot->length == length
            && same_bytes(slot->name, event, length)) {
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

/* 1 and the value in `*value` when the exact int `number` fits one digit of CPython's
 * (what small ints and an open's flags are): read from the object, without a call. 0
 * otherwise: the caller asks PyLong_AsLongAndOverflow. */
static int
one_digit_value(PyObject *number, long *value)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyLongObject *as_long = (PyLongObject *)number;
    if (!PyUnstable_Long_IsCompact(as_long)) {
        return 0;
    }
    *value = (long)PyUnstable_Long_CompactValue(as_long);
    return 1;
#else
    Py_ssize_t size = Py_SIZE(number);
    if (size < -1 || size > 1) {
        return 0;
    }
    /* Zero may have no digit allocated (3.10): its value is not read from one. */
    *value = size == 0 ? 0 : size * (long)((PyLongObject *)number)->ob_digit[0];
    return 1;
#endif
}

/* The value of the exact int `number`; 0 when it does not fit a C long. */
static int
int_value(PyObject *number, long *value)
{
    if (one_digit_value(number, value)) {
        return 1;
    }
    int overflow = 0;
    *value = PyLong_AsLongAndOverflow(number, &overflow);
    if (overflow || (*value == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* 1 when `flags` is in `allowed` (a set of ours); 0 for no and for any error. */
static int
flags_in(PyObject *allowed, PyObject *flags)
{
    if (!PySet_CheckExact(allowed)) {
        return 0;
    }
    PySetObject *set = (PySetObject *)allowed;
    if (PyLong_CheckExact(flags) && set->mask < 8) {
        /* An open's flags: an int CPython made for this call, never the object the set
         * holds, so a set look-up ends in a rich comparison of two ints (about 220
         * instructions). A set of a few flags is walked instead, comparing the values of
         * its exact ints: found here, it is in the set; not found (a bool, or an int too
         * large for a C long, among them), the Python hook asks again. */
        long wanted, value;
        if (!int_value(flags, &wanted)) {
            return 0;
        }
        if (wanted >= 0) {
            /* First the entry where the set put it: a non-negative int below 2**61 - 1 is
             * its own hash, and its entry's place the hash's low bits, unless a collision
             * moved it (the walk below then finds it). */
            PyObject *home_key = set->table[(size_t)wanted & (size_t)set->mask].key;
            if (home_key != NULL && PyLong_CheckExact(home_key) && int_value(home_key, &value)
                && value == wanted) {
                return 1;
            }
        }
        for (Py_ssize_t i = 0; i <= set->mask; i++) {
            PyObject *held = set->table[i].key;
            /* An empty entry is NULL; a deleted one holds a marker that is no int. */
            if (held != NULL && PyLong_CheckExact(held) && int_value(held, &value)
                && value == wanted) {
                return 1;
            }
        }
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
 * hooks/_file_cache.same_file. `seen` is (inode, device, flags, path as bytes, ...). For a
 * relative path, `folder` is the current folder it was decided in (UTF-8, the file system's
 * encoding here): the current folder must be that one again (hooks/_file_cache
 * `_in_this_folder`), else 0. */
static int
still_same_file(PyObject *seen, const char *folder, Py_ssize_t folder_size)
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
    int failed = 0;
    char here[4096];
    Py_INCREF(seen); /* the GIL is let go: the tuple, its path and folder stay ours meanwhile */
    Py_BEGIN_ALLOW_THREADS
    if (folder != NULL) {
        /* Too long a folder for the buffer (ERANGE) is a miss: the Python hook asks again. */
        failed = getcwd(here, sizeof here) == NULL || strlen(here) != (size_t)folder_size
                 || memcmp(here, folder, (size_t)folder_size) != 0;
    }
    if (!failed) {
        failed = stat(text, &found);
    }
    Py_END_ALLOW_THREADS
    int same = !failed && same_number(PyTuple_GET_ITEM(seen, 0), (unsigned long long)found.st_ino)
               && same_number(PyTuple_GET_ITEM(seen, 1), (unsigned long long)found.st_dev);
    Py_DECREF(seen);
    return same;
}

/* The version `dict` has now. */
#if PY_VERSION_HEX < 0x030E0000
/* Deprecated for C code since 3.12 (for dict watchers), still kept up to date by 3.13. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static uint64_t
dict_version(PyObject *dict)
{
    return ((PyDictObject *)dict)->ma_version_tag;
}
#pragma GCC diagnostic pop
#else
/* No version kept: always 0, which never moves, so `dict_versions_move` says no and
 * nothing is reused. */
static uint64_t
dict_version(PyObject *dict)
{
    (void)dict;
    return 0;
}
#endif

/* `global`'s value now: a borrowed reference, or NULL (unset, or a failed look-up; no
 * exception is left set). */
static PyObject *
global_value(Global *global)
{
    /* Read before the look-up: a change made while it runs (a key's `__eq__`) leaves the
     * version remembered already old, so the next read looks up again. */
    uint64_t version = dict_version(global->dict);
    if (global->known && version == global->version) {
        return global->value;
    }
    PyObject *value = PyDict_GetItemWithError(global->dict, global->name);
    if (value == NULL && PyErr_Occurred()) {
        PyErr_Clear();
        global->known = 0;
        return NULL;
    }
    global->value = value;
    global->version = version;
    global->known = versions_move;
    return value;
}

/* 1 when a dict's version moves on each kind of change `global_value` relies on: a key
 * added, its value replaced by another object, the key deleted. (Storing the very object a
 * key already holds may leave the version as it was: what a read finds is the same.) */
static int
dict_versions_move(void)
{
    PyObject *dict = PyDict_New();
    PyObject *key = PyUnicode_InternFromString("appshield.version_probe");
    int moves = 0;
    if (dict != NULL && key != NULL) {
        uint64_t before = dict_version(dict);
        moves = PyDict_SetItem(dict, key, Py_None) == 0 && dict_version(dict) != before;
        before = dict_version(dict);
        moves = moves && PyDict_SetItem(dict, key, Py_True) == 0 && dict_version(dict) != before;
        before = dict_version(dict);
        moves = moves && PyDict_DelItem(dict, key) == 0 && dict_version(dict) != before;
    }
    PyErr_Clear();
    Py_XDECREF(key);
    Py_XDECREF(dict);
    return moves;
}

/* The active policy's compiled form (a new reference), or NULL when no shield is active. */
static PyObject *
active_policy(void)
{
    PyObject *active = global_value(&global_shield);
    if (active == NULL || active == Py_None) {
        return NULL;
    }
    if (Py_TYPE(active) == shield_type) {
        return slot_value(active, compiled_offset);
    }
    Py_INCREF(active);
    PyObject *compiled = PyObject_GetAttr(active, name_compiled);
    Py_DECREF(active);
    return compiled;
}

/* 1 when `memory`'s owner (the slot at `offset`) is the active policy's compiled form: a
 * memory that policy filled, for a policy without grants (their memories' owner is None). */
static int
memory_of_active_policy(PyObject *memory, Py_ssize_t offset)
{
    PyObject *active = global_value(&global_shield);
    if (active == NULL || active == Py_None) {
        return 0;
    }
    if (Py_TYPE(active) == shield_type) {
        /* Two slots read and compared, nothing run in between: neither is kept. */
        PyObject *compiled = *(PyObject **)((char *)active + compiled_offset);
        return compiled != NULL && compiled == *(PyObject **)((char *)memory + offset);
    }
    PyObject *compiled = active_policy(); /* may run code: the owner is read after it */
    PyObject *owner = slot_value(memory, offset);
    int same = compiled != NULL && owner == compiled;
    Py_XDECREF(owner);
    Py_XDECREF(compiled);
    return same;
}

/* 1: an exact str or bytes `path` the active policy allowed before under `flags`, in the
 * memories of hooks/_file_cache.py (`allowed_again`, and the Python hook's first lines for
 * an open), for a policy without per-distribution grants; a remembered relative str only
 * when `relative_too` (the call cannot be relative to a dir_fd). 0: ask the Python hook. */
static int
allowed_again(PyObject *path, PyObject *flags, int relative_too)
{
    PyObject *opened = global_value(&global_memory);
    if (opened == NULL || Py_TYPE(opened) != memory_type) {
        return 0;
    }
    int allowed = 0;
    PyObject *plain = NULL, *checked = NULL, *relative = NULL;
    Py_INCREF(opened);
    if (!memory_of_active_policy(opened, owner_offset)) {
        goto done; /* no shield, another policy's memory, or grants (`owner` None) */
    }
    plain = slot_value(opened, plain_offset);
    if (plain == NULL || !PyDict_CheckExact(plain)) {
        goto done;
    }
    PyObject *flags_before = PyDict_GetItemWithError(plain, path);
    if (flags_before != NULL && flags_in(flags_before, flags)) {
        /* Found, and flags_in leaves no exception set: nothing to clear. */
        Py_DECREF(plain);
        Py_DECREF(opened);
        return 1;
    }
    checked = slot_value(opened, checked_offset);
    if (checked == NULL || !PyDict_CheckExact(checked)) {
        goto done;
    }
    PyObject *seen = PyDict_GetItemWithError(checked, path);
    if (seen != NULL) {
        if (PyTuple_CheckExact(seen) && PyTuple_GET_SIZE(seen) >= 4
            && flags_in(PyTuple_GET_ITEM(seen, 2), flags)) {
            allowed = still_same_file(seen, NULL, 0);
        }
        goto done;
    }
    if (PyErr_Occurred() || !relative_too || !PyUnicode_CheckExact(path)) {
        goto done;
    }
    relative = slot_value(opened, relative_offset);
    if (relative == NULL || !PyDict_CheckExact(relative)) {
        goto done;
    }
    seen = PyDict_GetItemWithError(relative, path);
    if (seen != NULL && PyTuple_CheckExact(seen) && PyTuple_GET_SIZE(seen) >= 5
        && PyUnicode_CheckExact(PyTuple_GET_ITEM(seen, 4))
        && flags_in(PyTuple_GET_ITEM(seen, 2), flags)) {
        Py_ssize_t size;
        /* NULL for a folder name that is not valid UTF-8 (surrogates): a miss. */
        const char *folder = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(seen, 4), &size);
        if (folder != NULL && utf8_file_names) {
            allowed = still_same_file(seen, folder, size);
        }
    }
done:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(relative);
    Py_XDECREF(checked);
    Py_XDECREF(plain);
    Py_DECREF(opened);
    return allowed;
}

/* 1: an exact str `path` that importlib's own code opens (the Python frame the event comes
 * from runs in importlib's globals) while this thread is inside a loader's reading of a
 * module, naming that module's file or a file of its bytecode cache (`importing`): what
 * hooks/file `_import_work_open` lets through before the gate. That check walks past
 * appshield's own frames too; here only the caller itself is looked at, so a miss (a bytes
 * path, any other frame, any doubt) is the Python hook's to answer. */
static int
import_work_open(PyObject *path)
{
    if (!PyUnicode_CheckExact(path) || machinery_globals == NULL
        || PyEval_GetGlobals() != machinery_globals) {
        return 0;
    }
    /* The thread-local read, as the Python check reads it (the same attribute, through the
     * same `_thread._local`): while a loader reads a module, (its file, the start of its
     * bytecode cache's names) (hooks/imports `_module_files`); only those are its opens. */
    PyObject *files = PyObject_GetAttr(thread_state, name_importing);
    if (files == NULL) {
        PyErr_Clear();
        return 0;
    }
    int ours = 0;
    if (PyTuple_CheckExact(files) && PyTuple_GET_SIZE(files) == 2
        && PyUnicode_CheckExact(PyTuple_GET_ITEM(files, 0))
        && PyUnicode_CheckExact(PyTuple_GET_ITEM(files, 1))) {
        /* Exact str against exact str: no code of anyone's runs. */
        ours = PyUnicode_Compare(path, PyTuple_GET_ITEM(files, 0)) == 0
               || PyUnicode_Tailmatch(path, PyTuple_GET_ITEM(files, 1), 0, PY_SSIZE_T_MAX, -1)
                      == 1;
    }
    Py_DECREF(files);
    PyErr_Clear();
    return ours;
}

/* 1: the `import` event of the import statement before its find (an exact str name, no file
 * name) while both proxies of appshield's import layer are where `_remember_layer` found
 * them: the event `_on_import` lets through (hooks/imports `_import_statement_fast` and
 * `_layer_intact`). 0: ask the Python hook. */
static int
import_statement_allowed(PyObject *args)
{
    if (PyTuple_GET_SIZE(args) < 2 || !PyUnicode_CheckExact(PyTuple_GET_ITEM(args, 0))
        || PyTuple_GET_ITEM(args, 1) != Py_None || global_layer.dict == NULL) {
        return 0;
    }
    PyObject *intact = global_value(&global_layer);
    if (intact == NULL || !PyList_CheckExact(intact) || PyList_GET_SIZE(intact) != 2) {
        return 0;
    }
    Py_INCREF(intact);
    int allowed = 1;
    for (Py_ssize_t i = 0; i < 2 && allowed; i++) {
        PyObject *row = PyList_GET_ITEM(intact, i);
        if (!PyTuple_CheckExact(row) || PyTuple_GET_SIZE(row) != 3
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(row, 1))) {
            allowed = 0;
            break;
        }
        Py_INCREF(row);
        PyObject *owner = PyTuple_GET_ITEM(row, 0);
        /* A module's dict, or a class's (`vars()` of a class: a mappingproxy over it). Any
         * other mapping could run code: not read here. */
        PyObject *now = NULL;
        if (PyDict_CheckExact(owner)) {
            now = PyDict_GetItemWithError(owner, PyTuple_GET_ITEM(row, 1));
            Py_XINCREF(now);
        }
        else if (Py_TYPE(owner) == &PyDictProxy_Type) {
            now = PyObject_GetItem(owner, PyTuple_GET_ITEM(row, 1));
        }
        allowed = now != NULL && now == PyTuple_GET_ITEM(row, 2);
        Py_XDECREF(now);
        Py_DECREF(row);
    }
    PyErr_Clear();
    Py_DECREF(intact);
    return allowed;
}

/* The file events' checks before the Python hook: which path, under which flags. */
static int
file_event_allowed_again(Slot *slot, PyObject *args)
{
    Py_ssize_t count = PyTuple_GET_SIZE(args);
    PyObject *path = count > 0 ? PyTuple_GET_ITEM(args, 0) : Py_None;
    switch (slot->kind) {
    case OPEN_EVENT: {
        /* open(), io.FileIO (a str mode) or os.open (mode None, maybe relative to a dir_fd
         * the event does not carry). The flags are an int CPython computed. */
        if (count != 3 || !PyLong_CheckExact(PyTuple_GET_ITEM(args, 2))) {
            return 0;
        }
        if (!PyUnicode_CheckExact(path) && !PyBytes_CheckExact(path)) {
            return 0;
        }
        return allowed_again(path, PyTuple_GET_ITEM(args, 2), PyTuple_GET_ITEM(args, 1) != Py_None)
               || import_work_open(path);
    }
    case LISTING_EVENT:
        if (path == Py_None) {
            path = dot_text; /* os.listdir(): "." */
        }
        if (!PyUnicode_CheckExact(path) && !PyBytes_CheckExact(path)) {
            return 0;
        }
        return allowed_again(path, slot->operation, 1);
    case PATH_CHANGE_EVENT:
        /* A descriptor (an int) is `descriptor_repeat`'s, in Python; a relative path is never
         * remembered for these events (a dir_fd may anchor it). */
        if (!PyUnicode_CheckExact(path) && !PyBytes_CheckExact(path)) {
            return 0;
        }
        return allowed_again(path, slot->operation, 0);
    case SQLITE_EVENT:
        /* A bytes name (3.10's event) is decoded by the Python check: not answered here. */
        if (!PyUnicode_CheckExact(path)) {
            return 0;
        }
        return allowed_again(path, slot->operation, 1);
    }
    return 0;
}

/* The value of a socket's C field, read as its own member descriptor reads it, whatever a
 * subclass says (as hooks/network `raw_family`); NULL for a socket of another `_socket`
 * module's class. */
static PyObject *
socket_field(PyMemberDescrObject *field, PyObject *sock)
{
    if (!PyObject_TypeCheck(sock, PyDescr_TYPE(field))) {
        return NULL;
    }
    return PyMember_GetOne((const char *)sock, field->d_member);
}

/* time.monotonic(), computed as CPython computes it (the same clock, the same rounding). */
static double
monotonic_seconds(void)
{
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0) {
        return 0.0; /* never later than any expiry: no repeat is let through */
    }
    long long ns = (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
    return (double)ns / 1e9;
}

/* The last look-up that found something in one of the network memories' dicts, kept while
 * the dict keeps its version (`global_value` says why that is enough): a service connects
 * to the same address over and over, and hashing and comparing the key costs about 700
 * instructions of a connect's repeat, a tenth of the connect itself. */
typedef struct {
    PyObject *dict;  /* a strong reference: its address is never another dict's meanwhile */
    uint64_t version;
    PyObject *key;   /* a strong reference */
    PyObject *value; /* borrowed from `dict`, which holds it while `version` stands */
} Remembered;

static Remembered last_action, last_names, last_lookup;

/* `dict` still has the version it had when `remembered` was found in it. */
static int
still_remembered(Remembered *remembered, PyObject *dict)
{
    return versions_move && remembered->dict == dict && remembered->value != NULL
           && dict_version(dict) == remembered->version;
}

/* Keep `value`, found under `key` in `dict` when it had `version`; takes `key`. */
static void
remember(Remembered *remembered, PyObject *dict, uint64_t version, PyObject *key,
         PyObject *value)
{
    PyObject *old_dict = remembered->dict, *old_key = remembered->key;
    Py_INCREF(dict);
    remembered->dict = dict;
    remembered->version = version;
    remembered->key = key;
    remembered->value = value;
    /* Last: freeing the old ones may free a dict of tuples, which runs no Python code. */
    Py_XDECREF(old_key);
    Py_XDECREF(old_dict);
}

/* Two exact strs, bytes or ints of the same value (None is only itself): what the dict's
 * comparison of a key's item would say, where it says equal. */
static int
same_value(PyObject *a, PyObject *b)
{
    if (a == b) {
        return 1;
    }
    if (Py_TYPE(a) != Py_TYPE(b)) {
        return 0;
    }
    if (PyLong_CheckExact(a)) {
        long value_a, value_b;
        return int_value(a, &value_a) && int_value(b, &value_b) && value_a == value_b;
    }
    if (PyUnicode_CheckExact(a)) {
        int order = PyUnicode_Compare(a, b);
        if (order == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        return order == 0;
    }
    if (PyBytes_CheckExact(a)) {
        return PyBytes_GET_SIZE(a) == PyBytes_GET_SIZE(b)
               && memcmp(PyBytes_AS_STRING(a), PyBytes_AS_STRING(b), (size_t)PyBytes_GET_SIZE(a))
                      == 0;
    }
    return 0;
}

/* `key` (operation, family, type, (host, port)), as socket_action_allowed_again builds it,
 * equals the one these values would build: the dict would find the same entry. */
static int
same_action(PyObject *key, PyObject *operation, PyObject *family, PyObject *type,
            PyObject *address)
{
    PyObject *before = PyTuple_GET_ITEM(key, 3);
    return PyTuple_GET_ITEM(key, 0) == operation && same_value(PyTuple_GET_ITEM(key, 1), family)
           && same_value(PyTuple_GET_ITEM(key, 2), type)
           && same_value(PyTuple_GET_ITEM(before, 0), PyTuple_GET_ITEM(address, 0))
           && same_value(PyTuple_GET_ITEM(before, 1), PyTuple_GET_ITEM(address, 1));
}

/* 1: a repeat of a socket action the active policy allowed, to an exact (str, int) address
 * (hooks/network `_repeat_allowed`, for a policy without grants). 0: ask the Python hook. */
static int
socket_action_allowed_again(PyObject *operation, PyObject *args)
{
    if (allowed_actions == NULL || PyTuple_GET_SIZE(args) < 2) {
        return 0;
    }
    PyObject *sock = PyTuple_GET_ITEM(args, 0);
    PyObject *address = PyTuple_GET_ITEM(args, 1);
    if (!PyTuple_CheckExact(address) || PyTuple_GET_SIZE(address) != 2
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(address, 0))
        || !PyLong_CheckExact(PyTuple_GET_ITEM(address, 1))) {
        return 0;
    }
    if (Py_TYPE(allowed_actions) != allow_cache_type) {
        return 0;
    }
    int allowed = 0;
    PyObject *entries = NULL, *family = NULL, *type = NULL, *key = NULL, *hit = NULL,
             *names_entry = NULL;
    if (!memory_of_active_policy(allowed_actions, allow_owner_offset)) {
        goto done; /* no shield, another policy's entries, or grants (owner None) */
    }
    family = socket_field(socket_family, sock);
    type = family == NULL ? NULL : socket_field(socket_type, sock);
    if (type == NULL) {
        goto done;
    }
    entries = slot_value(allowed_actions, allow_entries_offset);
    if (entries == NULL || !PyDict_Check(entries)) {
        goto done;
    }
    if (still_remembered(&last_action, entries)
        && same_action(last_action.key, operation, family, type, address)) {
        hit = last_action.value;
    }
    else {
        uint64_t version = dict_version(entries); /* before: see `global_value` */
        key = PyTuple_Pack(4, operation, family, type, address);
        if (key == NULL) {
            goto done;
        }
        hit = PyDict_GetItemWithError(entries, key);
        if (hit != NULL) {
            remember(&last_action, entries, version, key, hit);
            key = NULL;
        }
    }
    if (hit == NULL || !PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 2) {
        hit = NULL;
        goto done;
    }
    Py_INCREF(hit);
    PyObject *base = PyTuple_GET_ITEM(hit, 0);
    PyObject *names_decided = PyTuple_GET_ITEM(hit, 1);
    if (Py_TYPE(base) != network_op_type || PyTuple_GET_SIZE(base) <= op_address_index) {
        goto done;
    }
    PyObject *resolved = PyTuple_GET_ITEM(base, op_address_index);
    /* The entry's own address object: the same object, the same answer. */
    if (still_remembered(&last_names, names_by_address) && last_names.key == resolved) {
        names_entry = last_names.value;
    }
    else {
        uint64_t version = dict_version(names_by_address);
        names_entry = PyDict_GetItemWithError(names_by_address, resolved);
        if (names_entry != NULL) {
            Py_INCREF(resolved);
            remember(&last_names, names_by_address, version, resolved, names_entry);
        }
    }
    if (names_entry == NULL) {
        if (PyErr_Occurred()) {
            goto done;
        }
        /* No name resolves to the address now: a repeat only if none did then. */
        allowed = PyTuple_CheckExact(names_decided) && PyTuple_GET_SIZE(names_decided) == 0;
        goto done;
    }
    Py_INCREF(names_entry);
    if (Py_TYPE(names_entry) != names_entry_type) {
        goto done;
    }
    PyObject *names_now = *(PyObject **)((char *)names_entry + names_offset);
    PyObject *soonest = *(PyObject **)((char *)names_entry + soonest_offset);
    allowed = names_now == names_decided && soonest != NULL && PyFloat_CheckExact(soonest)
              && PyFloat_AS_DOUBLE(soonest) > monotonic_seconds();
done:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(names_entry);
    Py_XDECREF(hit);
    Py_XDECREF(key);
    Py_XDECREF(entries);
    Py_XDECREF(type);
    Py_XDECREF(family);
    return allowed;
}

/* 1: a lookup the active policy's resolve memory holds, for an exact host and port
 * (hooks/network `_repeat_resolve`); with `address_only`, only one held as an address (an
 * entry of None: nothing about it is decided, nor remembered, by the wrapper either). 0: ask
 * Python. */
static int
remembered_lookup(PyObject *host, PyObject *port, int address_only)
{
    if (global_resolves.dict == NULL) {
        return 0;
    }
    if (!(PyUnicode_CheckExact(host) || PyBytes_CheckExact(host))
        || !(PyLong_CheckExact(port) || PyUnicode_CheckExact(port) || PyBytes_CheckExact(port)
             || port == Py_None)) {
        return 0;
    }
    PyObject *memory = global_value(&global_resolves);
    if (memory == NULL || Py_TYPE(memory) != resolves_type) {
        return 0;
    }
    int allowed = 0;
    PyObject *entries = NULL, *key = NULL;
    Py_INCREF(memory);
    if (!memory_of_active_policy(memory, resolves_key_offset)) {
        goto done;
    }
    entries = slot_value(memory, resolves_entries_offset);
    if (entries == NULL || !PyDict_CheckExact(entries)) {
        goto done;
    }
    if (still_remembered(&last_lookup, entries)
        && same_value(PyTuple_GET_ITEM(last_lookup.key, 0), host)
        && same_value(PyTuple_GET_ITEM(last_lookup.key, 1), port)) {
        allowed = !address_only || last_lookup.value == Py_None;
        goto done;
    }
    uint64_t version = dict_version(entries);
    key = PyTuple_Pack(2, host, port);
    if (key == NULL) {
        goto done;
    }
    PyObject *found = PyDict_GetItemWithError(entries, key);
    if (found != NULL) {
        allowed = !address_only || found == Py_None;
        remember(&last_lookup, entries, version, key, found);
        key = NULL;
    }
done:
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(key);
    Py_XDECREF(entries);
    Py_DECREF(memory);
    return allowed;
}

static int
lookup_allowed_again(PyObject *args)
{
    return PyTuple_GET_SIZE(args) >= 2
           && remembered_lookup(PyTuple_GET_ITEM(args, 0), PyTuple_GET_ITEM(args, 1), 0);
}

/* The wrapper of `_socket.getaddrinfo` (hooks/network `_getaddrinfo`), its hot path in C:
 * wrapt calls it as `wrapper(wrapped, instance, args, kwargs)`, and a lookup of an address
 * this policy's resolve memory holds, with exact positional values and no keywords, while
 * no event loop has a lookup pending for an executor thread (`_predecided._pending`, an
 * exact empty dict), is handed to C as the Python wrapper hands it (`wrapped(*args)`): the
 * same tests, in the same order of reading. Everything else, and everything before
 * `install` gave this file the memories, is the Python wrapper's (`self`, made by
 * `resolve_repeat`). */
static PyObject *predecided = NULL, *name_pending = NULL;

static PyObject *
resolve_repeat_call(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs == 4 && predecided != NULL && PyTuple_CheckExact(args[2])
        && PyTuple_GET_SIZE(args[2]) >= 2 && PyDict_CheckExact(args[3])
        && PyDict_GET_SIZE(args[3]) == 0) {
        PyObject *pending = PyObject_GetAttr(predecided, name_pending);
        if (pending == NULL) {
            PyErr_Clear();
        }
        else {
            int none_pending = PyDict_CheckExact(pending) && PyDict_GET_SIZE(pending) == 0;
            Py_DECREF(pending);
            if (none_pending
                && remembered_lookup(PyTuple_GET_ITEM(args[2], 0), PyTuple_GET_ITEM(args[2], 1),
                                     1)) {
                return PyObject_Call(args[0], args[2], NULL);
            }
        }
    }
    return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
}

static PyMethodDef resolve_repeat_def = {
    "getaddrinfo_wrapper", (PyCFunction)(void (*)(void))resolve_repeat_call, METH_FASTCALL,
    "appshield's wrapper of _socket.getaddrinfo: a remembered address in C, the rest in "
    "Python (appshield/_c_audit_hook.c `resolve_repeat_call`).",
};

/* `resolve_repeat(wrapper)`: the wrapper above, falling back to the Python `wrapper`. */
static PyObject *
resolve_repeat(PyObject *module, PyObject *wrapper)
{
    if (!PyCallable_Check(wrapper)) {
        PyErr_SetString(PyExc_TypeError, "resolve_repeat(wrapper): a callable");
        return NULL;
    }
    return PyCFunction_NewEx(&resolve_repeat_def, wrapper, module);
}

/* Program starts (hooks/process): the commonest start there is, `subprocess.run(["prog",
 * ...])` of a program started before, answered here as `_popen_allowed` answers it, and the
 * fork_exec call subprocess makes next handed the judged file as `_judged_fork_exec` hands
 * it. The same memory (the describer's `_described`), the same re-proof of the PATH search
 * with the same system calls (`_still_found`, `_still_true`), the same decision, asked every
 * time (`Shield.decide`, a Python call); only the Python around them is saved, about two
 * thirds of what the shield added to a start. All of it is read where Python keeps it: the
 * describer's and the argument readers' globals are found through the functions hooks/process
 * binds once its deferred part is loaded (`remembered_start`, `inherited_exec_path`); while
 * they are stand-ins, nothing here answers. NULL until `install` is given the parts. */
static Global global_compiled_of, global_startup_path, global_remembered_start,
    global_inherited_path, global_environ;
static PyTypeObject *environ_type = NULL, *decision_type = NULL;
static PyObject *modules = NULL; /* sys.modules, where the describer looks for the activation */
static PyObject *name_busy, *name_policy, *name_described, *name_environ_path, *name_data,
    *name_activation_module, *name_activation, *name_unshielded, *name_decide, *name_allow,
    *path_key;
static Py_ssize_t preexec_index = -1;

/* The start this hook answered last, for the fork_exec call that follows it on the same
 * thread (hooks/process `_Mark` and `_PopenStart`, for this case): the items of the judged
 * argv, the judged candidate (`index`, `launch`), and what the child is handed instead
 * (`path`, `folder`). One for the process: a start on another thread meanwhile replaces it,
 * and that thread's fork_exec then goes the Python way, which judges it again. */
typedef struct {
    PyThreadState *thread; /* NULL: no mark */
    pid_t pid;
    /* strong references: the operation, the policy it was decided under, the program object
     * and argv items of the event, the judged candidate, the judged file and folder, its
     * identity */
    PyObject *op, *compiled, *program, *items, *launch, *path, *folder, *identity;
    Py_ssize_t index;
} SpawnMark;

static SpawnMark spawn_mark;

static void
forget_spawn(void)
{
    PyObject *op = spawn_mark.op, *compiled = spawn_mark.compiled, *items = spawn_mark.items,
             *launch = spawn_mark.launch, *path = spawn_mark.path, *folder = spawn_mark.folder,
             *program = spawn_mark.program, *identity = spawn_mark.identity;
    spawn_mark.thread = NULL;
    spawn_mark.op = spawn_mark.compiled = spawn_mark.items = spawn_mark.launch =
        spawn_mark.path = spawn_mark.folder = spawn_mark.program = spawn_mark.identity = NULL;
    /* Last, with the mark already empty: code that freeing may run (a finalizer of an old
     * policy, say) finds no mark. */
    Py_XDECREF(op);
    Py_XDECREF(program);
    Py_XDECREF(identity);
    Py_XDECREF(compiled);
    Py_XDECREF(items);
    Py_XDECREF(launch);
    Py_XDECREF(path);
    Py_XDECREF(folder);
}

/* A tracer or a profiler could watch or rewrite what is checked: `_popen_allowed` and
 * `_wrap_fork_exec` then take the gate's way (sys.gettrace() and sys.getprofile() are None
 * exactly when these are NULL, or a C-level tool set them: more cautious still). */
static int
watched(PyThreadState *ts)
{
    return ts->c_tracefunc != NULL || ts->c_profilefunc != NULL;
}

/* This thread is inside appshield's own work (`thread_state.busy`, False when it is not):
 * hooks/process leaves such a start to the gate. Any other value, or a failed read, is 1. */
static int
busy_now(void)
{
    PyObject *busy = PyObject_GetAttr(thread_state, name_busy);
    if (busy == NULL) {
        PyErr_Clear();
        return 1;
    }
    Py_DECREF(busy);
    return busy != Py_False;
}

/* The operation's `unshielded` (`op[5]`, a bool) is what asking again now says, as
 * `_still_true` and `_judged_fork_exec` ask it: without a call when no shield came in
 * through the environment (`appshield.activation` not imported, or its `_activation` None:
 * then no child is unshielded, and `op[5]` must be False), else through the describer's own
 * `unshielded(argv, None, executable, cwd)`, which reads the environment the child will
 * inherit. 1: the same; 0: not, or no answer (an Exception, cleared: the Python way asks);
 * -1: what is not an Exception (a signal handler's KeyboardInterrupt), left set. */
static int
unshielded_as_judged(PyThreadState *ts, PyObject *describer, PyObject *op, PyObject *cwd)
{
    PyObject *judged = PyTuple_GET_ITEM(op, 5);
    if (!PyBool_Check(judged)) {
        return 0;
    }
    PyObject *module = PyDict_GetItemWithError(modules, name_activation_module);
    if (module == NULL) {
        int failed = PyErr_Occurred() != NULL;
        PyErr_Clear();
        return !failed && judged == Py_False;
    }
    if (!PyModule_CheckExact(module)) {
        return 0;
    }
    PyObject *parent = PyDict_GetItemWithError(PyModule_GetDict(module), name_activation);
    if (parent == NULL) {
        PyErr_Clear(); /* no `_activation`: the Python way's AttributeError, a "no" */
        return 0;
    }
    if (parent == Py_None) {
        return judged == Py_False;
    }
    PyObject *check = PyDict_GetItemWithError(describer, name_unshielded);
    if (check == NULL || !PyFunction_Check(check)) {
        PyErr_Clear();
        return 0;
    }
    PyObject *call[4] = {PyTuple_GET_ITEM(op, 1), Py_None, PyTuple_GET_ITEM(op, 0), cwd};
    Py_INCREF(check);
    Py_INCREF(op);
    Py_INCREF(cwd);
    pause_tracing(ts);
    PyObject *answer = PyObject_Vectorcall(check, call, 4, NULL);
    resume_tracing(ts);
    Py_DECREF(cwd);
    Py_DECREF(op);
    Py_DECREF(check);
    if (answer == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        PyErr_Clear();
        return 0;
    }
    int same = answer == judged; /* bools: the same object when equal */
    Py_DECREF(answer);
    return same;
}

/* The globals of the plain function `global` names (borrowed), or NULL: a stand-in of
 * hooks/_deferred has its own module's globals, where the names asked for are not. */
static PyObject *
function_globals(Global *global)
{
    PyObject *function = global_value(global);
    if (function == NULL || !PyFunction_Check(function)) {
        return NULL;
    }
    return PyFunction_GET_GLOBALS(function);
}

/* `inherited_exec_path()` (hooks/process/convert) when it would hand back the entries it
 * keeps (`_environ_path`, `seen`): os.environ the standard mapping, and the PATH it holds
 * the very object split last. Borrowed from `pair`, or NULL: the Python way splits again. */
static PyObject *
inherited_entries(PyObject *pair)
{
    PyObject *environ = global_value(&global_environ);
    if (environ == NULL || Py_TYPE(environ) != environ_type || !PyTuple_CheckExact(pair)
        || PyTuple_GET_SIZE(pair) != 2) {
        return NULL;
    }
    PyObject *entries = NULL;
    PyObject *data = plain_attribute(environ, name_data); /* `environ.__dict__.get("_data")` */
    if (data != NULL && PyDict_CheckExact(data)) {
        PyObject *value = PyDict_GetItemWithError(data, path_key);
        if (value == NULL && !PyErr_Occurred()) {
            value = Py_None; /* no PATH: kept as None, split from os.defpath */
        }
        if (value != NULL && value == PyTuple_GET_ITEM(pair, 0)) {
            entries = PyTuple_GET_ITEM(pair, 1);
        }
    }
    PyErr_Clear();
    Py_XDECREF(data);
    return entries;
}

/* `bytes` as a C path: an exact bytes object without a NUL byte (os.access and os.stat
 * refuse those with ValueError, which the Python check answers with "no"). NULL otherwise. */
static const char *
plain_path(PyObject *bytes)
{
    if (!PyBytes_CheckExact(bytes)) {
        return NULL;
    }
    const char *text = PyBytes_AS_STRING(bytes);
    return (Py_ssize_t)strlen(text) == PyBytes_GET_SIZE(bytes) ? text : NULL;
}

#define MOST_MISSES 64

/* What `_still_found` and the trusted-location half of `_still_true` ask, with the same
 * system calls in the same order, run without the GIL: the earlier candidates still not
 * runnable files, the found one still a runnable regular file (its identity compared by the
 * caller from `*found`), and whether its folder is one this process cannot write (`folder`
 * NULL: the folder was on the start-up PATH, trusted without asking). 1 when all of the
 * search still holds, with `*untrusted_folder` set; 0 when it does not. */
static int
search_still_holds(const char **misses, Py_ssize_t count, const char *path, struct stat *found,
                   const char *folder, int *writable_folder)
{
    struct stat info;
    for (Py_ssize_t i = 0; i < count; i++) {
        if (access(misses[i], X_OK) == 0 && stat(misses[i], &info) == 0
            && S_ISREG(info.st_mode)) {
            return 0;
        }
    }
    if (stat(path, found) != 0 || !S_ISREG(found->st_mode) || access(path, X_OK) != 0) {
        return 0;
    }
    *writable_folder = folder != NULL && access(folder, W_OK) == 0;
    return 1;
}

/* 1: a `subprocess.Popen` event of an exact str program with a list of exact str arguments,
 * this process's environment and working folder, remembered by the describer and proved
 * again, that the active policy's own decider allows now; the start is marked for the
 * fork_exec call that follows (`spawn_mark`). 0: ask the Python hook (which asks
 * `_popen_allowed` again, and then the gate). -1: the decision raised what is not an
 * Exception (a signal handler's KeyboardInterrupt): the event's exception, as in Python. */
static int
popen_allowed(PyThreadState *ts, PyObject *event, PyObject *args)
{
    if (preexec_index < 0 || PyTuple_GET_SIZE(args) != 4 || watched(ts)) {
        return 0;
    }
    PyObject *executable = PyTuple_GET_ITEM(args, 0), *argv = PyTuple_GET_ITEM(args, 1);
    if (!PyUnicode_CheckExact(executable) || !PyList_CheckExact(argv)
        || PyTuple_GET_ITEM(args, 2) != Py_None || PyTuple_GET_ITEM(args, 3) != Py_None) {
        return 0;
    }
    PyObject *active = global_value(&global_shield);
    if (active == NULL || Py_TYPE(active) != shield_type || busy_now()) {
        return 0;
    }
    int allowed = 0;
    PyObject *compiled = NULL, *policy = NULL, *described = NULL, *entries = NULL,
             *items = NULL, *here = NULL, *key = NULL, *hit = NULL, *decision = NULL;
    Py_INCREF(active);
    compiled = slot_value(active, compiled_offset);
    policy = compiled == NULL ? NULL : PyObject_GetAttr(active, name_policy);
    if (policy == NULL) {
        goto done;
    }
    /* The policy's own decider, nothing around it (`_own_compiled`'s remembered pair: a
     * shadow candidate, a recorder or grants are decided through the gate). */
    PyObject *known = global_value(&global_compiled_of);
    if (known == NULL || !PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 2
        || PyTuple_GET_ITEM(known, 0) != policy || PyTuple_GET_ITEM(known, 1) != compiled) {
        goto done;
    }
    PyObject *describer = function_globals(&global_remembered_start);
    PyObject *converter = function_globals(&global_inherited_path);
    if (describer == NULL || converter == NULL) {
        goto done;
    }
    described = PyDict_GetItemWithError(describer, name_described);
    PyObject *pair = PyDict_GetItemWithError(converter, name_environ_path);
    if (described == NULL || !PyDict_CheckExact(described) || pair == NULL) {
        described = NULL;
        goto done;
    }
    Py_INCREF(described);
    /* A program named with a slash is not searched for: remembered with no entries (None,
     * `describe_start`); a bare name with PATH's as the child inherits them. */
    Py_ssize_t slash =
        PyUnicode_FindChar(executable, '/', 0, PyUnicode_GET_LENGTH(executable), 1);
    if (slash == -2) {
        goto done;
    }
    Py_INCREF(pair);
    entries = slash >= 0 ? Py_None : inherited_entries(pair);
    Py_XINCREF(entries);
    Py_DECREF(pair);
    if (entries == NULL) {
        goto done;
    }
    items = PyList_AsTuple(argv);
    if (items == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(items); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(items, i))) {
            goto done;
        }
    }
    char folder_now[4096];
    if (getcwd(folder_now, sizeof folder_now) == NULL) {
        goto done; /* too long for the buffer, or gone: os.getcwd's answer is the Python way's */
    }
    here = PyUnicode_DecodeFSDefault(folder_now); /* as os.getcwd() decodes it */
    key = here == NULL ? NULL : PyTuple_Pack(3, executable, items, here);
    if (key == NULL) {
        goto done;
    }
    /* Exact str, a tuple of them, exact str: the look-up runs no code of anyone's. */
    hit = PyDict_GetItemWithError(described, key);
    Py_XINCREF(hit);
    if (hit == NULL || !PyTuple_CheckExact(hit) || PyTuple_GET_SIZE(hit) != 4
        || PyTuple_GET_ITEM(hit, 0) != entries
        || PyTuple_GET_ITEM(hit, 1) != global_value(&global_startup_path)) {
        goto done;
    }
    /* _Found (misses, found, identity, resolved, folder, on_startup_path, ...), Start (op,
     * path, folder, index, launch, encoded, identity), ProcessOp (..., trusted_location at
     * 4, unshielded at 5): read by position, as the Python check reads them. */
    PyObject *found = PyTuple_GET_ITEM(hit, 2), *start = PyTuple_GET_ITEM(hit, 3);
    if (!PyTuple_Check(found) || PyTuple_GET_SIZE(found) != 10 || !PyTuple_Check(start)
        || PyTuple_GET_SIZE(start) != 7) {
        goto done;
    }
    PyObject *op = PyTuple_GET_ITEM(start, 0), *identity = PyTuple_GET_ITEM(found, 2),
             *misses = PyTuple_GET_ITEM(found, 0), *folder = PyTuple_GET_ITEM(found, 4),
             *on_startup_path = PyTuple_GET_ITEM(found, 5);
    if (!PyTuple_Check(op) || PyTuple_GET_SIZE(op) < 6 || !PyBool_Check(PyTuple_GET_ITEM(op, 4))
        || !PyTuple_CheckExact(identity) || PyTuple_GET_SIZE(identity) != 3
        || !PyTuple_CheckExact(misses)
        || PyTuple_GET_SIZE(misses) > MOST_MISSES || !PyUnicode_CheckExact(folder)
        || !PyBool_Check(on_startup_path) || PyTuple_GET_ITEM(start, 6) == Py_None
        || !PyLong_CheckExact(PyTuple_GET_ITEM(start, 3))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(start, 4))
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(start, 5))) {
        goto done;
    }
    const char *miss_paths[MOST_MISSES];
    Py_ssize_t miss_count = PyTuple_GET_SIZE(misses);
    for (Py_ssize_t i = 0; i < miss_count; i++) {
        if ((miss_paths[i] = plain_path(PyTuple_GET_ITEM(misses, i))) == NULL) {
            goto done;
        }
    }
    const char *path = plain_path(PyTuple_GET_ITEM(found, 1));
    const char *folder_path = NULL;
    if (on_startup_path == Py_False) {
        Py_ssize_t size;
        folder_path = utf8_file_names ? PyUnicode_AsUTF8AndSize(folder, &size) : NULL;
        if (folder_path == NULL || (Py_ssize_t)strlen(folder_path) != size) {
            goto done; /* not the file system's bytes as written here: the Python way */
        }
    }
    if (path == NULL) {
        goto done;
    }
    struct stat info;
    int holds, writable_folder = 0;
    /* `hit` holds the tuples, and they the bytes and the str read above, while the GIL is
     * let go (another thread may clear the memory meanwhile). */
    Py_BEGIN_ALLOW_THREADS
    holds = search_still_holds(miss_paths, miss_count, path, &info, folder_path,
                               &writable_folder);
    Py_END_ALLOW_THREADS
    if (!holds) {
        goto done;
    }
    long long changed_ns = (long long)info.st_ctim.tv_sec * 1000000000LL + info.st_ctim.tv_nsec;
    if (!same_number(PyTuple_GET_ITEM(identity, 0), (unsigned long long)info.st_dev)
        || !same_number(PyTuple_GET_ITEM(identity, 1), (unsigned long long)info.st_ino)
        || !same_number(PyTuple_GET_ITEM(identity, 2), (unsigned long long)changed_ns)
        || (on_startup_path == Py_True || !writable_folder)
               != (PyTuple_GET_ITEM(op, 4) == Py_True)) {
        goto done;
    }
    Py_ssize_t index = PyLong_AsSsize_t(PyTuple_GET_ITEM(start, 3));
    if (index < 0) {
        goto done;
    }
    /* `hit` holds `op` while the describer's check runs Python code. */
    if ((allowed = unshielded_as_judged(ts, describer, op, here)) != 1) {
        goto done;
    }
    allowed = 0;
    /* The decision, asked every time, as the Python hook asks it (tracing paused around it,
     * as around the Python hook). */
    PyObject *call[3] = {active, op, event};
    pause_tracing(ts);
    decision = PyObject_VectorcallMethod(name_decide, call, 3, NULL);
    resume_tracing(ts);
    if (decision == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            allowed = -1; /* left set: the event raises it */
        }
        goto done; /* an Exception: cleared below, and the Python way decides again */
    }
    if (Py_TYPE(decision) != decision_type || PyTuple_GET_SIZE(decision) < 1
        || !PyUnicode_CheckExact(PyTuple_GET_ITEM(decision, 0))
        || PyUnicode_Compare(PyTuple_GET_ITEM(decision, 0), name_allow) != 0) {
        goto done;
    }
    forget_spawn();
    spawn_mark.pid = getpid();
    spawn_mark.index = index;
    spawn_mark.compiled = compiled;
    compiled = NULL;
    spawn_mark.op = op;
    Py_INCREF(op);
    spawn_mark.program = executable;
    Py_INCREF(executable);
    spawn_mark.identity = PyTuple_GET_ITEM(start, 6);
    Py_INCREF(spawn_mark.identity);
    spawn_mark.items = items;
    items = NULL;
    spawn_mark.launch = PyTuple_GET_ITEM(start, 4);
    spawn_mark.path = PyTuple_GET_ITEM(start, 5);
    spawn_mark.folder = PyTuple_GET_ITEM(start, 2);
    Py_INCREF(spawn_mark.launch);
    Py_INCREF(spawn_mark.path);
    Py_INCREF(spawn_mark.folder);
    spawn_mark.thread = ts;
    allowed = 1;
done:
    if (allowed >= 0 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    Py_XDECREF(decision);
    Py_XDECREF(hit);
    Py_XDECREF(key);
    Py_XDECREF(here);
    Py_XDECREF(items);
    Py_XDECREF(entries);
    Py_XDECREF(described);
    Py_XDECREF(policy);
    Py_XDECREF(compiled);
    Py_DECREF(active);
    return allowed;
}

/* subprocess's fork_exec call for the start `popen_allowed` just answered on this thread, in
 * subprocess's own form: `_judged_fork_exec`'s tests (argv the same list of the very item
 * objects, the judged candidate where the event found it, no cwd, no env list, no
 * preexec_fn, no keywords, the same policy, the same process, nobody watching, not in
 * appshield's own work, the child's `unshielded` the same). 1 with the call made and its
 * result (or NULL and its exception) in `*result`; 0 when any of it does not hold. */
static int
judged_spawn_call(PyThreadState *ts, PyObject *const *args, PyObject **result)
{
    PyObject *call = args[2], *keywords = args[3];
    if (!PyTuple_CheckExact(call) || PyTuple_GET_SIZE(call) < 6 || !PyDict_CheckExact(keywords)
        || PyDict_GET_SIZE(keywords) != 0 || watched(ts)
        || (PyTuple_GET_SIZE(call) > preexec_index
            && PyTuple_GET_ITEM(call, preexec_index) != Py_None)) {
        return 0;
    }
    /* The environment the child inherits may have changed since the event: `unshielded`
     * asked again (with the operation's cwd, as `_judged_fork_exec` asks it). It may run
     * Python code, so it comes first: everything else is read after it. */
    PyObject *describer = function_globals(&global_remembered_start);
    PyObject *op = spawn_mark.op;
    if (describer == NULL || op == NULL) {
        return 0;
    }
    Py_INCREF(op);
    int same = unshielded_as_judged(ts, describer, op, PyTuple_GET_ITEM(op, 3));
    int still_marked = spawn_mark.op == op && spawn_mark.thread == ts;
    Py_DECREF(op);
    if (same < 0) {
        *result = NULL; /* the exception is the call's, as in Python */
        return 1;
    }
    if (same == 0 || !still_marked) {
        return 0;
    }
    PyObject *active = global_value(&global_shield);
    if (active == NULL || Py_TYPE(active) != shield_type
        || *(PyObject **)((char *)active + compiled_offset) != spawn_mark.compiled
        || busy_now() || spawn_mark.pid != getpid()) {
        return 0;
    }
    PyObject *argv = PyTuple_GET_ITEM(call, 0), *candidates = PyTuple_GET_ITEM(call, 1);
    PyObject *items = spawn_mark.items;
    Py_ssize_t count = PyTuple_GET_SIZE(items);
    if (!PyList_CheckExact(argv) || PyList_GET_SIZE(argv) != count
        || !PyTuple_CheckExact(candidates) || PyTuple_GET_SIZE(candidates) <= spawn_mark.index
        || PyTuple_GET_ITEM(call, 4) != Py_None || PyTuple_GET_ITEM(call, 5) != Py_None) {
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (PyList_GET_ITEM(argv, i) != PyTuple_GET_ITEM(items, i)) {
            return 0;
        }
    }
    PyObject *candidate = PyTuple_GET_ITEM(candidates, spawn_mark.index);
    if (!PyBytes_CheckExact(candidate) || !same_value(candidate, spawn_mark.launch)) {
        return 0;
    }
    /* (items, (path,), close_fds, pass_fds, folder, None, the rest as given) */
    Py_ssize_t size = PyTuple_GET_SIZE(call);
    PyObject *converted = PyTuple_New(size);
    PyObject *paths = converted == NULL ? NULL : PyTuple_Pack(1, spawn_mark.path);
    if (paths == NULL) {
        Py_XDECREF(converted);
        PyErr_Clear();
        return 0;
    }
    Py_INCREF(items);
    PyTuple_SET_ITEM(converted, 0, items);
    PyTuple_SET_ITEM(converted, 1, paths);
    Py_INCREF(spawn_mark.folder);
    PyTuple_SET_ITEM(converted, 4, spawn_mark.folder);
    Py_INCREF(Py_None);
    PyTuple_SET_ITEM(converted, 5, Py_None);
    for (Py_ssize_t i = 2; i < size; i++) {
        if (i == 4 || i == 5) {
            continue;
        }
        PyObject *item = PyTuple_GET_ITEM(call, i);
        Py_INCREF(item);
        PyTuple_SET_ITEM(converted, i, item);
    }
    forget_spawn();
    *result = PyObject_Call(args[0], converted, NULL);
    Py_DECREF(converted);
    return 1;
}

/* The wrapper of `_posixsubprocess.fork_exec` (hooks/process `_wrap_fork_exec`), wrapt's
 * `wrapper(wrapped, instance, args, kwargs)`: the start this hook judged, in C; everything
 * else, and everything before `install`, the Python wrapper's (`self`, made by
 * `spawn_repeat`), which judges it through its own mark or the gate. */
static PyObject *
spawn_repeat_call(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    PyThreadState *ts = current_thread_state();
    if (nargs == 4 && spawn_mark.thread != NULL && spawn_mark.thread == ts) {
        PyObject *result = NULL;
        if (judged_spawn_call(ts, args, &result)) {
            return result;
        }
        forget_spawn(); /* this thread's start was not this call: judged the Python way */
    }
    return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
}

/* `taken_spawn_mark()`: the start this hook marked on this thread, handed over and forgotten
 * here, as (op, pid, compiled, program, items, index, launch, path, folder, identity); None
 * when there is none. subprocess hands some starts to posix_spawn instead of fork_exec (3.13
 * does, for a program named with a path, where the C library can close descriptors itself):
 * hooks/process `_judged_posix_spawn` takes it as its own mark. */
static PyObject *
taken_spawn_mark(PyObject *module, PyObject *unused)
{
    (void)module;
    (void)unused;
    if (spawn_mark.thread == NULL || spawn_mark.thread != current_thread_state()) {
        Py_RETURN_NONE;
    }
    PyObject *taken = Py_BuildValue("(OlOOOnOOOO)", spawn_mark.op, (long)spawn_mark.pid,
                                    spawn_mark.compiled, spawn_mark.program, spawn_mark.items,
                                    spawn_mark.index, spawn_mark.launch, spawn_mark.path,
                                    spawn_mark.folder, spawn_mark.identity);
    forget_spawn();
    return taken;
}

static PyMethodDef spawn_repeat_def = {
    "fork_exec_wrapper", (PyCFunction)(void (*)(void))spawn_repeat_call, METH_FASTCALL,
    "appshield's wrapper of _posixsubprocess.fork_exec: the start the compiled audit hook "
    "judged in C, the rest in Python (appshield/_c_audit_hook.c `spawn_repeat_call`).",
};

/* `spawn_repeat(wrapper)`: the wrapper above, falling back to the Python `wrapper`. */
static PyObject *
spawn_repeat(PyObject *module, PyObject *wrapper)
{
    if (!PyCallable_Check(wrapper)) {
        PyErr_SetString(PyExc_TypeError, "spawn_repeat(wrapper): a callable");
        return NULL;
    }
    return PyCFunction_NewEx(&spawn_repeat_def, wrapper, module);
}

/* The import layer's wrappers (hooks/imports), their usual case in C. A first import of a
 * source module passes three wrapt layers: `_bootstrap._load_unlocked` (which judges the
 * spec), the loader's `exec_module` (which finds the spec just judged, `_judged.last`) and
 * `SourceLoader.get_code` (which marks the module's own files as the import system's work,
 * `thread_state.importing`). Each wrapper's Python frame and calls were about a third of what
 * the shield added to a first import. Each front below takes its wrapper's usual case, for
 * the import system's own objects only (an exact ModuleSpec whose `has_location` is
 * importlib's own, an exact module, a loader of one of importlib's file loader classes,
 * their attributes read where `getattr` would find them and only when no class attribute
 * could answer instead), and hands every other call, untouched, to the Python wrapper
 * (`self`). The judging itself stays the Python `_judge`'s. NULL until `install` is given
 * the parts. */
static int import_fronts_ready = 0;
static Global global_judge, global_judged, global_waiting, global_loaded, global_scope_code,
    global_patch_loaded;
static PyTypeObject *module_spec_type = NULL;
static PyObject *has_location_property = NULL, *loader_types = NULL, *module_suffixes = NULL;
static PyObject *name_origin, *name_set_fileattr, *name_has_location, *name_path, *name_dunder_spec,
    *name_dunder_name, *name_name, *name_last, *name_recording, *name_attributing, *api_import,
    *name_wanted_tops, *pycache_text;
static Global global_cache_prefix;

/* hooks/imports `_spec_origin(spec)` for an exact ModuleSpec with importlib's own
 * `has_location`: 1 and a new reference (the origin, or None) in `*origin`; 0 when the spec
 * is any other object (the Python wrapper reads it). */
static int
spec_origin(PyObject *spec, PyObject **origin)
{
    if (Py_TYPE(spec) != module_spec_type
        || _PyType_Lookup(module_spec_type, name_has_location) != has_location_property) {
        return 0;
    }
    PyObject *raw = plain_attribute(spec, name_origin);
    PyObject *located = raw == NULL ? NULL : plain_attribute(spec, name_set_fileattr);
    int known = located != NULL && PyBool_Check(located)
                && (PyUnicode_CheckExact(raw) || !PyUnicode_Check(raw));
    if (known) {
        *origin = PyUnicode_CheckExact(raw) && located == Py_True ? raw : Py_None;
        Py_INCREF(*origin);
    }
    Py_XDECREF(located);
    Py_XDECREF(raw);
    return known;
}

/* The live object a weak reference names (a new reference), or NULL. */
static PyObject *
referent(PyObject *ref)
{
    if (!PyWeakref_CheckRefExact(ref)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *object = NULL;
    if (PyWeakref_GetRef(ref, &object) <= 0) {
        PyErr_Clear();
        return NULL;
    }
    return object;
#else
    PyObject *object = PyWeakref_GET_OBJECT(ref);
    if (object == Py_None) {
        return NULL;
    }
    Py_INCREF(object);
    return object;
#endif
}

/* `_judged.last` (weak reference, origin) as a new reference, or NULL. */
static PyObject *
judged_last(void)
{
    PyObject *judged = global_value(&global_judged);
    if (judged == NULL) {
        return NULL;
    }
    PyObject *last = plain_attribute(judged, name_last);
    if (last != NULL && (!PyTuple_CheckExact(last) || PyTuple_GET_SIZE(last) != 2)) {
        Py_CLEAR(last);
    }
    return last;
}

/* The import just judged was `spec` loaded from the exact str `path`: `_judged.last` names
 * that very spec, and that file by an exact str equal to `path`. */
static int
judged_last_is(PyObject *spec, PyObject *path)
{
    PyObject *last = judged_last();
    if (last == NULL) {
        return 0;
    }
    PyObject *judged = referent(PyTuple_GET_ITEM(last, 0));
    int same = judged == spec && PyUnicode_CheckExact(PyTuple_GET_ITEM(last, 1))
               && same_value(PyTuple_GET_ITEM(last, 1), path);
    Py_XDECREF(judged);
    Py_DECREF(last);
    return same;
}

/* The module file a loader of one of importlib's file loader classes reads (its `path`, a
 * non-empty exact str): a new reference, or NULL. */
static PyObject *
loader_file(PyObject *loader)
{
    int ours = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(loader_types); i++) {
        ours = ours || (PyObject *)Py_TYPE(loader) == PyTuple_GET_ITEM(loader_types, i);
    }
    PyObject *path = ours ? plain_attribute(loader, name_path) : NULL;
    if (path != NULL && (!PyUnicode_CheckExact(path) || PyUnicode_GET_LENGTH(path) == 0)) {
        Py_CLEAR(path);
    }
    return path;
}

/* After a module ran: the patch points waiting for the module `name` are applied (`loaded`),
 * as the Python wrappers apply them. 0, or -1 with the exception `loaded` raised. */
static int
apply_waiting(PyObject *name, PyObject *module)
{
    PyObject *waiting = global_value(&global_waiting);
    if (waiting == NULL || !PyDict_CheckExact(waiting) || name == NULL
        || !PyUnicode_CheckExact(name)) {
        return 0;
    }
    int found = PyDict_Contains(waiting, name);
    if (found <= 0) {
        return found;
    }
    PyObject *apply = global_value(&global_loaded);
    if (apply == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "appshield: hooks/imports lost `loaded`");
        return -1;
    }
    PyObject *call[2] = {name, module};
    Py_INCREF(apply);
    PyObject *done = PyObject_Vectorcall(apply, call, 2, NULL);
    Py_DECREF(apply);
    Py_XDECREF(done);
    return done == NULL ? -1 : 0;
}

/* Patch points wait for some module (`_waiting` not empty): the tail of each wrapper asks. */
static int
anything_waiting(void)
{
    PyObject *waiting = global_value(&global_waiting);
    return waiting != NULL && (!PyDict_CheckExact(waiting) || PyDict_GET_SIZE(waiting) != 0);
}

/* wrapt's call of a wrapper with one positional argument and no keywords: the argument. */
static PyObject *
only_argument(PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4 || !PyTuple_CheckExact(args[2]) || PyTuple_GET_SIZE(args[2]) != 1
        || !PyDict_CheckExact(args[3]) || PyDict_GET_SIZE(args[3]) != 0) {
        return NULL;
    }
    return PyTuple_GET_ITEM(args[2], 0);
}

/* hooks/imports `_judge(spec, origin, "import")` for its commonest case, answered without the
 * Python call: an import no rule could name (the index's screen, `quiet`), of an exact
 * ModuleSpec with an exact str name, from an exact str origin spelled as `normalize` would
 * leave it, whose file agrees with the name (`a/b/c.py` or `a/b/c/__init__.py` for
 * `a.b.c`), while a shield is active, this thread is not in appshield's own work and
 * appshield imports nothing of its own on it: then the spec is remembered as the last one
 * judged (`_judged.remember_last`), as `_judge` remembers it. The spec judged last for the
 * same origin is answered too (`_judged.has`'s first test). 1: answered; 0: anything else
 * (the Python `_judge` decides it, from the start); -1: `quiet` raised, and the exception
 * went through `_gate.fail_closed` (reported, and raised again), as in `_judge`. */
static Global global_screen, global_fail_closed;
static PyObject *name_quiet, *name_own_imports;

/* `path` ends with `"/" + name.replace(".", "/") + suffix` (`suffix` ASCII). */
static int
file_names_module(PyObject *path, PyObject *name, const char *suffix)
{
    Py_ssize_t suffix_length = (Py_ssize_t)strlen(suffix);
    Py_ssize_t name_length = PyUnicode_GET_LENGTH(name);
    Py_ssize_t path_length = PyUnicode_GET_LENGTH(path);
    Py_ssize_t start = path_length - suffix_length - name_length - 1;
    if (start < 0) {
        return 0;
    }
    int path_kind = PyUnicode_KIND(path), name_kind = PyUnicode_KIND(name);
    const void *path_data = PyUnicode_DATA(path), *name_data = PyUnicode_DATA(name);
    if (PyUnicode_READ(path_kind, path_data, start) != '/') {
        return 0;
    }
    for (Py_ssize_t i = 0; i < name_length; i++) {
        Py_UCS4 wanted = PyUnicode_READ(name_kind, name_data, i);
        Py_UCS4 found = PyUnicode_READ(path_kind, path_data, start + 1 + i);
        if (found != (wanted == '.' ? '/' : wanted)) {
            return 0;
        }
    }
    for (Py_ssize_t i = 0; i < suffix_length; i++) {
        if (PyUnicode_READ(path_kind, path_data, start + 1 + name_length + i)
            != (Py_UCS4)(unsigned char)suffix[i]) {
            return 0;
        }
    }
    return 1;
}

/* An absolute str path with no `.`, `..` or empty part (`normalize.is_normal_path`, as
 * `_judge` tests it inline). */
static int
plain_absolute(PyObject *path)
{
    Py_ssize_t length = PyUnicode_GET_LENGTH(path);
    if (length == 0 || PyUnicode_READ_CHAR(path, 0) != '/'
        || PyUnicode_READ_CHAR(path, length - 1) == '/') {
        return 0;
    }
    /* Each part between slashes: not empty, not "." nor "..". */
    Py_ssize_t part_start = 1;
    for (Py_ssize_t i = 1; i <= length; i++) {
        if (i == length || PyUnicode_READ_CHAR(path, i) == '/') {
            Py_ssize_t size = i - part_start;
            if (size == 0 || (size == 1 && PyUnicode_READ_CHAR(path, part_start) == '.')
                || (size == 2 && PyUnicode_READ_CHAR(path, part_start) == '.'
                    && PyUnicode_READ_CHAR(path, part_start + 1) == '.')) {
                return 0;
            }
            part_start = i + 1;
        }
    }
    return 1;
}

static int
quiet_import(PyObject *spec, PyObject *origin)
{
    PyObject *active = global_value(&global_shield);
    if (active == NULL || Py_TYPE(active) != shield_type || busy_now()) {
        return 0; /* no shield (the Python `_judge` returns at once), or anything else */
    }
    if (origin != Py_None && judged_last_is(spec, origin)) {
        return 1;
    }
    if (origin == Py_None || !plain_absolute(origin)) {
        return 0;
    }
    PyObject *own_imports = PyObject_GetAttr(thread_state, name_own_imports);
    int own = own_imports == NULL || !PyTuple_CheckExact(own_imports)
              || PyTuple_GET_SIZE(own_imports) != 0;
    Py_XDECREF(own_imports);
    PyErr_Clear();
    PyObject *name = own ? NULL : plain_attribute(spec, name_name);
    if (name == NULL || !PyUnicode_CheckExact(name)
        || !(file_names_module(origin, name, ".py")
             || file_names_module(origin, name, "/__init__.py"))) {
        Py_XDECREF(name);
        return 0;
    }
    /* The engine's screen for the active decider (`_screen`: (compiled, index)). */
    PyObject *screen = global_value(&global_screen);
    PyObject *compiled = *(PyObject **)((char *)active + compiled_offset);
    if (screen == NULL || !PyTuple_CheckExact(screen) || PyTuple_GET_SIZE(screen) != 2
        || compiled == NULL || PyTuple_GET_ITEM(screen, 0) != compiled
        || PyTuple_GET_ITEM(screen, 1) == Py_None) {
        Py_DECREF(name);
        return 0;
    }
    PyObject *index = PyTuple_GET_ITEM(screen, 1);
    Py_INCREF(index);
    Py_INCREF(active);
    PyObject *call[3] = {index, name, origin};
    PyObject *quiet = PyObject_VectorcallMethod(name_quiet, call, 3, NULL);
    Py_DECREF(index);
    Py_DECREF(name);
    int answered = 0;
    if (quiet == NULL) {
        /* `_judge`'s `except BaseException`: reported as undescribable, raised again. */
        PyObject *fail = global_value(&global_fail_closed);
        PyObject *raised = take_raised();
        if (raised == NULL) {
            PyErr_SetString(PyExc_SystemError, "appshield: the import screen failed");
        }
        else if (fail == NULL) {
            raise_again(raised);
        }
        else {
            PyObject *fail_call[4] = {active, api_import, api_import, raised}; /* category, api */
            Py_INCREF(fail);
            PyObject *done = PyObject_Vectorcall(fail, fail_call, 4, NULL);
            Py_DECREF(fail);
            if (done == NULL) {
                Py_DECREF(raised); /* it raised: the exception it raised is the one set */
            }
            else {
                Py_DECREF(done);
                raise_again(raised);
            }
        }
        answered = -1;
    }
    else if (quiet == Py_True) {
        /* `remember_last`: (a weak reference to the spec, the origin) as `_judged.last`. */
        PyObject *judged = global_value(&global_judged);
        PyObject *ref = judged == NULL ? NULL : PyWeakref_NewRef(spec, NULL);
        PyObject *last = ref == NULL ? NULL : PyTuple_Pack(2, ref, origin);
        answered = last != NULL && PyObject_SetAttr(judged, name_last, last) == 0;
        Py_XDECREF(last);
        Py_XDECREF(ref);
        PyErr_Clear(); /* not remembered: the exec_module layer judges it again */
    }
    Py_XDECREF(quiet);
    Py_DECREF(active);
    return answered;
}

/* `_bootstrap._load_unlocked(spec)` (hooks/imports `_load_unlocked`): the spec judged (its
 * commonest case here, `quiet_import`, else by the Python `_judge`), the module loaded, the
 * points waiting for it applied. */
static PyObject *
load_front_call(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *spec = import_fronts_ready ? only_argument(args, nargs) : NULL, *origin = NULL;
    PyObject *judge = spec == NULL ? NULL : global_value(&global_judge);
    if (judge == NULL || !spec_origin(spec, &origin)) {
        return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
    }
    Py_INCREF(spec);
    int quiet = quiet_import(spec, origin);
    PyObject *judged = NULL;
    if (quiet == 0) {
        PyObject *call[3] = {spec, origin, api_import};
        Py_INCREF(judge);
        judged = PyObject_Vectorcall(judge, call, 3, NULL);
        Py_DECREF(judge);
    }
    else if (quiet > 0) {
        judged = Py_None;
        Py_INCREF(judged);
    }
    Py_DECREF(origin);
    PyObject *module = judged == NULL ? NULL : PyObject_Call(args[0], args[2], NULL);
    Py_XDECREF(judged);
    if (module != NULL && anything_waiting()) {
        int failed;
        if (Py_TYPE(module) == &PyModule_Type) {
            PyObject *name = PyDict_GetItemWithError(PyModule_GetDict(module), name_dunder_name);
            Py_XINCREF(name);
            failed = name == NULL && PyErr_Occurred() ? -1 : apply_waiting(name, module);
            Py_XDECREF(name);
        }
        else {
            /* Another kind of module (a lazy one, say): the Python tail. */
            PyObject *tail = global_value(&global_patch_loaded);
            PyObject *tail_call[2] = {args[2], module};
            Py_XINCREF(tail);
            PyObject *done = tail == NULL ? NULL : PyObject_Vectorcall(tail, tail_call, 2, NULL);
            failed = done == NULL ? -1 : 0;
            if (tail == NULL && !PyErr_Occurred()) {
                PyErr_SetString(PyExc_RuntimeError, "appshield: hooks/imports lost a wrapper");
            }
            Py_XDECREF(done);
            Py_XDECREF(tail);
        }
        if (failed < 0) {
            Py_CLEAR(module);
        }
    }
    Py_DECREF(spec);
    return module;
}

/* A loader's `exec_module(module)` (hooks/imports `_loader_exec_module`): the usual case is
 * the spec `_load_unlocked` judged just now, for this very file; it runs the module, then
 * applies the points waiting for it. Anything else is the Python wrapper's. */
static PyObject *
exec_front_call(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *module = import_fronts_ready ? only_argument(args, nargs) : NULL;
    PyObject *spec = NULL, *path = NULL;
    if (module != NULL && Py_TYPE(module) == &PyModule_Type) {
        spec = PyDict_GetItemWithError(PyModule_GetDict(module), name_dunder_spec);
        PyErr_Clear();
        Py_XINCREF(spec);
        path = spec == NULL || Py_TYPE(spec) != module_spec_type ? NULL : loader_file(args[1]);
    }
    if (path == NULL || !judged_last_is(spec, path)) {
        Py_XDECREF(path);
        Py_XDECREF(spec);
        return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
    }
    Py_DECREF(path);
    Py_INCREF(module);
    PyObject *result = PyObject_Call(args[0], args[2], NULL);
    if (result != NULL && anything_waiting()) {
        PyObject *name = PyObject_GetAttr(spec, name_name); /* `getattr(spec, "name", None)` */
        if (name == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
        }
        if ((name == NULL && PyErr_Occurred()) || apply_waiting(name, module) < 0) {
            Py_CLEAR(result);
        }
        Py_XDECREF(name);
    }
    Py_DECREF(module);
    Py_DECREF(spec);
    return result;
}

/* `<head>/__pycache__/` for the folder `own[:end]` (a new reference, or NULL and an
 * exception): the last one made is kept, as the modules of one folder are often imported
 * one after another. */
static PyObject *last_head = NULL, *last_cache_folder = NULL;

static PyObject *
cache_folder_of(PyObject *own, Py_ssize_t end)
{
    if (last_head != NULL && PyUnicode_GET_LENGTH(last_head) == end
        && PyUnicode_Tailmatch(own, last_head, 0, end, -1) == 1) {
        Py_INCREF(last_cache_folder);
        return last_cache_folder;
    }
    PyObject *head = PyUnicode_Substring(own, 0, end);
    PyObject *folder = head == NULL ? NULL : PyUnicode_Concat(head, pycache_text);
    if (folder == NULL) {
        Py_XDECREF(head);
        return NULL;
    }
    PyObject *old_head = last_head, *old_folder = last_cache_folder;
    last_head = head;
    last_cache_folder = folder;
    Py_INCREF(folder);
    Py_XDECREF(old_head); /* str objects: freeing them runs no code */
    Py_XDECREF(old_folder);
    return folder;
}

/* `SourceLoader.get_code(fullname)` (hooks/imports `_module_code_io`) of the module file
 * just judged: its reading marked as the import system's own work on this thread, naming
 * the file and the start of its bytecode cache's names (`_module_files`, for caches in
 * `__pycache__`), put back afterwards. With code objects recorded for scopes or grants, or
 * anything else, the Python wrapper. */
static PyObject *
code_front_call(PyObject *fallback, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *own = import_fronts_ready && only_argument(args, nargs) != NULL
                        ? loader_file(args[1])
                        : NULL;
    PyObject *files = NULL, *last = NULL;
    if (own == NULL) {
        goto python;
    }
    int module_file = 0;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(module_suffixes) && !module_file; i++) {
        module_file = PyUnicode_Tailmatch(own, PyTuple_GET_ITEM(module_suffixes, i), 0,
                                          PY_SSIZE_T_MAX, 1)
                      == 1;
    }
    last = module_file ? judged_last() : NULL;
    if (last == NULL || !PyUnicode_CheckExact(PyTuple_GET_ITEM(last, 1))
        || !same_value(PyTuple_GET_ITEM(last, 1), own)) {
        goto python; /* (a module inside a zip archive is zipimport's: not this loader) */
    }
    PyObject *scope = global_value(&global_scope_code);
    if (scope == NULL || !PyModule_CheckExact(scope)) {
        goto python;
    }
    /* Code objects recorded for `scope` rules: only for a module whose top-level name is
     * one a scope can name (`wanted_tops`, a frozenset; None: any), as the Python wrapper
     * screens them. Such a module, and grants' attribution of every module, are the Python
     * wrapper's. */
    PyObject *scope_globals = PyModule_GetDict(scope);
    PyObject *recording = PyDict_GetItemWithError(scope_globals, name_recording);
    PyObject *attributing = PyDict_GetItemWithError(scope_globals, name_attributing);
    PyObject *cache_prefix = global_value(&global_cache_prefix); /* sys.pycache_prefix */
    if ((recording != Py_False && recording != Py_True) || attributing != Py_False
        || cache_prefix != Py_None) {
        goto python;
    }
    if (recording == Py_True) {
        PyObject *tops = PyDict_GetItemWithError(scope_globals, name_wanted_tops);
        PyObject *fullname = PyTuple_GET_ITEM(args[2], 0);
        if (tops == NULL || !PyFrozenSet_CheckExact(tops) || !PyUnicode_CheckExact(fullname)) {
            goto python;
        }
        Py_ssize_t length = PyUnicode_GET_LENGTH(fullname);
        Py_ssize_t end = PyUnicode_FindChar(fullname, '.', 0, length, 1);
        PyObject *top = end < -1 ? NULL : PyUnicode_Substring(fullname, 0, end < 0 ? length : end);
        int wanted = top == NULL ? -1 : PySet_Contains(tops, top); /* exact str: no code runs */
        Py_XDECREF(top);
        if (wanted != 0) {
            goto python;
        }
    }
    /* `own.rpartition("/")`, then the stem: the tail before its last dot, or all of it;
     * the cache names start with `<head>/__pycache__/<stem>.` (`_module_files`). */
    Py_ssize_t size = PyUnicode_GET_LENGTH(own);
    Py_ssize_t slash = PyUnicode_FindChar(own, '/', 0, size, -1);
    Py_ssize_t dot = slash < -1 ? -2 : PyUnicode_FindChar(own, '.', slash + 1, size, -1);
    PyObject *folder = dot < -1 ? NULL : cache_folder_of(own, slash < 0 ? 0 : slash);
    PyObject *stem = NULL;
    if (folder != NULL && dot > slash + 1) {
        stem = PyUnicode_Substring(own, slash + 1, dot + 1); /* the stem and its dot */
    }
    else if (folder != NULL) {
        PyObject *whole = PyUnicode_Substring(own, slash + 1, size);
        stem = whole == NULL ? NULL : PyUnicode_Concat(whole, dot_text);
        Py_XDECREF(whole);
    }
    PyObject *cache = stem == NULL ? NULL : PyUnicode_Concat(folder, stem);
    Py_XDECREF(stem);
    Py_XDECREF(folder);
    files = cache == NULL ? NULL : PyTuple_Pack(2, own, cache);
    Py_XDECREF(cache);
    PyObject *previous = files == NULL ? NULL : PyObject_GetAttr(thread_state, name_importing);
    if (previous == NULL || PyObject_SetAttr(thread_state, name_importing, files) < 0) {
        Py_XDECREF(previous);
        PyErr_Clear();
        goto python;
    }
    Py_DECREF(last);
    Py_DECREF(own);
    Py_DECREF(files);
    PyObject *code = PyObject_Call(args[0], args[2], NULL);
    /* Put back whatever happened (the `finally` of the Python wrapper), keeping the call's
     * exception, if any, as the one raised. */
    PyObject *raised = take_raised();
    int restored = PyObject_SetAttr(thread_state, name_importing, previous);
    if (raised != NULL) {
        if (restored < 0) {
            PyErr_Clear();
        }
        raise_again(raised);
    }
    Py_DECREF(previous);
    if (restored < 0 && code != NULL) {
        Py_CLEAR(code);
    }
    return code;
python:
    PyErr_Clear();
    Py_XDECREF(files);
    Py_XDECREF(last);
    Py_XDECREF(own);
    return PyObject_Vectorcall(fallback, args, (size_t)nargs, NULL);
}

static PyMethodDef load_front_def = {
    "load_unlocked_wrapper", (PyCFunction)(void (*)(void))load_front_call, METH_FASTCALL,
    "appshield's wrapper of importlib's _load_unlocked: its usual case in C "
    "(appshield/_c_audit_hook.c `load_front_call`), the rest in Python.",
};
static PyMethodDef exec_front_def = {
    "exec_module_wrapper", (PyCFunction)(void (*)(void))exec_front_call, METH_FASTCALL,
    "appshield's wrapper of a loader's exec_module: its usual case in C "
    "(appshield/_c_audit_hook.c `exec_front_call`), the rest in Python.",
};
static PyMethodDef code_front_def = {
    "get_code_wrapper", (PyCFunction)(void (*)(void))code_front_call, METH_FASTCALL,
    "appshield's wrapper of SourceLoader.get_code: its usual case in C "
    "(appshield/_c_audit_hook.c `code_front_call`), the rest in Python.",
};

/* `import_front(kind, wrapper)`: the C front of the import layer's wrapper `kind`
 * ("load", "exec" or "code"), falling back to the Python `wrapper`. */
static PyObject *
import_front(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyUnicode_Check(args[0]) || !PyCallable_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "import_front(kind, wrapper)");
        return NULL;
    }
    PyMethodDef *def = PyUnicode_CompareWithASCIIString(args[0], "load") == 0   ? &load_front_def
                       : PyUnicode_CompareWithASCIIString(args[0], "exec") == 0 ? &exec_front_def
                       : PyUnicode_CompareWithASCIIString(args[0], "code") == 0 ? &code_front_def
                                                                                : NULL;
    if (def == NULL) {
        PyErr_SetString(PyExc_ValueError, "import_front: kind is load, exec or code");
        return NULL;
    }
    return PyCFunction_NewEx(def, args[1], module);
}

static int
audit_hook(const char *event, PyObject *args, void *unused)
{
    (void)unused;
    PyThreadState *ts = current_thread_state();
    /* `ts->interp`: the field PyThreadState_GetInterpreter returns, without the call. */
    if (ts == NULL || ts->interp != home) {
        return 0;
    }
    Slot *slot = find(event);
    if (slot == NULL) {
        return 0; /* an event appshield does not decide */
    }
    if (slot->kind != PLAIN_EVENT && PyTuple_CheckExact(args)) {
        int answered = 0;
        switch (slot->kind) {
        case OPEN_EVENT:
        case LISTING_EVENT:
        case PATH_CHANGE_EVENT:
        case SQLITE_EVENT:
            answered = file_event_allowed_again(slot, args);
            break;
        case SOCKET_ACTION_EVENT:
            answered = socket_action_allowed_again(slot->operation, args);
            break;
        case LOOKUP_EVENT:
            answered = lookup_allowed_again(args);
            break;
        case IMPORT_EVENT:
            answered = import_statement_allowed(args);
            break;
        case POPEN_EVENT:
            answered = popen_allowed(ts, slot->event, args);
            if (answered < 0) {
                return -1;
            }
            break;
        }
        if (answered) {
            return 0;
        }
    }
    if (slot->kind == POPEN_EVENT && spawn_mark.thread == ts) {
        forget_spawn(); /* a start of this thread's judged the Python way: its mark is not ours */
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

/* A new reference to parts[name], of `type` when not NULL; NULL and TypeError otherwise. */
static PyObject *
part(PyObject *parts, const char *name, PyTypeObject *type)
{
    PyObject *value = PyDict_GetItemString(parts, name);
    if (value == NULL || (type != NULL && !PyObject_TypeCheck(value, type))) {
        PyErr_Format(PyExc_TypeError, "install: parts[\"%s\"] is missing or of the wrong type",
                     name);
        return NULL;
    }
    Py_INCREF(value);
    return value;
}

static PyMemberDescrObject *
member_part(PyObject *parts, const char *name)
{
    PyObject *value = part(parts, name, &PyMemberDescr_Type);
    return (PyMemberDescrObject *)value;
}

/* The kind of check `name` gets before the Python hook, and the str it needs (a socket
 * action's operation, a file event's flags: a new reference), from `parts`. */
static int
event_kind(PyObject *parts, PyObject *event, const char *name, PyObject **needs)
{
    *needs = NULL;
    if (strcmp(name, "open") == 0) {
        return OPEN_EVENT;
    }
    if (strcmp(name, "socket.getaddrinfo") == 0) {
        return LOOKUP_EVENT;
    }
    if (strcmp(name, "import") == 0) {
        return IMPORT_EVENT;
    }
    if (strcmp(name, "subprocess.Popen") == 0) {
        return POPEN_EVENT;
    }
    const char *operation = NULL;
    if (strcmp(name, "socket.connect") == 0) {
        operation = "connect";
    }
    else if (strcmp(name, "socket.bind") == 0) {
        operation = "bind";
    }
    else if (strcmp(name, "socket.sendto") == 0 || strcmp(name, "socket.sendmsg") == 0) {
        operation = "send";
    }
    if (operation != NULL) {
        *needs = PyUnicode_InternFromString(operation);
        return *needs == NULL ? -1 : SOCKET_ACTION_EVENT;
    }
    PyObject *listing = PyDict_GetItemString(parts, "listing_events");
    PyObject *changes = PyDict_GetItemString(parts, "path_change_events");
    PyObject *sqlite = PyDict_GetItemString(parts, "sqlite_event");
    if (listing == NULL || !PyTuple_Check(listing) || changes == NULL || !PyTuple_Check(changes)
        || sqlite == NULL || !PyUnicode_CheckExact(sqlite)) {
        PyErr_SetString(PyExc_TypeError, "install: parts lack the file events");
        return -1;
    }
    int found = PySequence_Contains(listing, event);
    if (found != 0) {
        *needs = found < 0 ? NULL : PyDict_GetItemString(parts, "listing_flags");
        if (*needs == NULL || !PyUnicode_CheckExact(*needs)) {
            PyErr_SetString(PyExc_TypeError, "install: parts[\"listing_flags\"] is no str");
            *needs = NULL;
            return -1;
        }
        Py_INCREF(*needs);
        return LISTING_EVENT;
    }
    if ((found = PySequence_Contains(changes, event)) != 0) {
        if (found < 0) {
            return -1;
        }
        Py_INCREF(event); /* remembered under the event's own name */
        *needs = event;
        return PATH_CHANGE_EVENT;
    }
    if ((found = PyUnicode_Compare(sqlite, event)) == 0) {
        Py_INCREF(event);
        *needs = event;
        return SQLITE_EVENT;
    }
    return PyErr_Occurred() ? -1 : PLAIN_EVENT;
}

static int
fill_table(Slot *slots, size_t size, PyObject *events, PyObject *parts)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(events); i++) {
        PyObject *event = PyTuple_GET_ITEM(events, i);
        if (!PyUnicode_CheckExact(event)) {
            PyErr_SetString(PyExc_TypeError, "audit event names must be str");
            return -1;
        }
        Py_INCREF(event);
        PyUnicode_InternInPlace(&event);
        const char *name = PyUnicode_AsUTF8(event);
        if (name == NULL) {
            Py_DECREF(event);
            return -1;
        }
        size_t length;
        uint64_t hash = fnv1a(name, &length);
        size_t at = (size_t)hash & (size - 1);
        while (slots[at].event != NULL && strcmp(slots[at].name, name) != 0) {
            at = (at + 1) & (size - 1);
        }
        if (slots[at].event != NULL) {
            Py_DECREF(event); /* named twice */
            continue;
        }
        PyObject *needs;
        int kind = event_kind(parts, event, name, &needs);
        if (kind < 0) {
            Py_DECREF(event);
            return -1;
        }
        slots[at].hash = hash;
        slots[at].length = length;
        slots[at].name = name;
        slots[at].event = event;
        slots[at].kind = kind;
        slots[at].operation = needs;
    }
    return 0;
}

/* Every string `install` interns once for the hook's comparisons and look-ups by name:
 * one table, so that none can be left unchecked. */
static const struct {
    PyObject **slot;
    const char *text;
} interned_names[] = {
    {&name_shield, "_shield"}, {&name_memory, "_memory"}, {&name_compiled, "compiled"},
    {&name_resolves, "_resolves"}, {&dot_text, "."},
    /* The getaddrinfo wrapper's lookups waiting for an executor thread (hooks/network). */
    {&name_pending, "_pending"},
    /* The import system's own work (hooks/file and hooks/imports). */
    {&name_importing, "importing"}, {&name_intact, "_intact"},
    /* Program starts (hooks/process). */
    {&name_busy, "busy"}, {&name_policy, "policy"}, {&name_described, "_described"},
    {&name_environ_path, "_environ_path"}, {&name_data, "_data"},
    {&name_activation_module, "appshield.activation"}, {&name_activation, "_activation"},
    {&name_unshielded, "unshielded"}, {&name_decide, "decide"}, {&name_allow, "allow"},
    {&global_environ.name, "environ"},
    /* The import layer's fronts. */
    {&name_origin, "origin"}, {&name_set_fileattr, "_set_fileattr"},
    {&name_has_location, "has_location"}, {&name_path, "path"},
    {&name_dunder_spec, "__spec__"}, {&name_dunder_name, "__name__"}, {&name_name, "name"},
    {&name_last, "last"}, {&name_recording, "recording"}, {&name_attributing, "attributing"},
    {&name_wanted_tops, "wanted_tops"}, {&name_quiet, "quiet"},
    {&name_own_imports, "own_imports"}, {&global_screen.name, "_screen"},
    {&global_fail_closed.name, "fail_closed"}, {&pycache_text, "/__pycache__/"},
    {&global_cache_prefix.name, "pycache_prefix"}, {&api_import, "import"},
};

static int
intern_names(void)
{
    for (size_t i = 0; i < sizeof(interned_names) / sizeof(interned_names[0]); i++) {
        *interned_names[i].slot = PyUnicode_InternFromString(interned_names[i].text);
        if (*interned_names[i].slot == NULL) {
            return -1;
        }
    }
    return 0;
}

/* Point each of the `count` module globals `globals` at `dict`, under `names`. */
static int
read_globals(PyObject *dict, Global **globals, const char **names, int count)
{
    for (int i = 0; i < count; i++) {
        globals[i]->dict = dict;
        globals[i]->name = PyUnicode_InternFromString(names[i]);
        if (globals[i]->name == NULL) {
            return -1;
        }
    }
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
    if (nargs != 3 || !PyCallable_Check(args[0]) || !PyTuple_CheckExact(args[1])
        || !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "install(hook, events: tuple[str, ...], parts: dict[str, object])");
        return NULL;
    }
    PyObject *events = args[1], *parts = args[2];
    size_t size = 16;
    while (size < (size_t)PyTuple_GET_SIZE(events) * 4) {
        size *= 2;
    }
    Slot *slots = PyMem_RawCalloc(size, sizeof(Slot));
    if (slots == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (fill_table(slots, size, events, parts) < 0 || intern_names() < 0) {
        goto fail;
    }
    versions_move = dict_versions_move();
    shield_type = (PyTypeObject *)part(parts, "shield_type", &PyType_Type);
    /* The globals that name the active shield (hooks/_gate.py), the file memory
     * (hooks/_file_cache.py) and the resolve memory (hooks/network): replaced whole when
     * the policy changes, read through `global_value`. */
    global_shield.dict = shield_type ? part(parts, "gate_globals", &PyDict_Type) : NULL;
    global_shield.name = name_shield;
    global_memory.dict =
        global_shield.dict ? part(parts, "file_cache_globals", &PyDict_Type) : NULL;
    global_memory.name = name_memory;
    memory_type =
        global_memory.dict ? (PyTypeObject *)part(parts, "memory_type", &PyType_Type) : NULL;
    global_resolves.dict = memory_type ? part(parts, "network_globals", &PyDict_Type) : NULL;
    global_resolves.name = name_resolves;
    allow_cache_type = global_resolves.dict
                           ? (PyTypeObject *)part(parts, "allow_cache_type", &PyType_Type)
                           : NULL;
    allowed_actions = allow_cache_type ? part(parts, "allowed_actions", allow_cache_type) : NULL;
    names_by_address = allowed_actions ? part(parts, "names_by_address", &PyDict_Type) : NULL;
    names_entry_type =
        names_by_address ? (PyTypeObject *)part(parts, "names_entry_type", &PyType_Type) : NULL;
    resolves_type =
        names_entry_type ? (PyTypeObject *)part(parts, "resolves_type", &PyType_Type) : NULL;
    network_op_type =
        resolves_type ? (PyTypeObject *)part(parts, "network_op_type", &PyType_Type) : NULL;
    PyObject *utf8 = network_op_type ? part(parts, "utf8_file_names", &PyBool_Type) : NULL;
    if (utf8 != NULL) {
        utf8_file_names = utf8 == Py_True;
        Py_DECREF(utf8);
    }
    PyObject *index = utf8 != NULL ? part(parts, "op_address_index", &PyLong_Type) : NULL;
    socket_family = index ? member_part(parts, "socket_family") : NULL;
    socket_type = socket_family ? member_part(parts, "socket_type") : NULL;
    if (socket_type == NULL) {
        Py_XDECREF(index);
        goto fail;
    }
    op_address_index = PyLong_AsSsize_t(index);
    Py_DECREF(index);
    /* The getaddrinfo wrapper's lookups waiting for an executor thread (hooks/network). */
    PyObject *waiting = part(parts, "predecided", NULL);
    if (waiting == NULL) {
        goto fail;
    }
    /* The import system's own work (hooks/file and hooks/imports). */
    machinery_globals = part(parts, "import_machinery_globals", &PyDict_Type);
    thread_state = machinery_globals ? part(parts, "thread_state", NULL) : NULL;
    global_layer.dict = thread_state ? part(parts, "imports_globals", &PyDict_Type) : NULL;
    global_layer.name = name_intact;
    if (global_layer.dict == NULL) {
        goto fail;
    }
    /* Program starts (hooks/process): the process family's globals, os's (`environ`), the
     * describer's sys.modules, the classes compared, where fork_exec takes `preexec_fn`. */
    path_key = PyBytes_FromString("PATH");
    if (path_key == NULL) {
        goto fail;
    }
    PyObject *process_globals = part(parts, "process_globals", &PyDict_Type);
    PyObject *os_globals = process_globals ? part(parts, "os_globals", &PyDict_Type) : NULL;
    modules = os_globals ? part(parts, "modules", &PyDict_Type) : NULL;
    environ_type = modules ? (PyTypeObject *)part(parts, "environ_type", &PyType_Type) : NULL;
    decision_type =
        environ_type ? (PyTypeObject *)part(parts, "decision_type", &PyType_Type) : NULL;
    PyObject *preexec = decision_type ? part(parts, "preexec_index", &PyLong_Type) : NULL;
    if (preexec == NULL) {
        goto fail;
    }
    Py_ssize_t preexec_at = PyLong_AsSsize_t(preexec);
    Py_DECREF(preexec);
    if (preexec_at < 6 || !PyDict_CheckExact(modules)
        || !PyType_IsSubtype(decision_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "install: the process parts are not as expected");
        goto fail;
    }
    Global *process_reads[] = {&global_compiled_of, &global_startup_path,
                               &global_remembered_start, &global_inherited_path};
    const char *process_names[] = {"_compiled_of", "STARTUP_PATH", "remembered_start",
                                   "inherited_exec_path"};
    if (read_globals(process_globals, process_reads, process_names, 4) < 0) {
        goto fail;
    }
    global_environ.dict = os_globals;
    /* The import layer's fronts: hooks/imports' globals (`global_layer.dict`), importlib's
     * spec and file loader classes, the module file suffixes `_module_code_io` marks. */
    Global *import_reads[] = {&global_judge, &global_judged, &global_waiting,
                              &global_loaded, &global_scope_code, &global_patch_loaded};
    const char *import_names[] = {"_judge", "_judged", "_waiting", "loaded", "_scope_code",
                                  "_patch_loaded"};
    if (read_globals(global_layer.dict, import_reads, import_names, 6) < 0) {
        goto fail;
    }
    global_screen.dict = global_layer.dict;
    global_fail_closed.dict = global_shield.dict;
    global_cache_prefix.dict = part(parts, "sys_globals", &PyDict_Type);
    if (global_cache_prefix.dict == NULL) {
        goto fail;
    }
    module_spec_type = (PyTypeObject *)part(parts, "module_spec_type", &PyType_Type);
    has_location_property = module_spec_type ? part(parts, "spec_has_location", NULL) : NULL;
    loader_types = has_location_property ? part(parts, "file_loader_types", &PyTuple_Type) : NULL;
    module_suffixes = loader_types ? part(parts, "module_suffixes", &PyTuple_Type) : NULL;
    if (module_suffixes == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(loader_types); i++) {
        if (!PyType_Check(PyTuple_GET_ITEM(loader_types, i))) {
            PyErr_SetString(PyExc_TypeError, "install: file_loader_types holds a non-type");
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(module_suffixes); i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(module_suffixes, i))) {
            PyErr_SetString(PyExc_TypeError, "install: module_suffixes holds a non-str");
            goto fail;
        }
    }
    if (op_address_index < 0 || !PyType_IsSubtype(network_op_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "install: a network operation is a tuple");
        goto fail;
    }
    if ((compiled_offset = slot_offset(shield_type, "compiled")) < 0
        || (owner_offset = slot_offset(memory_type, "owner")) < 0
        || (plain_offset = slot_offset(memory_type, "plain")) < 0
        || (checked_offset = slot_offset(memory_type, "checked")) < 0
        || (relative_offset = slot_offset(memory_type, "relative")) < 0
        || (allow_owner_offset = slot_offset(allow_cache_type, "owner")) < 0
        || (allow_entries_offset = slot_offset(allow_cache_type, "entries")) < 0
        || (names_offset = slot_offset(names_entry_type, "names")) < 0
        || (soonest_offset = slot_offset(names_entry_type, "soonest")) < 0
        || (resolves_key_offset = slot_offset(resolves_type, "key")) < 0
        || (resolves_entries_offset = slot_offset(resolves_type, "entries")) < 0) {
        goto fail;
    }
    predecided = waiting;
    preexec_index = preexec_at;
    import_fronts_ready = 1;
    table = slots;
    table_mask = size - 1;
    home = PyInterpreterState_Get();
    Py_INCREF(args[0]);
    python_hook = args[0];
    /* Refused by an earlier hook, this may return 0 without adding the hook: the caller
     * proves it works with an event of its own (appshield/runtime.py). */
    if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
fail:
    /* Nothing was registered: the module is left as if never installed, the parts taken
     * (a few references) kept, as the hook would have kept them for good. */
    for (size_t i = 0; i < size; i++) {
        Py_XDECREF(slots[i].event);
        Py_XDECREF(slots[i].operation);
    }
    PyMem_RawFree(slots);
    global_shield.dict = global_memory.dict = global_resolves.dict = global_layer.dict = NULL;
    machinery_globals = thread_state = NULL;
    global_compiled_of.dict = global_startup_path.dict = global_remembered_start.dict =
        global_inherited_path.dict = global_environ.dict = NULL;
    modules = NULL;
    environ_type = decision_type = NULL;
    global_judge.dict = global_judged.dict = global_waiting.dict = global_loaded.dict =
        global_scope_code.dict = global_patch_loaded.dict = global_cache_prefix.dict =
            global_screen.dict = global_fail_closed.dict = NULL;
    module_spec_type = NULL;
    has_location_property = loader_types = module_suffixes = NULL;
    allowed_actions = names_by_address = NULL;
    shield_type = memory_type = allow_cache_type = names_entry_type = resolves_type = network_op_type = NULL;
    socket_family = socket_type = NULL;
    return NULL;
}

static PyMethodDef methods[] = {
    {"resolve_repeat", (PyCFunction)resolve_repeat, METH_O,
     "resolve_repeat(wrapper): the wrapper of _socket.getaddrinfo to patch in, answering a "
     "remembered address itself once `install` gave it the memories, calling `wrapper` for "
     "the rest."},
    {"import_front", (PyCFunction)(void (*)(void))import_front, METH_FASTCALL,
     "import_front(kind, wrapper): the wrapper of importlib's _load_unlocked (\"load\"), a "
     "loader's exec_module (\"exec\") or SourceLoader.get_code (\"code\") to patch in, "
     "taking its usual case itself once `install` gave it the import parts, calling "
     "`wrapper` for the rest."},
    {"taken_spawn_mark", (PyCFunction)taken_spawn_mark, METH_NOARGS,
     "taken_spawn_mark(): the start the compiled hook marked on this thread for fork_exec, "
     "handed over and forgotten, or None (hooks/process `_judged_posix_spawn`)."},
    {"spawn_repeat", (PyCFunction)spawn_repeat, METH_O,
     "spawn_repeat(wrapper): the wrapper of _posixsubprocess.fork_exec to patch in, handing "
     "the start the compiled audit hook judged the judged file itself once `install` gave it "
     "the process parts, calling `wrapper` for the rest."},
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL,
     "install(hook, events, parts): register the compiled audit hook, once per process. It "
     "answers the events not in `events` and the repeats the memories in `parts` hold "
     "itself, and calls `hook(event, args)` for the rest (appshield/runtime.py)."},
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
