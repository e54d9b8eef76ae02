/*
 * collector.decoding._speedups: a hand-written decoder of OTLP ExportTraceServiceRequest
 * protobuf bytes into the column dict described in collector/decoding/trace_decode.py:
 * every column is Arrow buffers (fixed-width values; text as int32 offsets +
 * UTF-8 data + validity bitmap), no Python object per value. concat_column()
 * joins the columns of many requests for collector/decoding/arrow_batches.py.
 *
 * No libprotobuf: the wire format is parsed here, with every read checked
 * against the end of its enclosing message. The output must equal
 * decode_traces_python() (upb backend) for every input, and every input that
 * upb rejects must raise ValueError here too, so the parser follows upb's
 * rules exactly:
 *   - tags are varints of at most 5 bytes with a value below 2^32; field
 *     number 0 is malformed (except inside an unknown group, which upb skips
 *     without that check); wire types 6 and 7 are malformed;
 *   - lengths are varints of at most 5 bytes, below INT32_MAX and inside the
 *     enclosing message; other varints are at most 10 bytes (value mod 2^64);
 *   - sub-messages and groups nest at most 100 deep below the request;
 *   - every string field with the right wire type must be valid UTF-8, also
 *     where the value is later overridden or sits in a rejected span;
 *   - a singular sub-message sent more than once is merged: its occurrences
 *     are parsed in order as one message (handled with segment lists, no
 *     copies); a oneof member that changes drops the earlier sub-message,
 *     which upb still parses (validated here without being rendered);
 *   - a known field with a wrong wire type is kept by upb as an unknown field;
 *     the contract makes it a ValueError (the Python side checks the unknown
 *     fields of every message it keeps).
 * Attribute values with arrays/kvlists nested more than 32 deep raise
 * ValueError.
 *
 * The resource and scope columns (SHARED below) hold one entry per run, not
 * per row: a run is the accepted spans of one ScopeSpans, and "shared_runs"
 * gives each run's length, so a resource's text is written once however many
 * spans it applies to (collector/decoding/arrow_batches.py makes dictionary arrays).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define MAX_MSG_DEPTH 100
#define MAX_VALUE_DEPTH 32
#define WT_VARINT 0
#define WT_I64 1
#define WT_LEN 2
#define WT_SGROUP 3
#define WT_EGROUP 4
#define WT_I32 5
#define TAG(f, w) ((((uint32_t)(f)) << 3) | (w))
#define BITS(a, b) ((uint32_t)((((uint64_t)1 << ((b) + 1)) - 1) & ~(((uint64_t)1 << (a)) - 1)))
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ------------------------------------------------------------------------ */
/* Growable byte buffer and segment lists                                     */

typedef struct {
    char *p;
    size_t n, cap;
} Buf;

static int buf_grow(Buf *b, size_t need)
{
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->n < need) {
        if (cap > ((size_t)PY_SSIZE_T_MAX) / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *np = PyMem_Realloc(b->p, cap);
    if (!np) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = np;
    b->cap = cap;
    return 0;
}

#define RESERVE(b, k) (LIKELY((b)->cap - (b)->n >= (size_t)(k)) ? 0 : buf_grow((b), (size_t)(k)))

static inline int buf_put(Buf *b, const char *s, size_t n)
{
    if (RESERVE(b, n)) return -1;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return 0;
}

static inline int buf_putc(Buf *b, char c)
{
    if (RESERVE(b, 1)) return -1;
    b->p[b->n++] = c;
    return 0;
}

#define PUTS(b, lit) buf_put((b), (lit), sizeof(lit) - 1)

static inline void buf_reset(Buf *b)
{
    b->n = 0;
}

typedef struct {
    const uint8_t *p, *e;
} Seg;

typedef struct {
    Seg *v;
    Py_ssize_t n, cap;
    Seg inl[4];
} Segs;

static inline void segs_init(Segs *s)
{
    s->v = s->inl;
    s->n = 0;
    s->cap = 4;
}

/* a single segment: one occurrence of a sub-message */
static inline void segs_one(Segs *s, const uint8_t *p, const uint8_t *e)
{
    segs_init(s);
    s->v[0].p = p;
    s->v[0].e = e;
    s->n = 1;
}

static inline void segs_free(Segs *s)
{
    if (s->v != s->inl) PyMem_Free(s->v);
    s->v = s->inl;
    s->n = 0;
    s->cap = 4;
}

static int segs_push(Segs *s, const uint8_t *p, const uint8_t *e)
{
    if (s->n == s->cap) {
        Py_ssize_t cap = s->cap * 2;
        Seg *nv = PyMem_Malloc((size_t)cap * sizeof(Seg));
        if (!nv) {
            PyErr_NoMemory();
            return -1;
        }
        memcpy(nv, s->v, (size_t)s->n * sizeof(Seg));
        if (s->v != s->inl) PyMem_Free(s->v);
        s->v = nv;
        s->cap = cap;
    }
    s->v[s->n].p = p;
    s->v[s->n].e = e;
    s->n++;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output columns and decoder state                                           */

/* Text columns: Arrow string arrays (int32 offsets, UTF-8 data, validity bitmap). */
enum {
    C_NAME, C_TRACE_STATE, C_STATUS_MESSAGE, C_SCOPE_NAME, C_SCOPE_VERSION,
    C_RESOURCE_ATTRS, C_SCOPE_ATTRS, C_ATTRS, C_EVENTS, C_LINKS,
    C_RES0, /* six promoted resource columns */
    C_SPAN0 = C_RES0 + 6, /* six promoted span string columns (span slots 0-5) */
    N_STR = C_SPAN0 + 6
};
static const char *STR_NAMES[N_STR] = {
    "name", "trace_state", "status_message", "scope_name", "scope_version",
    "resource_attributes", "scope_attributes", "attributes", "events", "links",
    "service_name", "device_id", "site", "region", "device_class", "firmware_version",
    "model_name", "model_version", "inference_mode", "request_id", "prediction_label", "label",
};
/* Promoted float columns (span slots 6-8) and the bool column (slot 9). */
#define SLOT_F64 6
#define N_F64 3
#define SLOT_BOOL 9
static const char *BOOL_NAME = "cold_start";

/* Columns of the resource and the scope: one entry per run of spans. */
static inline int is_shared(int c)
{
    return c == C_SCOPE_NAME || c == C_SCOPE_VERSION || c == C_RESOURCE_ATTRS || c == C_SCOPE_ATTRS ||
           (c >= C_RES0 && c < C_RES0 + 6);
}

/* Fixed-width columns, one buffer of little-endian values each, in output
   order; the bits of the promoted doubles come last (they go out with a
   validity bitmap). */
enum {
    F_TID_HI, F_TID_LO, F_SPAN_ID, F_PARENT, F_START, F_DURATION, /* uint64 */
    F_FLAGS, F_DROPPED_ATTRS, F_DROPPED_EVENTS, F_DROPPED_LINKS,  /* uint32 */
    F_KIND, F_STATUS,                                              /* uint8 */
    F_F64,                                                         /* uint64: N_F64 doubles */
    N_FIXED = F_F64 + N_F64
};
static const struct {
    const char *name;
    int width; /* bytes per value */
} FIXED_COLS[N_FIXED] = {
    {"trace_id_hi", 8}, {"trace_id_lo", 8}, {"span_id", 8}, {"parent_span_id", 8}, {"start_time", 8},
    {"duration_ns", 8}, {"flags", 4}, {"dropped_attributes_count", 4}, {"dropped_events_count", 4},
    {"dropped_links_count", 4}, {"kind", 1}, {"status_code", 1},
    {"prediction_score", 8}, {"prediction_value", 8}, {"label_value", 8},
};

/* Bitmaps: the validity of the text columns, of the floats and of the bool,
   then the values of the bool column. */
#define V_F64 N_STR
#define V_BOOL (N_STR + N_F64)
#define N_VALID (V_BOOL + 1)
#define BOOL_VALUES N_VALID
#define N_BITMAPS (BOOL_VALUES + 1)

enum { R_TRACE_ID, R_SPAN_ID, R_PARENT, R_TIMESTAMP, R_END_BEFORE_START, N_REASONS };
static const char *REASON_NAMES[N_REASONS] = {
    "invalid_trace_id", "invalid_span_id", "invalid_parent_span_id", "missing_timestamp",
    "end_before_start"};

/* Promotion tables: key -> slot; kinds */
enum { K_STR, K_FLOAT, K_BOOL };
#define MAX_SLOTS 10
typedef struct {
    int n;
    struct {
        const char *key;
        int kind;
    } slot[MAX_SLOTS];
    uint32_t len[MAX_SLOTS];  /* of each key, set by promo_init() */
    uint64_t tail[MAX_SLOTS]; /* last 8 bytes of each key (all keys have >= 8), set by promo_init() */
} PromoTable;

static PromoTable RES_PROMO = {6, {
    {"service.name", K_STR},
    {"device.id", K_STR},
    {"fleet.site", K_STR},
    {"fleet.region", K_STR},
    {"device.class", K_STR},
    {"device.firmware.version", K_STR},
}, {0}, {0}};
static PromoTable SPAN_PROMO = {10, { /* slots: C_SPAN0 + 0..5, SLOT_F64 + 0..2, SLOT_BOOL */
    {"ml.model.name", K_STR},
    {"ml.model.version", K_STR},
    {"ml.inference.mode", K_STR},
    {"ml.request.id", K_STR},
    {"ml.prediction.label", K_STR},
    {"ml.label", K_STR},
    {"ml.prediction.score", K_FLOAT},
    {"ml.prediction.value", K_FLOAT},
    {"ml.label.value", K_FLOAT},
    {"ml.inference.cold_start", K_BOOL},
}, {0}, {0}};

typedef struct {
    const uint8_t *kv, *kvend;  /* KeyValue payload */
    const uint8_t *key;
    uint32_t keylen;
    const uint8_t *val, *valend; /* first `value` payload */
    int nval;                   /* number of `value` occurrences (merged) */
    int slot;                   /* promotion slot or -1 */
} KVRef;

/* A promoted value: a string slice of the request, or the bits of a double / a bool */
typedef struct {
    int set;
    const uint8_t *s;
    uint32_t n;
    uint64_t bits;
} PromoVal;

/* Text of one request across all text columns is limited so that int32
   offsets cannot overflow (and a small request repeating a large resource
   across many spans cannot take unbounded memory); settable for tests. */
static size_t max_text = 0x7FFFFFFF;

typedef struct {
    const uint8_t *base, *limit;
    Py_ssize_t n, cap; /* accepted spans */
    Py_ssize_t nruns;  /* runs: the shared columns' entries (<= n) */
    int32_t *run_len;  /* spans in each run, cap entries */
    Py_ssize_t run;    /* the current ScopeSpans' run, -1 until its first accepted span */
    Buf sdata[N_STR];      /* text column data */
    int32_t *soff[N_STR];  /* text column offsets, cap + 1 */
    uint8_t *bits[N_BITMAPS]; /* validity bitmaps, then the bool values; cap / 8 bytes, zeroed */
    Py_ssize_t nulls[N_VALID];
    size_t text_room;      /* text bytes left before max_text */
    void *fixed[N_FIXED];  /* cap values of FIXED_COLS[c].width bytes */
    Py_ssize_t rejected, reasons[N_REASONS];
    PyObject *first_error;
    Buf attrs, events, links, scratch;
    KVRef *kv;
    Py_ssize_t nkv, kvcap;
} Dec;

/* Shared by the spans of one scope: slices of the request, framed JSON text */
typedef struct {
    PromoVal res[6];
    Buf res_json, scope_json; /* framed JSON; n == 0 for none */
    const uint8_t *scope_name, *scope_version;
    uint32_t scope_namen, scope_versionn;
    Py_ssize_t ri, si;
} Ctx;

/* ------------------------------------------------------------------------ */
/* Errors and wire-format primitives                                          */

static int fail(Dec *d, const uint8_t *at, const char *what)
{
    if (at >= d->base && at <= d->limit)
        PyErr_Format(PyExc_ValueError, "malformed OTLP trace request: %s at byte offset %zd", what,
                     (Py_ssize_t)(at - d->base));
    else
        PyErr_Format(PyExc_ValueError, "malformed OTLP trace request: %s", what);
    return -1;
}

static int fail_depth(Dec *d, const uint8_t *at)
{
    return fail(d, at, "messages/groups nested more than 100 deep");
}

static int rd_varint_slow(Dec *d, const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p >= end) return fail(d, *pp, "truncated varint");
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return fail(d, *pp, "varint longer than 10 bytes");
}

static inline int rd_varint(Dec *d, const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    const uint8_t *p = *pp;
    if (LIKELY(p < end && *p < 0x80)) {
        *out = *p;
        *pp = p + 1;
        return 0;
    }
    return rd_varint_slow(d, pp, end, out);
}

/* varint of at most 5 bytes; *out < 2^35 */
static inline int rd_varint5(Dec *d, const uint8_t **pp, const uint8_t *end, uint64_t *out,
                             const char *what)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (UNLIKELY(p >= end)) return fail(d, *pp, what);
        uint8_t b = *p++;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (b < 0x80) {
            *out = v;
            *pp = p;
            return 0;
        }
    }
    return fail(d, *pp, what);
}

/* caller guarantees *pp < end */
static inline int rd_tag(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t *tag)
{
    const uint8_t *p = *pp;
    if (LIKELY(*p < 0x80)) {
        *tag = *p;
        *pp = p + 1;
        return 0;
    }
    uint64_t v;
    if (rd_varint5(d, pp, end, &v, "bad tag varint")) return -1;
    if (v > 0xFFFFFFFFu) return fail(d, p, "tag out of range");
    *tag = (uint32_t)v;
    return 0;
}

/* length prefix + payload bounds */
static inline int rd_len(Dec *d, const uint8_t **pp, const uint8_t *end, const uint8_t **s, uint32_t *n)
{
    const uint8_t *p = *pp;
    uint64_t v;
    if (LIKELY(p < end && *p < 0x80)) {
        v = *p++;
    }
    else {
        if (rd_varint5(d, &p, end, &v, "bad length varint")) return -1;
    }
    if (UNLIKELY(v >= 0x7FFFFFFF || v > (uint64_t)(end - p)))
        return fail(d, *pp, "length runs past the end of the enclosing message");
    *s = p;
    *n = (uint32_t)v;
    *pp = p + v;
    return 0;
}

/* little-endian and big-endian loads */
static inline uint64_t le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return PY_BIG_ENDIAN ? __builtin_bswap64(v) : v;
}

static inline uint32_t le32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return PY_BIG_ENDIAN ? __builtin_bswap32(v) : v;
}

static inline uint64_t be64(const uint8_t *p)
{
    return __builtin_bswap64(le64(p));
}

static inline int rd_fixed64(Dec *d, const uint8_t **pp, const uint8_t *end, uint64_t *out)
{
    if (UNLIKELY(end - *pp < 8)) return fail(d, *pp, "truncated fixed64");
    *out = le64(*pp);
    *pp += 8;
    return 0;
}

static inline int rd_fixed32(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t *out)
{
    if (UNLIKELY(end - *pp < 4)) return fail(d, *pp, "truncated fixed32");
    *out = le32(*pp);
    *pp += 4;
    return 0;
}

/* varint field kept as uint32 (upb truncates the same way) */
static inline int rd_varint32(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t *out)
{
    uint64_t v;
    if (rd_varint(d, pp, end, &v)) return -1;
    *out = (uint32_t)v;
    return 0;
}

/* a sub-message field: its bounds, and the depth limit for the sub-message
   (sub_depth = its depth; at = its tag, where a too deep one is reported) */
static inline int rd_msg(Dec *d, const uint8_t **pp, const uint8_t *end, const uint8_t *at, int sub_depth,
                         const uint8_t **s, uint32_t *n)
{
    if (rd_len(d, pp, end, s, n)) return -1;
    if (UNLIKELY(sub_depth > MAX_MSG_DEPTH)) return fail_depth(d, at);
    return 0;
}

static int skip_group(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t fn, const uint8_t *at,
                      int gdepth);

/* the value of a field of any wire type but end-group; gdepth = the depth a group would have */
static int skip_value(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t tag, const uint8_t *at,
                      int gdepth)
{
    uint64_t v;
    uint32_t x;
    const uint8_t *s;
    switch (tag & 7) {
    case WT_VARINT:
        return rd_varint(d, pp, end, &v);
    case WT_I64:
        return rd_fixed64(d, pp, end, &v);
    case WT_LEN:
        return rd_len(d, pp, end, &s, &x);
    case WT_SGROUP:
        return skip_group(d, pp, end, tag >> 3, at, gdepth);
    case WT_I32:
        return rd_fixed32(d, pp, end, &x);
    default:
        return fail(d, at, "invalid wire type");
    }
}

static int skip_group(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t fn, const uint8_t *at,
                      int gdepth)
{
    if (gdepth > MAX_MSG_DEPTH) return fail_depth(d, at);
    const uint8_t *p = *pp;
    for (;;) {
        if (p >= end) return fail(d, at, "unterminated group");
        const uint8_t *t = p;
        uint32_t tag;
        if (rd_tag(d, &p, end, &tag)) return -1;
        if ((tag & 7) == WT_EGROUP) {
            if ((tag >> 3) != fn) return fail(d, t, "end-group tag does not match its start-group");
            *pp = p;
            return 0;
        }
        if (skip_value(d, &p, end, tag, t, gdepth + 1)) return -1;
    }
}

/* skip a field the caller does not use; depth = depth of the enclosing message */
static int skip_field(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t tag, const uint8_t *at,
                      int depth)
{
    if ((tag >> 3) == 0) return fail(d, at, "field number 0");
    if ((tag & 7) == WT_EGROUP) return fail(d, at, "end-group tag outside a group");
    return skip_value(d, pp, end, tag, at, depth + 1);
}

/* a field not handled by the caller: a known number here has the wrong wire type
   (known = 0: nothing is known, every other field is skipped) */
static int other_field(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t tag, const uint8_t *at,
                       int depth, uint32_t known, const char *msgname)
{
    uint32_t fn = tag >> 3;
    if (fn < 32 && ((known >> fn) & 1)) {
        char what[160];
        PyOS_snprintf(what, sizeof what, "field %u of %s has wire type %u", (unsigned)fn, msgname,
                      (unsigned)(tag & 7));
        return fail(d, at, what);
    }
    return skip_field(d, pp, end, tag, at, depth);
}

/* The next sub-message in *pp..end whose field number is in `want` (a mask of
   length-delimited fields), the other fields passed to other_field(); depth =
   the enclosing message's. Returns its field number (bounds in s, n), 0 at the
   end, -1 on error. */
static int next_msg(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t want, int depth, uint32_t known,
                    const char *msgname, const uint8_t **s, uint32_t *n)
{
    while (*pp < end) {
        const uint8_t *at = *pp;
        uint32_t tag;
        if (rd_tag(d, pp, end, &tag)) return -1;
        uint32_t fn = tag >> 3;
        if ((tag & 7) == WT_LEN && fn < 32 && ((want >> fn) & 1))
            return rd_msg(d, pp, end, at, depth + 1, s, n) ? -1 : (int)fn;
        if (other_field(d, pp, end, tag, at, depth, known, msgname)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* UTF-8, JSON text, numbers                                                  */

#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t load64(const uint8_t *p)
{
    uint64_t x;
    memcpy(&x, p, 8);
    return x;
}

/* 1 if valid UTF-8 (no surrogates, no overlongs, <= U+10FFFF) */
static int utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n && !(load64(s + i) & HIGHS)) {
            i += 8;
            continue;
        }
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        /* sequence length and the range of the second byte (the others are 0x80..0xBF) */
        size_t len;
        uint8_t lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0; /* overlong */
            else if (c == 0xED) hi = 0x9F; /* surrogates */
        }
        else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90; /* overlong */
            else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        }
        else
            return 0;
        if (n - i < len || s[i + 1] < lo || s[i + 1] > hi) return 0;
        for (size_t k = 2; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80) return 0;
        i += len;
    }
    return 1;
}

/* string field: length + UTF-8 check */
static inline int rd_str(Dec *d, const uint8_t **pp, const uint8_t *end, const uint8_t **s, uint32_t *n)
{
    if (rd_len(d, pp, end, s, n)) return -1;
    if (UNLIKELY(!utf8_valid(*s, *n))) return fail(d, *s, "invalid UTF-8 in a string field");
    return 0;
}

/* 8 bytes that JSON copies verbatim: ASCII, >= 0x20, not '"' nor '\\' */
static inline int json_plain8(uint64_t x)
{
    uint64_t lt = (x - ONES * 0x20) & ~x & HIGHS;
    uint64_t q = x ^ (ONES * 0x22);
    uint64_t bs = x ^ (ONES * 0x5C);
    uint64_t hq = (q - ONES) & ~q & HIGHS;
    uint64_t hb = (bs - ONES) & ~bs & HIGHS;
    return ((x & HIGHS) | lt | hq | hb) == 0;
}

static const char HEXD[] = "0123456789abcdef";

/* JSON string literal of valid UTF-8, escaped like json.dumps(ensure_ascii=False) */
static int json_str(Buf *b, const uint8_t *s, size_t n)
{
    if (n > ((size_t)PY_SSIZE_T_MAX - 16) / 6) {
        PyErr_NoMemory();
        return -1;
    }
    if (RESERVE(b, 6 * n + 2)) return -1;
    char *o = b->p + b->n;
    *o++ = '"';
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t x = load64(s + i);
            if (json_plain8(x)) {
                memcpy(o, &x, 8);
                o += 8;
                i += 8;
                continue;
            }
        }
        uint8_t c = s[i++];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u';
            *o++ = '0';
            *o++ = '0';
            *o++ = HEXD[c >> 4];
            *o++ = HEXD[c & 15];
        }
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    return 0;
}

static const char DIGITS2[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static int fmt_u32(char *out, uint32_t v)
{
    char tmp[12], *p = tmp + sizeof tmp;
    while (v >= 100) {
        uint32_t q = v / 100;
        p -= 2;
        memcpy(p, DIGITS2 + 2 * (v - 100 * q), 2);
        v = q;
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, DIGITS2 + 2 * v, 2);
    }
    else
        *--p = (char)('0' + v);
    int n = (int)(tmp + sizeof tmp - p);
    memcpy(out, p, (size_t)n);
    return n;
}

static void fmt_8digits(char *out, uint32_t v) /* v < 10^8, zero-padded */
{
    uint32_t a = v / 10000, b = v - 10000 * a;
    memcpy(out, DIGITS2 + 2 * (a / 100), 2);
    memcpy(out + 2, DIGITS2 + 2 * (a % 100), 2);
    memcpy(out + 4, DIGITS2 + 2 * (b / 100), 2);
    memcpy(out + 6, DIGITS2 + 2 * (b % 100), 2);
}

static int fmt_u64(char *out, uint64_t v)
{
    if (v < 100000000u) return fmt_u32(out, (uint32_t)v);
    uint64_t hi = v / 100000000u;
    uint32_t lo = (uint32_t)(v - 100000000u * hi);
    int n;
    if (hi < 100000000u)
        n = fmt_u32(out, (uint32_t)hi);
    else {
        uint64_t top = hi / 100000000u; /* v < 2^64: top < 10^4 */
        n = fmt_u32(out, (uint32_t)top);
        fmt_8digits(out + n, (uint32_t)(hi - 100000000u * top));
        n += 8;
    }
    fmt_8digits(out + n, lo);
    return n + 8;
}

static int fmt_i64(char *out, int64_t v)
{
    if (v < 0) {
        out[0] = '-';
        return 1 + fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
    }
    return fmt_u64(out, (uint64_t)v);
}

static int put_u64(Buf *b, uint64_t v)
{
    if (RESERVE(b, 24)) return -1;
    b->n += (size_t)fmt_u64(b->p + b->n, v);
    return 0;
}

static int put_i64(Buf *b, int64_t v)
{
    if (RESERVE(b, 24)) return -1;
    b->n += (size_t)fmt_i64(b->p + b->n, v);
    return 0;
}

static int put_hex(Buf *b, const uint8_t *s, size_t n)
{
    if (RESERVE(b, 2 * n + 2)) return -1;
    char *o = b->p + b->n;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        *o++ = HEXD[s[i] >> 4];
        *o++ = HEXD[s[i] & 15];
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    return 0;
}

static int put_base64(Buf *b, const uint8_t *s, size_t n)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (RESERVE(b, (n + 2) / 3 * 4 + 2)) return -1;
    char *o = b->p + b->n;
    *o++ = '"';
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8) | s[i + 2];
        *o++ = A[v >> 18];
        *o++ = A[(v >> 12) & 63];
        *o++ = A[(v >> 6) & 63];
        *o++ = A[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)s[i] << 16;
        *o++ = A[v >> 18];
        *o++ = A[(v >> 12) & 63];
        *o++ = '=';
        *o++ = '=';
    }
    else if (n - i == 2) {
        uint32_t v = ((uint32_t)s[i] << 16) | ((uint32_t)s[i + 1] << 8);
        *o++ = A[v >> 18];
        *o++ = A[(v >> 12) & 63];
        *o++ = A[(v >> 6) & 63];
        *o++ = '=';
    }
    *o++ = '"';
    b->n = (size_t)(o - b->p);
    return 0;
}

/* ---- doubles: shortest round-trip digits (Ryu, Ulf Adams 2018), formatted as repr() ---- */

#ifdef __SIZEOF_INT128__
typedef __uint128_t u128;
#define POW5_INV_BITCOUNT 125
#define POW5_BITCOUNT 125
#define POW5_INV_TABLE_SIZE 342
#define POW5_TABLE_SIZE 326
static uint64_t POW5_INV_SPLIT[POW5_INV_TABLE_SIZE][2];
static uint64_t POW5_SPLIT[POW5_TABLE_SIZE][2];
static int ryu_ready = 0;

static inline uint32_t pow5bits(int32_t e) { return (uint32_t)(((e * 1217359) >> 19) + 1); }
static inline uint32_t log10Pow2(int32_t e) { return (uint32_t)((e * 78913) >> 18); }
static inline uint32_t log10Pow5(int32_t e) { return (uint32_t)((e * 732923) >> 20); }

static inline uint32_t pow5Factor(uint64_t v)
{
    uint32_t count = 0;
    for (;;) {
        uint64_t q = v / 5;
        if (v - 5 * q != 0) break;
        v = q;
        ++count;
    }
    return count;
}

static inline int multipleOfPowerOf5(uint64_t v, uint32_t p) { return pow5Factor(v) >= p; }
static inline int multipleOfPowerOf2(uint64_t v, uint32_t p) { return (v & ((1ull << p) - 1)) == 0; }

static inline uint64_t mulShift64(uint64_t m, const uint64_t *mul, int32_t j)
{
    u128 b0 = (u128)m * mul[0];
    u128 b2 = (u128)m * mul[1];
    return (uint64_t)(((b0 >> 64) + b2) >> (j - 64));
}

/* vr, vp, vm of the interval around m2 (as Ryu's mulShiftAll64) */
static inline uint64_t mulShiftAll64(uint64_t m2, const uint64_t *mul, int32_t j, uint64_t *vp, uint64_t *vm,
                                     uint32_t mmShift)
{
    *vp = mulShift64(4 * m2 + 2, mul, j);
    *vm = mulShift64(4 * m2 - 1 - mmShift, mul, j);
    return mulShift64(4 * m2, mul, j);
}

/* the low 128 bits of v into out[0] (low half) and out[1]; steals v, NULL: error */
static int split_u128(PyObject *v, PyObject *s64, uint64_t out[2])
{
    if (!v) return -1;
    PyObject *hi = PyNumber_Rshift(v, s64);
    if (hi) {
        out[0] = PyLong_AsUnsignedLongLongMask(v);
        out[1] = PyLong_AsUnsignedLongLongMask(hi);
        Py_DECREF(hi);
    }
    Py_DECREF(v);
    return hi ? 0 : -1;
}

/* Tables from exact integer arithmetic (Python ints) at import time. */
static int ryu_init(void)
{
    int ok = 0;
    PyObject *pow = PyLong_FromLong(1), *five = PyLong_FromLong(5), *one = PyLong_FromLong(1);
    PyObject *s64 = PyLong_FromLong(64);
    if (!pow || !five || !one || !s64) goto done;
    for (int i = 0; i < POW5_INV_TABLE_SIZE; i++) {
        PyObject *bl = PyObject_CallMethod(pow, "bit_length", NULL);
        if (!bl) goto done;
        long bitlen = PyLong_AsLong(bl);
        Py_DECREF(bl);
        if ((uint32_t)bitlen != pow5bits(i)) goto done; /* formula check */
        if (i < POW5_TABLE_SIZE) {
            long shift = bitlen - POW5_BITCOUNT;
            PyObject *sh = PyLong_FromLong(shift >= 0 ? shift : -shift);
            if (!sh) goto done;
            PyObject *v = shift >= 0 ? PyNumber_Rshift(pow, sh) : PyNumber_Lshift(pow, sh);
            Py_DECREF(sh);
            if (split_u128(v, s64, POW5_SPLIT[i])) goto done;
        }
        PyObject *sh = PyLong_FromLong(bitlen - 1 + POW5_INV_BITCOUNT);
        if (!sh) goto done;
        PyObject *p2 = PyNumber_Lshift(one, sh);
        Py_DECREF(sh);
        if (!p2) goto done;
        PyObject *q = PyNumber_FloorDivide(p2, pow);
        Py_DECREF(p2);
        if (!q) goto done;
        PyObject *v = PyNumber_Add(q, one);
        Py_DECREF(q);
        if (split_u128(v, s64, POW5_INV_SPLIT[i])) goto done;
        PyObject *next = PyNumber_Multiply(pow, five);
        if (!next) goto done;
        Py_DECREF(pow);
        pow = next;
    }
    ok = 1;
done:
    Py_XDECREF(pow);
    Py_XDECREF(five);
    Py_XDECREF(one);
    Py_XDECREF(s64);
    if (PyErr_Occurred()) PyErr_Clear();
    ryu_ready = ok;
    return 0;
}

/* shortest decimal digits: value = *out * 10^*exp10 */
static void ryu_d2d(uint64_t ieeeMantissa, uint32_t ieeeExponent, uint64_t *out, int32_t *exp10)
{
    int32_t e2;
    uint64_t m2;
    if (ieeeExponent == 0) {
        e2 = 1 - 1023 - 52 - 2;
        m2 = ieeeMantissa;
    }
    else {
        e2 = (int32_t)ieeeExponent - 1023 - 52 - 2;
        m2 = (1ull << 52) | ieeeMantissa;
    }
    const int even = (m2 & 1) == 0;
    const int acceptBounds = even;
    const uint64_t mv = 4 * m2;
    const uint32_t mmShift = ieeeMantissa != 0 || ieeeExponent <= 1;
    uint64_t vr, vp, vm;
    int32_t e10;
    int vmIsTrailingZeros = 0, vrIsTrailingZeros = 0;
    if (e2 >= 0) {
        const uint32_t q = log10Pow2(e2) - (e2 > 3);
        e10 = (int32_t)q;
        const int32_t k = POW5_INV_BITCOUNT + (int32_t)pow5bits((int32_t)q) - 1;
        const int32_t i = -e2 + (int32_t)q + k;
        vr = mulShiftAll64(m2, POW5_INV_SPLIT[q], i, &vp, &vm, mmShift);
        if (q <= 21) {
            const uint32_t mvMod5 = (uint32_t)(mv % 5);
            if (mvMod5 == 0)
                vrIsTrailingZeros = multipleOfPowerOf5(mv, q);
            else if (acceptBounds)
                vmIsTrailingZeros = multipleOfPowerOf5(mv - 1 - mmShift, q);
            else
                vp -= (uint64_t)multipleOfPowerOf5(mv + 2, q);
        }
    }
    else {
        const uint32_t q = log10Pow5(-e2) - (-e2 > 1);
        e10 = (int32_t)q + e2;
        const int32_t i = -e2 - (int32_t)q;
        const int32_t k = (int32_t)pow5bits(i) - POW5_BITCOUNT;
        const int32_t j = (int32_t)q - k;
        vr = mulShiftAll64(m2, POW5_SPLIT[i], j, &vp, &vm, mmShift);
        if (q <= 1) {
            vrIsTrailingZeros = 1;
            if (acceptBounds)
                vmIsTrailingZeros = mmShift == 1;
            else
                --vp;
        }
        else if (q < 63) {
            vrIsTrailingZeros = multipleOfPowerOf2(mv, q);
        }
    }
    int32_t removed = 0;
    uint8_t lastRemovedDigit = 0;
    uint64_t output;
    if (vmIsTrailingZeros || vrIsTrailingZeros) {
        for (;;) {
            const uint64_t vpDiv10 = vp / 10, vmDiv10 = vm / 10;
            if (vpDiv10 <= vmDiv10) break;
            const uint32_t vmMod10 = (uint32_t)(vm - 10 * vmDiv10);
            const uint64_t vrDiv10 = vr / 10;
            const uint32_t vrMod10 = (uint32_t)(vr - 10 * vrDiv10);
            vmIsTrailingZeros &= vmMod10 == 0;
            vrIsTrailingZeros &= lastRemovedDigit == 0;
            lastRemovedDigit = (uint8_t)vrMod10;
            vr = vrDiv10;
            vp = vpDiv10;
            vm = vmDiv10;
            ++removed;
        }
        if (vmIsTrailingZeros) {
            for (;;) {
                const uint64_t vmDiv10 = vm / 10;
                const uint32_t vmMod10 = (uint32_t)(vm - 10 * vmDiv10);
                if (vmMod10 != 0) break;
                const uint64_t vpDiv10 = vp / 10, vrDiv10 = vr / 10;
                const uint32_t vrMod10 = (uint32_t)(vr - 10 * vrDiv10);
                vrIsTrailingZeros &= lastRemovedDigit == 0;
                lastRemovedDigit = (uint8_t)vrMod10;
                vr = vrDiv10;
                vp = vpDiv10;
                vm = vmDiv10;
                ++removed;
            }
        }
        if (vrIsTrailingZeros && lastRemovedDigit == 5 && vr % 2 == 0) lastRemovedDigit = 4;
        output = vr + ((vr == vm && (!acceptBounds || !vmIsTrailingZeros)) || lastRemovedDigit >= 5);
    }
    else {
        int roundUp = 0;
        const uint64_t vpDiv100 = vp / 100, vmDiv100 = vm / 100;
        if (vpDiv100 > vmDiv100) {
            const uint64_t vrDiv100 = vr / 100;
            const uint32_t vrMod100 = (uint32_t)(vr - 100 * vrDiv100);
            roundUp = vrMod100 >= 50;
            vr = vrDiv100;
            vp = vpDiv100;
            vm = vmDiv100;
            removed += 2;
        }
        for (;;) {
            const uint64_t vpDiv10 = vp / 10, vmDiv10 = vm / 10;
            if (vpDiv10 <= vmDiv10) break;
            const uint64_t vrDiv10 = vr / 10;
            const uint32_t vrMod10 = (uint32_t)(vr - 10 * vrDiv10);
            roundUp = vrMod10 >= 5;
            vr = vrDiv10;
            vp = vpDiv10;
            vm = vmDiv10;
            ++removed;
        }
        output = vr + (vr == vm || roundUp);
    }
    *out = output;
    *exp10 = e10 + removed;
}
#endif /* __SIZEOF_INT128__ */

/* repr(float) of a finite double; out needs 32 bytes; returns length */
static int fmt_double(char *out, double v)
{
#ifdef __SIZEOF_INT128__
    if (LIKELY(ryu_ready)) {
        uint64_t bits;
        memcpy(&bits, &v, 8);
        char *o = out;
        if (bits >> 63) *o++ = '-';
        uint64_t mant = bits & ((1ull << 52) - 1);
        uint32_t expo = (uint32_t)((bits >> 52) & 0x7ff);
        if (expo == 0 && mant == 0) {
            memcpy(o, "0.0", 3);
            return (int)(o + 3 - out);
        }
        uint64_t digits;
        int32_t e10;
        ryu_d2d(mant, expo, &digits, &e10);
        while (digits % 10 == 0) {
            digits /= 10;
            e10++;
        }
        char db[24];
        int n = fmt_u64(db, digits);
        int decpt = n + e10;
        if (decpt <= -4 || decpt > 16) {
            *o++ = db[0];
            if (n > 1) {
                *o++ = '.';
                memcpy(o, db + 1, (size_t)(n - 1));
                o += n - 1;
            }
            *o++ = 'e';
            int x = decpt - 1;
            if (x < 0) {
                *o++ = '-';
                x = -x;
            }
            else
                *o++ = '+';
            if (x >= 100) {
                *o++ = (char)('0' + x / 100);
                x %= 100;
            }
            *o++ = (char)('0' + x / 10);
            *o++ = (char)('0' + x % 10);
        }
        else if (decpt <= 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -decpt; i++) *o++ = '0';
            memcpy(o, db, (size_t)n);
            o += n;
        }
        else if (decpt >= n) {
            memcpy(o, db, (size_t)n);
            o += n;
            for (int i = n; i < decpt; i++) *o++ = '0';
            *o++ = '.';
            *o++ = '0';
        }
        else {
            memcpy(o, db, (size_t)decpt);
            o += decpt;
            *o++ = '.';
            memcpy(o, db + decpt, (size_t)(n - decpt));
            o += n - decpt;
        }
        return (int)(o - out);
    }
#endif
    char *s = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (!s) return -1;
    size_t n = strlen(s);
    if (n > 31) n = 31;
    memcpy(out, s, n);
    PyMem_Free(s);
    return (int)n;
}

static int put_double(Buf *b, double v)
{
    if (v != v) return PUTS(b, "\"NaN\"");
    if (v == Py_HUGE_VAL) return PUTS(b, "\"Infinity\"");
    if (v == -Py_HUGE_VAL) return PUTS(b, "\"-Infinity\"");
    if (RESERVE(b, 32)) return -1;
    int n = fmt_double(b->p + b->n, v);
    if (n < 0) return -1;
    b->n += (size_t)n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Output columns                                                             */

static inline int same_bytes(const uint8_t *a, const uint8_t *b, uint32_t n)
{
    while (n >= 8) {
        if (load64(a) != load64(b)) return 0;
        a += 8;
        b += 8;
        n -= 8;
    }
    while (n--)
        if (*a++ != *b++) return 0;
    return 1;
}

/* JSON entries in b (each with a leading ','): frame them in place as open...close */
static int frame(Buf *b, char open, char close)
{
    if (b->n == 0) return 0;
    b->p[0] = open; /* replaces the leading ',' */
    return buf_putc(b, close);
}

static int fail_text(void)
{
    PyErr_Format(PyExc_ValueError,
                 "OTLP trace request too large: its spans hold more than %zu bytes of text "
                 "(string and JSON columns); send fewer spans per request",
                 max_text);
    return -1;
}

static inline void set_bit(uint8_t *bitmap, Py_ssize_t i)
{
    bitmap[i >> 3] |= (uint8_t)(1u << (i & 7));
}

/* Row i of the column with validity bitmap v is valid (set) or null. */
static inline void put_validity(Dec *d, int v, Py_ssize_t i, int set)
{
    if (set)
        set_bit(d->bits[v], i);
    else
        d->nulls[v]++;
}

/* Row i of text column c: n bytes at s, or null when s is NULL. */
static inline int put_text(Dec *d, int c, Py_ssize_t i, const void *s, size_t n)
{
    Buf *b = &d->sdata[c];
    if (s) {
        if (UNLIKELY(n > d->text_room)) return fail_text();
        d->text_room -= n;
        if (n && buf_put(b, (const char *)s, n)) return -1;
    }
    put_validity(d, c, i, s != NULL);
    d->soff[c][i + 1] = (int32_t)b->n; /* <= max_text: no overflow */
    return 0;
}

/* Row i of text column c from a string field (empty or absent: null, as in proto3). */
static inline int put_str(Dec *d, int c, Py_ssize_t i, const uint8_t *s, uint32_t n)
{
    return put_text(d, c, i, n ? s : NULL, n);
}

/* Row i of text column c from a framed JSON buffer (empty: null). */
static inline int put_json(Dec *d, int c, Py_ssize_t i, const Buf *b)
{
    return put_text(d, c, i, b->n ? b->p : NULL, b->n);
}

/* Row i of text column c from a promoted string (unset: null; "" stays "") */
static inline int put_promoted(Dec *d, int c, Py_ssize_t i, const PromoVal *v)
{
    return put_text(d, c, i, v->set ? (v->s ? (const void *)v->s : (const void *)"") : NULL, v->n);
}

/* ------------------------------------------------------------------------ */
/* AnyValue / KeyValue                                                        */

#define KNOWN_ANY BITS(1, 8)
#define KNOWN_KV BITS(1, 3)
#define KNOWN_LIST BITS(1, 1)

/* The scans below are strict (everything upb keeps: a known field with the
   wrong wire type is an error) or lenient: a sub-message that upb parses but
   then drops (an earlier oneof member) is only validated, each occurrence on
   its own, with a known field of the wrong wire type skipped as unknown. */

typedef struct {
    int which; /* final oneof field number, 0 = none */
    const uint8_t *s;
    uint32_t slen;
    uint64_t u;
    int nmsg;           /* occurrences of array_value / kvlist_value */
    Py_ssize_t run_seg; /* where the final array/kvlist run starts: segment, */
    const uint8_t *run_s; /* and payload of its first occurrence */
} AnyScan;

static int any_scan(Dec *d, const Segs *segs, int depth, AnyScan *a, int lenient);
static int kv_scan(Dec *d, const uint8_t *p, const uint8_t *end, int depth, KVRef *r, int lenient);

/* Lenient validation of one occurrence of a dropped AnyValue */
static int lv_any(Dec *d, const uint8_t *p, const uint8_t *end, int depth)
{
    Segs one;
    AnyScan a;
    segs_one(&one, p, end);
    return any_scan(d, &one, depth, &a, 1);
}

/* Lenient validation of an ArrayValue (fn=5) or KeyValueList (fn=6): both are `repeated ... values = 1` */
static int lv_list(Dec *d, const uint8_t *p, const uint8_t *end, int depth, int is_kv)
{
    const uint8_t *s;
    uint32_t n;
    KVRef r;
    int fn;
    while ((fn = next_msg(d, &p, end, BITS(1, 1), depth, 0, NULL, &s, &n)) > 0)
        if (is_kv ? kv_scan(d, s, s + n, depth + 1, &r, 1) : lv_any(d, s, s + n, depth + 1)) return -1;
    return fn;
}

/* First pass over an AnyValue (all its merged segments); depth = AnyValue's */
static int any_scan(Dec *d, const Segs *segs, int depth, AnyScan *a, int lenient)
{
    a->which = 0;
    a->nmsg = 0;
    a->s = NULL;
    a->slen = 0;
    a->u = 0;
    a->run_seg = 0;
    a->run_s = NULL;
    for (Py_ssize_t i = 0; i < segs->n; i++) {
        const uint8_t *p = segs->v[i].p, *end = segs->v[i].e;
        while (p < end) {
            const uint8_t *at = p, *s;
            uint32_t tag, n;
            if (rd_tag(d, &p, end, &tag)) return -1;
            switch (tag) {
            case TAG(1, WT_LEN):
            case TAG(7, WT_LEN):
                if (tag == TAG(1, WT_LEN) ? rd_str(d, &p, end, &s, &n) : rd_len(d, &p, end, &s, &n)) return -1;
                a->s = s;
                a->slen = n;
                a->which = (int)(tag >> 3);
                break;
            case TAG(2, WT_VARINT):
            case TAG(3, WT_VARINT):
            case TAG(8, WT_VARINT):
                if (rd_varint(d, &p, end, &a->u)) return -1;
                a->which = (int)(tag >> 3);
                break;
            case TAG(4, WT_I64):
                if (rd_fixed64(d, &p, end, &a->u)) return -1;
                a->which = 4;
                break;
            case TAG(5, WT_LEN):
            case TAG(6, WT_LEN):
                if (rd_msg(d, &p, end, at, depth + 1, &s, &n)) return -1;
                if (lenient) {
                    if (lv_list(d, s, s + n, depth + 1, tag == TAG(6, WT_LEN))) return -1;
                    break;
                }
                a->nmsg++;
                if (a->which != (int)(tag >> 3)) {
                    a->which = (int)(tag >> 3);
                    a->run_seg = i;
                    a->run_s = s;
                }
                break;
            default:
                if (other_field(d, &p, end, tag, at, depth, lenient ? 0 : KNOWN_ANY, "AnyValue")) return -1;
            }
        }
    }
    return 0;
}

/* Second pass when array/kvlist occurred: validate dropped ones, collect the final run */
static int any_runs(Dec *d, const Segs *segs, const AnyScan *a, int depth, Segs *run)
{
    for (Py_ssize_t i = 0; i < segs->n; i++) {
        const uint8_t *p = segs->v[i].p, *end = segs->v[i].e, *s;
        uint32_t n;
        int fn;
        while ((fn = next_msg(d, &p, end, BITS(5, 6), depth, 0, NULL, &s, &n)) > 0) {
            int in_run = fn == a->which && (i > a->run_seg || (i == a->run_seg && s >= a->run_s));
            if (in_run) {
                if (run && segs_push(run, s, s + n)) return -1;
            }
            else if (lv_list(d, s, s + n, depth + 1, fn == 6))
                return -1;
        }
        if (fn < 0) return -1;
    }
    return 0;
}

/* A KeyValue; strict: its key and first `value` into r (value occurrences
   counted), lenient: every `value` validated */
static int kv_scan(Dec *d, const uint8_t *p, const uint8_t *end, int depth, KVRef *r, int lenient)
{
    r->kv = p;
    r->kvend = end;
    r->key = p;
    r->keylen = 0;
    r->val = r->valend = NULL;
    r->nval = 0;
    r->slot = -1;
    while (p < end) {
        const uint8_t *at = p, *s;
        uint32_t tag, n;
        uint64_t v;
        if (rd_tag(d, &p, end, &tag)) return -1;
        switch (tag) {
        case TAG(1, WT_LEN):
            if (rd_str(d, &p, end, &r->key, &r->keylen)) return -1;
            break;
        case TAG(2, WT_LEN):
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n)) return -1;
            if (lenient) {
                if (lv_any(d, s, s + n, depth + 1)) return -1;
            }
            else if (r->nval++ == 0) {
                r->val = s;
                r->valend = s + n;
            }
            break;
        case TAG(3, WT_VARINT):
            if (rd_varint(d, &p, end, &v)) return -1;
            break;
        default:
            if (other_field(d, &p, end, tag, at, depth, lenient ? 0 : KNOWN_KV, "KeyValue")) return -1;
        }
    }
    return 0;
}

/* the merged `value` segments of a scanned KeyValue */
static int kv_value_segs(Dec *d, const KVRef *r, Segs *vs)
{
    segs_init(vs);
    if (r->nval == 0) return 0;
    if (r->nval == 1) return segs_push(vs, r->val, r->valend);
    const uint8_t *p = r->kv, *s;
    uint32_t n;
    int fn;
    while ((fn = next_msg(d, &p, r->kvend, BITS(2, 2), 0, 0, NULL, &s, &n)) > 0)
        if (segs_push(vs, s, s + n)) return -1;
    return fn;
}

static int render_kv(Dec *d, Buf *b, const uint8_t *p, const uint8_t *end, int depth, int level);

/* JSON of an AnyValue made of `segs`; depth = its message depth, level = arrays/kvlists around it */
static int render_any(Dec *d, Buf *b, const Segs *segs, int depth, int level)
{
    AnyScan a;
    if (any_scan(d, segs, depth, &a, 0)) return -1;
    Segs run;
    segs_init(&run);
    int rc = -1;
    if (a.nmsg && any_runs(d, segs, &a, depth, &run)) goto done;
    switch (a.which) {
    case 1:
        rc = json_str(b, a.s, a.slen);
        goto done;
    case 2:
        rc = a.u ? PUTS(b, "true") : PUTS(b, "false");
        goto done;
    case 3:
        rc = put_i64(b, (int64_t)a.u);
        goto done;
    case 4: {
        double x;
        memcpy(&x, &a.u, 8);
        rc = put_double(b, x);
        goto done;
    }
    case 7:
        rc = put_base64(b, a.s, a.slen);
        goto done;
    case 5:
    case 6:
        break;
    default: /* unset, string_value_strindex */
        rc = PUTS(b, "null");
        goto done;
    }
    if (level >= MAX_VALUE_DEPTH) {
        PyErr_Format(PyExc_ValueError,
                     "malformed OTLP trace request: attribute value nested more than %d arrays/kvlists deep "
                     "at byte offset %zd",
                     MAX_VALUE_DEPTH, (Py_ssize_t)(run.v[0].p - d->base));
        goto done;
    }
    {
        int is_kv = a.which == 6, first = 1;
        if (buf_putc(b, is_kv ? '{' : '[')) goto done;
        for (Py_ssize_t i = 0; i < run.n; i++) {
            const uint8_t *p = run.v[i].p, *s;
            uint32_t n;
            int fn;
            while ((fn = next_msg(d, &p, run.v[i].e, BITS(1, 1), depth + 1, KNOWN_LIST,
                                  is_kv ? "KeyValueList" : "ArrayValue", &s, &n)) > 0) {
                if (!first && buf_putc(b, ',')) goto done;
                first = 0;
                Segs one;
                segs_one(&one, s, s + n);
                if (is_kv ? render_kv(d, b, s, s + n, depth + 2, level + 1)
                          : render_any(d, b, &one, depth + 2, level + 1))
                    goto done;
            }
            if (fn < 0) goto done;
        }
        rc = buf_putc(b, is_kv ? '}' : ']');
    }
done:
    segs_free(&run);
    return rc;
}

/* "key":value of a scanned KeyValue whose merged value is vs; depth = KeyValue's depth */
static int put_kv_json(Dec *d, Buf *b, const KVRef *r, const Segs *vs, int depth, int level)
{
    if (json_str(b, r->key, r->keylen) || buf_putc(b, ':')) return -1;
    return render_any(d, b, vs, depth + 1, level);
}

/* "key":value of one KeyValue (no promotion); depth = KeyValue's depth */
static int render_kv(Dec *d, Buf *b, const uint8_t *p, const uint8_t *end, int depth, int level)
{
    KVRef r;
    Segs vs;
    if (kv_scan(d, p, end, depth, &r, 0)) return -1;
    int rc = kv_value_segs(d, &r, &vs) ? -1 : put_kv_json(d, b, &r, &vs, depth, level);
    segs_free(&vs);
    return rc;
}

/* ',' and "key":value of the KeyValue sub-message field at *pp into b; depth = the enclosing message's */
static int append_kv(Dec *d, Buf *b, const uint8_t **pp, const uint8_t *end, const uint8_t *at, int depth)
{
    const uint8_t *s;
    uint32_t n;
    if (rd_msg(d, pp, end, at, depth + 1, &s, &n)) return -1;
    return buf_putc(b, ',') || render_kv(d, b, s, s + n, depth + 1, 0) ? -1 : 0;
}

static void promo_init(PromoTable *t)
{
    for (int i = 0; i < t->n; i++) {
        t->len[i] = (uint32_t)strlen(t->slot[i].key);
        t->tail[i] = load64((const uint8_t *)t->slot[i].key + t->len[i] - 8);
    }
}

static int slot_of(const PromoTable *t, const uint8_t *key, uint32_t len)
{
    if (len < 8) return -1;
    uint64_t tail = load64(key + len - 8);
    for (int i = 0; i < t->n; i++)
        if (t->tail[i] == tail && t->len[i] == len && same_bytes((const uint8_t *)t->slot[i].key, key, len))
            return i;
    return -1;
}

static int push_kv(Dec *d, const uint8_t *p, const uint8_t *end, int depth, const PromoTable *t)
{
    if (d->nkv == d->kvcap) {
        Py_ssize_t cap = d->kvcap ? d->kvcap * 2 : 32;
        KVRef *nk = PyMem_Realloc(d->kv, (size_t)cap * sizeof(KVRef));
        if (!nk) {
            PyErr_NoMemory();
            return -1;
        }
        d->kv = nk;
        d->kvcap = cap;
    }
    KVRef *r = &d->kv[d->nkv];
    if (kv_scan(d, p, end, depth, r, 0)) return -1;
    r->slot = slot_of(t, r->key, r->keylen);
    d->nkv++;
    return 0;
}

/* Promote the last occurrence of each table key when its type fits; JSON of the rest
   into b (entries with a leading ','). out[slot] is set for the promoted slots
   (the caller zeroes out[]). */
static int attrs_promote(Dec *d, Buf *b, int kv_depth, const PromoTable *t, PromoVal *out)
{
    Py_ssize_t last[MAX_SLOTS];
    for (int i = 0; i < t->n; i++) last[i] = -1;
    for (Py_ssize_t i = 0; i < d->nkv; i++)
        if (d->kv[i].slot >= 0) last[d->kv[i].slot] = i;
    buf_reset(b);
    for (Py_ssize_t i = 0; i < d->nkv; i++) {
        KVRef *r = &d->kv[i];
        Segs vs;
        if (kv_value_segs(d, r, &vs)) goto error;
        if (r->slot >= 0 && last[r->slot] == i) {
            AnyScan a;
            if (any_scan(d, &vs, kv_depth + 1, &a, 0)) goto error;
            if (a.nmsg && a.which != 5 && a.which != 6 && any_runs(d, &vs, &a, kv_depth + 1, NULL))
                goto error;
            PromoVal *o = &out[r->slot];
            int kind = t->slot[r->slot].kind;
            if (kind == K_STR && a.which == 1) {
                o->s = a.s;
                o->n = a.slen;
            }
            else if (kind == K_FLOAT && a.which == 4)
                o->bits = a.u; /* the double's bits, NaN payloads included */
            else if (kind == K_FLOAT && a.which == 3) {
                double x = (double)(int64_t)a.u;
                memcpy(&o->bits, &x, 8);
            }
            else if (kind == K_BOOL && a.which == 2)
                o->bits = a.u != 0;
            else
                goto render;
            o->set = 1;
            segs_free(&vs);
            continue;
        }
    render:
        if (buf_putc(b, ',') || put_kv_json(d, b, r, &vs, kv_depth, 0)) goto error;
        segs_free(&vs);
        continue;
    error:
        segs_free(&vs);
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Trace messages                                                             */

#define KNOWN_REQUEST BITS(1, 1)
#define KNOWN_RS BITS(1, 3)
#define KNOWN_RESOURCE BITS(1, 3)
#define KNOWN_ENTITY BITS(1, 4)
#define KNOWN_SS BITS(1, 3)
#define KNOWN_SCOPE BITS(1, 4)
#define KNOWN_SPAN BITS(1, 16)
#define KNOWN_EVENT BITS(1, 4)
#define KNOWN_LINK BITS(1, 6)
#define KNOWN_STATUS BITS(2, 3)

static int cols_reserve(Dec *d)
{
    if (d->n < d->cap) return 0;
    Py_ssize_t cap = d->cap ? d->cap * 2 : 512; /* a multiple of 8: whole bitmap bytes */
    size_t old_bytes = (size_t)d->cap / 8, new_bytes = (size_t)cap / 8;
    for (int c = 0; c < N_STR; c++) {
        int32_t *np = PyMem_Realloc(d->soff[c], ((size_t)cap + 1) * 4);
        if (!np) goto nomem;
        if (!d->soff[c]) np[0] = 0;
        d->soff[c] = np;
    }
    for (int c = 0; c < N_BITMAPS; c++) {
        uint8_t *np = PyMem_Realloc(d->bits[c], new_bytes);
        if (!np) goto nomem;
        memset(np + old_bytes, 0, new_bytes - old_bytes);
        d->bits[c] = np;
    }
    for (int c = 0; c < N_FIXED; c++) {
        void *np = PyMem_Realloc(d->fixed[c], (size_t)cap * (size_t)FIXED_COLS[c].width);
        if (!np) goto nomem;
        d->fixed[c] = np;
    }
    int32_t *runs = PyMem_Realloc(d->run_len, (size_t)cap * 4);
    if (!runs) goto nomem;
    d->run_len = runs;
    d->cap = cap;
    return 0;
nomem:
    PyErr_NoMemory();
    return -1;
}

/* the values of fixed-width column c (of the width FIXED_COLS[c] says) */
static inline uint64_t *col_u64(Dec *d, int c) { return (uint64_t *)d->fixed[c]; }
static inline uint32_t *col_u32(Dec *d, int c) { return (uint32_t *)d->fixed[c]; }
static inline uint8_t *col_u8(Dec *d, int c) { return (uint8_t *)d->fixed[c]; }

static int entity_ref(Dec *d, const uint8_t *p, const uint8_t *end, int depth)
{
    while (p < end) {
        const uint8_t *at = p, *s;
        uint32_t tag, n;
        if (rd_tag(d, &p, end, &tag)) return -1;
        if ((tag & 7) == WT_LEN && (tag >> 3) >= 1 && (tag >> 3) <= 4) {
            if (rd_str(d, &p, end, &s, &n)) return -1;
        }
        else if (other_field(d, &p, end, tag, at, depth, KNOWN_ENTITY, "EntityRef"))
            return -1;
    }
    return 0;
}

/* trace_id = 1, span_id = 2, trace_state = 3: the first fields of both Span and Span.Link */
typedef struct {
    const uint8_t *tid, *sid, *ts;
    uint32_t tidn, sidn, tsn;
} SpanIds;

/* one of those fields (tag is one of their length-delimited tags) */
static inline int rd_span_ids(Dec *d, const uint8_t **pp, const uint8_t *end, uint32_t tag, SpanIds *ids)
{
    if (tag == TAG(1, WT_LEN)) return rd_len(d, pp, end, &ids->tid, &ids->tidn);
    if (tag == TAG(2, WT_LEN)) return rd_len(d, pp, end, &ids->sid, &ids->sidn);
    return rd_str(d, pp, end, &ids->ts, &ids->tsn);
}

/* The rest of an event or link after its leading entries: its attributes (the
   JSON entries in ab, each with a leading ','), flags (links only) and
   dropped_attributes_count, the last two left out when 0; then the closing '}'. */
static int end_event_or_link(Buf *b, Buf *ab, uint32_t flags, uint32_t dropped)
{
    if (ab->n && (PUTS(b, ",\"attributes\":") || frame(ab, '{', '}') || buf_put(b, ab->p, ab->n))) return -1;
    if (flags && (PUTS(b, ",\"flags\":") || put_u64(b, flags))) return -1;
    if (dropped && (PUTS(b, ",\"dropped_attributes_count\":") || put_u64(b, dropped))) return -1;
    return buf_putc(b, '}');
}

/* Event -> ',{...}' into b; depth = Event's */
static int render_event(Dec *d, Buf *b, const uint8_t *p, const uint8_t *end, int depth)
{
    uint64_t t = 0;
    const uint8_t *name = NULL;
    uint32_t namelen = 0, dropped = 0;
    Buf *ab = &d->scratch;
    buf_reset(ab);
    while (p < end) {
        const uint8_t *at = p;
        uint32_t tag;
        if (rd_tag(d, &p, end, &tag)) return -1;
        switch (tag) {
        case TAG(1, WT_I64):
            if (rd_fixed64(d, &p, end, &t)) return -1;
            break;
        case TAG(2, WT_LEN):
            if (rd_str(d, &p, end, &name, &namelen)) return -1;
            break;
        case TAG(3, WT_LEN):
            if (append_kv(d, ab, &p, end, at, depth)) return -1;
            break;
        case TAG(4, WT_VARINT):
            if (rd_varint32(d, &p, end, &dropped)) return -1;
            break;
        default:
            if (other_field(d, &p, end, tag, at, depth, KNOWN_EVENT, "Span.Event")) return -1;
        }
    }
    if (PUTS(b, ",{\"time_unix_nano\":") || put_u64(b, t) || PUTS(b, ",\"name\":") ||
        json_str(b, name, namelen))
        return -1;
    return end_event_or_link(b, ab, 0, dropped);
}

/* Link -> ',{...}' into b; depth = Link's */
static int render_link(Dec *d, Buf *b, const uint8_t *p, const uint8_t *end, int depth)
{
    SpanIds ids = {0};
    uint32_t dropped = 0, flags = 0;
    Buf *ab = &d->scratch;
    buf_reset(ab);
    while (p < end) {
        const uint8_t *at = p;
        uint32_t tag;
        if (rd_tag(d, &p, end, &tag)) return -1;
        switch (tag) {
        case TAG(1, WT_LEN):
        case TAG(2, WT_LEN):
        case TAG(3, WT_LEN):
            if (rd_span_ids(d, &p, end, tag, &ids)) return -1;
            break;
        case TAG(4, WT_LEN):
            if (append_kv(d, ab, &p, end, at, depth)) return -1;
            break;
        case TAG(5, WT_VARINT):
            if (rd_varint32(d, &p, end, &dropped)) return -1;
            break;
        case TAG(6, WT_I32):
            if (rd_fixed32(d, &p, end, &flags)) return -1;
            break;
        default:
            if (other_field(d, &p, end, tag, at, depth, KNOWN_LINK, "Span.Link")) return -1;
        }
    }
    if (PUTS(b, ",{\"trace_id\":") || put_hex(b, ids.tid, ids.tidn) || PUTS(b, ",\"span_id\":") ||
        put_hex(b, ids.sid, ids.sidn))
        return -1;
    if (ids.tsn && (PUTS(b, ",\"trace_state\":") || json_str(b, ids.ts, ids.tsn))) return -1;
    return end_event_or_link(b, ab, flags, dropped);
}

/* one occurrence of a span's Status: later fields override earlier ones; depth = Status's */
static int parse_status(Dec *d, const uint8_t *p, const uint8_t *end, int depth, const uint8_t **msg,
                        uint32_t *msgn, uint64_t *code)
{
    while (p < end) {
        const uint8_t *at = p;
        uint32_t tag;
        if (rd_tag(d, &p, end, &tag)) return -1;
        if (tag == TAG(2, WT_LEN)) {
            if (rd_str(d, &p, end, msg, msgn)) return -1;
        }
        else if (tag == TAG(3, WT_VARINT)) {
            if (rd_varint(d, &p, end, code)) return -1;
        }
        else if (other_field(d, &p, end, tag, at, depth, KNOWN_STATUS, "Status"))
            return -1;
    }
    return 0;
}

static int all_zero(const uint8_t *s, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        if (s[i]) return 0;
    return 1;
}

/* 1 with the reason in detail when the id (n bytes at s) is not `size` bytes or is all zero */
static int bad_id(char *detail, size_t cap, const char *what, const uint8_t *s, uint32_t n, uint32_t size)
{
    if (n != size)
        PyOS_snprintf(detail, cap, "%s must be %u bytes, got %u", what, (unsigned)size, (unsigned)n);
    else if (all_zero(s, size))
        PyOS_snprintf(detail, cap, "%s must not be all zero", what);
    else
        return 0;
    return 1;
}

static int parse_span(Dec *d, const uint8_t *p, const uint8_t *end, int depth, const Ctx *ctx,
                      Py_ssize_t index)
{
    SpanIds ids = {0};
    const uint8_t *pid = NULL, *name = NULL, *smsg = NULL, *s;
    uint32_t pidn = 0, namen = 0, smsgn = 0, n;
    uint64_t kind = 0, start = 0, endt = 0, code = 0;
    uint32_t flags = 0;
    uint32_t dropped[3] = {0, 0, 0}; /* of attributes, events, links: fields 10, 12, 14 */
    PromoVal prom[MAX_SLOTS];
    memset(prom, 0, sizeof prom);
    buf_reset(&d->events);
    buf_reset(&d->links);
    d->nkv = 0;
    while (p < end) {
        const uint8_t *at = p;
        uint32_t tag;
        if (rd_tag(d, &p, end, &tag)) return -1;
        switch (tag) {
        case TAG(1, WT_LEN):
        case TAG(2, WT_LEN):
        case TAG(3, WT_LEN):
            if (rd_span_ids(d, &p, end, tag, &ids)) return -1;
            break;
        case TAG(4, WT_LEN):
            if (rd_len(d, &p, end, &pid, &pidn)) return -1;
            break;
        case TAG(5, WT_LEN):
            if (rd_str(d, &p, end, &name, &namen)) return -1;
            break;
        case TAG(6, WT_VARINT):
            if (rd_varint(d, &p, end, &kind)) return -1;
            break;
        case TAG(7, WT_I64):
            if (rd_fixed64(d, &p, end, &start)) return -1;
            break;
        case TAG(8, WT_I64):
            if (rd_fixed64(d, &p, end, &endt)) return -1;
            break;
        case TAG(10, WT_VARINT):
        case TAG(12, WT_VARINT):
        case TAG(14, WT_VARINT):
            if (rd_varint32(d, &p, end, &dropped[((tag >> 3) - 10) / 2])) return -1;
            break;
        case TAG(9, WT_LEN):
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n) || push_kv(d, s, s + n, depth + 1, &SPAN_PROMO))
                return -1;
            break;
        case TAG(11, WT_LEN):
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n) || render_event(d, &d->events, s, s + n, depth + 1))
                return -1;
            break;
        case TAG(13, WT_LEN):
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n) || render_link(d, &d->links, s, s + n, depth + 1))
                return -1;
            break;
        case TAG(15, WT_LEN): /* Status: merged across occurrences */
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n) ||
                parse_status(d, s, s + n, depth + 1, &smsg, &smsgn, &code))
                return -1;
            break;
        case TAG(16, WT_I32):
            if (rd_fixed32(d, &p, end, &flags)) return -1;
            break;
        default:
            if (other_field(d, &p, end, tag, at, depth, KNOWN_SPAN, "Span")) return -1;
        }
    }
    if (attrs_promote(d, &d->attrs, depth + 1, &SPAN_PROMO, prom)) return -1;

    /* rejection, in contract order */
    int reason = -1;
    char detail[128];
    if (bad_id(detail, sizeof detail, "trace_id", ids.tid, ids.tidn, 16))
        reason = R_TRACE_ID;
    else if (bad_id(detail, sizeof detail, "span_id", ids.sid, ids.sidn, 8))
        reason = R_SPAN_ID;
    else if (pidn != 0 && pidn != 8) {
        reason = R_PARENT;
        PyOS_snprintf(detail, sizeof detail, "parent_span_id must be empty or 8 bytes, got %u",
                      (unsigned)pidn);
    }
    else if (start == 0) {
        reason = R_TIMESTAMP;
        strcpy(detail, "start_time_unix_nano is 0");
    }
    else if (endt == 0) {
        reason = R_TIMESTAMP;
        strcpy(detail, "end_time_unix_nano is 0");
    }
    else if (endt < start) {
        reason = R_END_BEFORE_START;
        PyOS_snprintf(detail, sizeof detail, "end_time_unix_nano %llu is before start_time_unix_nano %llu",
                      (unsigned long long)endt, (unsigned long long)start);
    }
    if (reason >= 0) {
        d->rejected++;
        d->reasons[reason]++;
        if (!d->first_error) {
            d->first_error = PyUnicode_FromFormat("span %zd in resource_spans[%zd].scope_spans[%zd]: %s", index,
                                                  ctx->ri, ctx->si, detail);
            if (!d->first_error) return -1;
        }
        return 0;
    }

    if (cols_reserve(d) || frame(&d->attrs, '{', '}') || frame(&d->events, '[', ']') ||
        frame(&d->links, '[', ']'))
        return -1;
    Py_ssize_t i = d->n;
    if (d->run < 0) { /* the scope's first accepted span opens its run: its shared entries, once */
        Py_ssize_t r = d->nruns;
        if (put_str(d, C_SCOPE_NAME, r, ctx->scope_name, ctx->scope_namen) ||
            put_str(d, C_SCOPE_VERSION, r, ctx->scope_version, ctx->scope_versionn) ||
            put_json(d, C_RESOURCE_ATTRS, r, &ctx->res_json) || put_json(d, C_SCOPE_ATTRS, r, &ctx->scope_json))
            return -1;
        for (int k = 0; k < 6; k++)
            if (put_promoted(d, C_RES0 + k, r, &ctx->res[k])) return -1;
        d->run_len[r] = 0;
        d->nruns++;
        d->run = r;
    }
    d->run_len[d->run]++;
    if (put_str(d, C_NAME, i, name, namen) || put_str(d, C_TRACE_STATE, i, ids.ts, ids.tsn) ||
        put_str(d, C_STATUS_MESSAGE, i, smsg, smsgn) || put_json(d, C_ATTRS, i, &d->attrs) ||
        put_json(d, C_EVENTS, i, &d->events) || put_json(d, C_LINKS, i, &d->links))
        return -1;
    for (int k = 0; k < 6; k++)
        if (put_promoted(d, C_SPAN0 + k, i, &prom[k])) return -1;
    for (int k = 0; k < N_F64; k++) {
        const PromoVal *f = &prom[SLOT_F64 + k];
        col_u64(d, F_F64 + k)[i] = f->bits; /* 0.0 for null */
        put_validity(d, V_F64 + k, i, f->set);
    }
    put_validity(d, V_BOOL, i, prom[SLOT_BOOL].set);
    if (prom[SLOT_BOOL].set && prom[SLOT_BOOL].bits) set_bit(d->bits[BOOL_VALUES], i);
    col_u64(d, F_TID_HI)[i] = be64(ids.tid);
    col_u64(d, F_TID_LO)[i] = be64(ids.tid + 8);
    col_u64(d, F_SPAN_ID)[i] = be64(ids.sid);
    col_u64(d, F_PARENT)[i] = pidn ? be64(pid) : 0;
    col_u64(d, F_START)[i] = start;
    col_u64(d, F_DURATION)[i] = endt - start;
    col_u32(d, F_FLAGS)[i] = flags;
    for (int k = 0; k < 3; k++) col_u32(d, F_DROPPED_ATTRS + k)[i] = dropped[k]; /* then _EVENTS, _LINKS */
    col_u8(d, F_KIND)[i] = (uint8_t)kind;
    col_u8(d, F_STATUS)[i] = (uint8_t)code;
    d->n++;
    return 0;
}

static void ctx_clear(Ctx *c)
{
    PyMem_Free(c->res_json.p);
    PyMem_Free(c->scope_json.p);
    memset(c, 0, sizeof *c);
}

/* Pass 1 over a ResourceSpans or ScopeSpans (the same layout: 1 its resource
   or scope, which may come after 2, the repeated scope spans or spans; 3
   schema_url): the occurrences of field 1 into first, to be merged; those of
   field 2 only checked here. depth = the message's. */
static int scan_spans_parent(Dec *d, const uint8_t *p, const uint8_t *end, int depth, uint32_t known,
                             const char *msgname, Segs *first)
{
    while (p < end) {
        const uint8_t *at = p, *s;
        uint32_t tag, n;
        if (rd_tag(d, &p, end, &tag)) return -1;
        if (tag == TAG(1, WT_LEN) || tag == TAG(2, WT_LEN)) {
            if (rd_msg(d, &p, end, at, depth + 1, &s, &n)) return -1;
            if (tag == TAG(1, WT_LEN) && segs_push(first, s, s + n)) return -1;
        }
        else if (tag == TAG(3, WT_LEN)) {
            if (rd_str(d, &p, end, &s, &n)) return -1;
        }
        else if (other_field(d, &p, end, tag, at, depth, known, msgname))
            return -1;
    }
    return 0;
}

/* The attribute entries in src (each with a leading ',') framed as a JSON
   object, and a copy kept in dst (empty: none): src is reused. */
static int keep_attrs_json(Buf *dst, Buf *src)
{
    buf_reset(dst);
    return frame(src, '{', '}') || (src->n && buf_put(dst, src->p, src->n)) ? -1 : 0;
}

/* InstrumentationScope, all its occurrences merged; depth = its depth */
static int parse_scope(Dec *d, const Segs *scope, int depth, Ctx *ctx)
{
    const uint8_t *name = NULL, *version = NULL;
    uint32_t namen = 0, versionn = 0;
    uint64_t v;
    Buf *ab = &d->scratch;
    buf_reset(ab);
    for (Py_ssize_t i = 0; i < scope->n; i++) {
        const uint8_t *p = scope->v[i].p, *end = scope->v[i].e;
        while (p < end) {
            const uint8_t *at = p;
            uint32_t tag;
            if (rd_tag(d, &p, end, &tag)) return -1;
            switch (tag) {
            case TAG(1, WT_LEN):
                if (rd_str(d, &p, end, &name, &namen)) return -1;
                break;
            case TAG(2, WT_LEN):
                if (rd_str(d, &p, end, &version, &versionn)) return -1;
                break;
            case TAG(3, WT_LEN):
                if (append_kv(d, ab, &p, end, at, depth)) return -1;
                break;
            case TAG(4, WT_VARINT):
                if (rd_varint(d, &p, end, &v)) return -1;
                break;
            default:
                if (other_field(d, &p, end, tag, at, depth, KNOWN_SCOPE, "InstrumentationScope")) return -1;
            }
        }
    }
    ctx->scope_name = name;
    ctx->scope_namen = namen;
    ctx->scope_version = version;
    ctx->scope_versionn = versionn;
    return keep_attrs_json(&ctx->scope_json, ab); /* the spans' events and links reuse the scratch buffer */
}

/* Resource, all its occurrences merged; depth = its depth */
static int parse_resource(Dec *d, const Segs *res, int depth, Ctx *ctx)
{
    uint64_t v;
    d->nkv = 0;
    for (Py_ssize_t i = 0; i < res->n; i++) {
        const uint8_t *p = res->v[i].p, *end = res->v[i].e, *s;
        while (p < end) {
            const uint8_t *at = p;
            uint32_t tag, n;
            if (rd_tag(d, &p, end, &tag)) return -1;
            switch (tag) {
            case TAG(1, WT_LEN):
                if (rd_msg(d, &p, end, at, depth + 1, &s, &n) || push_kv(d, s, s + n, depth + 1, &RES_PROMO))
                    return -1;
                break;
            case TAG(2, WT_VARINT):
                if (rd_varint(d, &p, end, &v)) return -1;
                break;
            case TAG(3, WT_LEN):
                if (rd_msg(d, &p, end, at, depth + 1, &s, &n) || entity_ref(d, s, s + n, depth + 1)) return -1;
                break;
            default:
                if (other_field(d, &p, end, tag, at, depth, KNOWN_RESOURCE, "Resource")) return -1;
            }
        }
    }
    if (attrs_promote(d, &d->attrs, depth + 1, &RES_PROMO, ctx->res)) return -1;
    return keep_attrs_json(&ctx->res_json, &d->attrs);
}

static int parse_scope_spans(Dec *d, const uint8_t *p, const uint8_t *end, Ctx *ctx)
{
    const int depth = 2;
    Segs scope;
    segs_init(&scope);
    const uint8_t *s;
    uint32_t n;
    int fn, rc = -1;
    Py_ssize_t index = 0;
    d->run = -1;
    if (scan_spans_parent(d, p, end, depth, KNOWN_SS, "ScopeSpans", &scope) ||
        parse_scope(d, &scope, depth + 1, ctx))
        goto done;
    /* pass 2: spans */
    while ((fn = next_msg(d, &p, end, BITS(2, 2), depth, 0, NULL, &s, &n)) > 0)
        if (parse_span(d, s, s + n, depth + 1, ctx, index++)) goto done;
    rc = fn;
done:
    segs_free(&scope);
    return rc;
}

static int parse_resource_spans(Dec *d, const uint8_t *p, const uint8_t *end, Py_ssize_t ri)
{
    const int depth = 1;
    Ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.ri = ri;
    Segs res;
    segs_init(&res);
    const uint8_t *s;
    uint32_t n;
    int fn, rc = -1;
    Py_ssize_t si = 0;
    if (scan_spans_parent(d, p, end, depth, KNOWN_RS, "ResourceSpans", &res) ||
        parse_resource(d, &res, depth + 1, &ctx))
        goto done;
    /* pass 2: scope spans */
    while ((fn = next_msg(d, &p, end, BITS(2, 2), depth, 0, NULL, &s, &n)) > 0) {
        ctx.si = si++;
        if (parse_scope_spans(d, s, s + n, &ctx)) goto done;
    }
    rc = fn;
done:
    segs_free(&res);
    ctx_clear(&ctx);
    return rc;
}

static int parse_request(Dec *d, const uint8_t *p, const uint8_t *end)
{
    const uint8_t *s;
    uint32_t n;
    int fn;
    Py_ssize_t ri = 0;
    while ((fn = next_msg(d, &p, end, BITS(1, 1), 0, KNOWN_REQUEST, "ExportTraceServiceRequest", &s, &n)) > 0)
        if (parse_resource_spans(d, s, s + n, ri++)) return -1;
    return fn;
}

/* ------------------------------------------------------------------------ */
/* Result                                                                     */

static void dec_free(Dec *d)
{
    for (int c = 0; c < N_STR; c++) {
        PyMem_Free(d->sdata[c].p);
        PyMem_Free(d->soff[c]);
    }
    for (int c = 0; c < N_BITMAPS; c++) PyMem_Free(d->bits[c]);
    for (int c = 0; c < N_FIXED; c++) PyMem_Free(d->fixed[c]);
    PyMem_Free(d->run_len);
    PyMem_Free(d->attrs.p);
    PyMem_Free(d->events.p);
    PyMem_Free(d->links.p);
    PyMem_Free(d->scratch.p);
    PyMem_Free(d->kv);
    Py_XDECREF(d->first_error);
    PyMem_Free(d);
}

static int set_item(PyObject *dict, const char *key, PyObject *value)
{
    if (!value) return -1;
    int rc = PyDict_SetItemString(dict, key, value);
    Py_DECREF(value);
    return rc;
}

/* n little-endian values of `size` bytes (native order in src) */
static PyObject *le_bytes(const void *src, Py_ssize_t n, int size)
{
    if (!n) return PyBytes_FromStringAndSize(NULL, 0);
#if PY_BIG_ENDIAN
    PyObject *b = PyBytes_FromStringAndSize(NULL, n * size);
    if (!b) return NULL;
    char *dst = PyBytes_AS_STRING(b);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (size == 8) {
            uint64_t v;
            memcpy(&v, (const char *)src + 8 * i, 8);
            v = __builtin_bswap64(v);
            memcpy(dst + 8 * i, &v, 8);
        }
        else if (size == 4) {
            uint32_t v;
            memcpy(&v, (const char *)src + 4 * i, 4);
            v = __builtin_bswap32(v);
            memcpy(dst + 4 * i, &v, 4);
        }
        else
            dst[i] = ((const char *)src)[i];
    }
    return b;
#else
    return PyBytes_FromStringAndSize((const char *)src, n * size);
#endif
}

/* bitmap c as bytes (rows: its length in bits) */
static PyObject *bitmap(Dec *d, int c, Py_ssize_t rows)
{
    return PyBytes_FromStringAndSize((const char *)d->bits[c], (rows + 7) / 8);
}

/* validity bitmap of column c: bytes, or None when it has no nulls */
static PyObject *validity(Dec *d, int c, Py_ssize_t rows)
{
    if (!d->nulls[c]) Py_RETURN_NONE;
    return bitmap(d, c, rows);
}

/* a tuple of the k items, stealing the references; NULL if any is NULL */
static PyObject *steal_tuple(Py_ssize_t k, PyObject *const *items)
{
    PyObject *t = NULL;
    for (Py_ssize_t j = 0; j < k; j++)
        if (!items[j]) goto error;
    t = PyTuple_New(k);
    if (!t) goto error;
    for (Py_ssize_t j = 0; j < k; j++) PyTuple_SET_ITEM(t, j, items[j]);
    return t;
error:
    for (Py_ssize_t j = 0; j < k; j++) Py_XDECREF(items[j]);
    return NULL;
}

static PyObject *triple(PyObject *a, PyObject *b, PyObject *c)
{
    PyObject *items[3] = {a, b, c};
    return steal_tuple(3, items);
}

static PyObject *pair(PyObject *a, PyObject *b)
{
    PyObject *items[2] = {a, b};
    return steal_tuple(2, items);
}

static PyObject *build_result(Dec *d)
{
    static const int32_t zero_offset = 0;
    Py_ssize_t n = d->n;
    PyObject *out = PyDict_New();
    if (!out) return NULL;
    if (set_item(out, "count", PyLong_FromSsize_t(n))) goto error;
    if (set_item(out, "rejected", PyLong_FromSsize_t(d->rejected))) goto error;
    PyObject *reasons = PyDict_New();
    if (!reasons) goto error;
    for (int r = 0; r < N_REASONS; r++) {
        if (d->reasons[r] && set_item(reasons, REASON_NAMES[r], PyLong_FromSsize_t(d->reasons[r]))) {
            Py_DECREF(reasons);
            goto error;
        }
    }
    if (set_item(out, "reject_reasons", reasons)) goto error;
    if (PyDict_SetItemString(out, "first_error", d->first_error ? d->first_error : Py_None)) goto error;
    for (int c = 0; c < F_F64; c++)
        if (set_item(out, FIXED_COLS[c].name, le_bytes(d->fixed[c], n, FIXED_COLS[c].width))) goto error;
    for (int c = 0; c < N_STR; c++) {
        Py_ssize_t rows = is_shared(c) ? d->nruns : n;
        PyObject *offsets = le_bytes(rows ? d->soff[c] : &zero_offset, rows + 1, 4);
        PyObject *data = PyBytes_FromStringAndSize(d->sdata[c].p, (Py_ssize_t)d->sdata[c].n);
        if (set_item(out, STR_NAMES[c], triple(offsets, data, validity(d, c, rows)))) goto error;
    }
    if (set_item(out, "shared_runs", le_bytes(d->run_len, d->nruns, 4))) goto error;
    for (int k = 0; k < N_F64; k++) {
        int c = F_F64 + k;
        if (set_item(out, FIXED_COLS[c].name, pair(le_bytes(d->fixed[c], n, 8), validity(d, V_F64 + k, n))))
            goto error;
    }
    if (set_item(out, BOOL_NAME, pair(bitmap(d, BOOL_VALUES, n), validity(d, V_BOOL, n)))) goto error;
    return out;
error:
    Py_DECREF(out);
    return NULL;
}

static PyObject *py_decode_traces(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) return NULL;
    Dec *d = PyMem_Calloc(1, sizeof(Dec));
    if (!d) {
        PyBuffer_Release(&view);
        return PyErr_NoMemory();
    }
    d->base = (const uint8_t *)view.buf;
    d->limit = d->base + view.len;
    d->text_room = max_text;
    PyObject *result = NULL;
    if (parse_request(d, d->base, d->limit) == 0) result = build_result(d);
    dec_free(d);
    PyBuffer_Release(&view);
    return result;
}

/* ---------------------------------------------------------------- decoded size
 * decoded_size(data, signal): the estimate of collector/decoding/decoded_size.py (the
 * reference; see it for the rule), from the framing only: tags and lengths of
 * the levels above the rows, nothing rendered, nothing allocated. Broken
 * framing raises ValueError, as the reference does. */

#define SZ_ROW_OVERHEAD 192
#define SZ_MAX_LEVELS 5
#define SZ_MAX_GROUP_DEPTH 100

typedef struct {
    int n_levels;
    uint32_t fields[SZ_MAX_LEVELS]; /* per level: bit f set when field f holds the next level */
} SizeSpec;

static const SizeSpec SIZE_SPECS[2] = {
    {3, {1u << 1, 1u << 2, 1u << 2}},                                                        /* traces */
    {5, {1u << 1, 1u << 2, 1u << 2, (1u << 5) | (1u << 7) | (1u << 9) | (1u << 10) | (1u << 11), 1u << 1}}, /* metrics */
};

static int sz_varint(const uint8_t **pp, const uint8_t *end, int max_bytes, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (p + i >= end) return -1;
        v |= (uint64_t)(p[i] & 0x7F) << (7 * i);
        if (p[i] < 0x80) {
            *pp = p + i + 1;
            *out = v;
            return 0;
        }
    }
    return -1;
}

static int sz_skip(const uint8_t **pp, const uint8_t *end, uint32_t wire_type, uint64_t field)
{
    uint64_t v;
    const uint8_t *p = *pp;
    if (wire_type == WT_VARINT) {
        if (sz_varint(&p, end, 10, &v)) return -1;
    } else if (wire_type == WT_I64 || wire_type == WT_I32) {
        if ((size_t)(end - p) < (wire_type == WT_I64 ? 8u : 4u)) return -1;
        p += wire_type == WT_I64 ? 8 : 4;
    } else if (wire_type == WT_LEN) {
        if (sz_varint(&p, end, 5, &v) || v > (uint64_t)(end - p)) return -1;
        p += v;
    } else if (wire_type == WT_SGROUP) {
        uint64_t open[SZ_MAX_GROUP_DEPTH + 1];
        int depth = 0;
        open[depth++] = field;
        while (depth) {
            uint64_t tag;
            if (sz_varint(&p, end, 5, &tag)) return -1;
            uint32_t wt = (uint32_t)(tag & 7);
            if (wt == WT_EGROUP) {
                if ((tag >> 3) != open[--depth]) return -1;
            } else if (wt == WT_SGROUP) {
                if (depth >= SZ_MAX_GROUP_DEPTH) return -1;
                open[depth++] = tag >> 3;
            } else if (sz_skip(&p, end, wt, tag >> 3)) {
                return -1;
            }
        }
    } else {
        return -1;
    }
    *pp = p;
    return 0;
}

/* Adds the estimate of the message [p, end) at `level` to *total. */
static int sz_walk(const SizeSpec *spec, const uint8_t *p, const uint8_t *end, int level, uint64_t inherited,
                   uint64_t *total)
{
    if (level == spec->n_levels) {
        uint64_t row = (uint64_t)(end - p) + inherited + SZ_ROW_OVERHEAD;
        *total = row > UINT64_MAX - *total ? UINT64_MAX : *total + row; /* saturates, never wraps */
        return 0;
    }
    /* First pass: the bytes outside the wanted children (what each row inherits). */
    uint64_t child_bytes = 0; /* the children's fields, tags and lengths included */
    const uint8_t *q = p;
    while (q < end) {
        uint64_t tag, len;
        const uint8_t *field_start = q;
        if (sz_varint(&q, end, 5, &tag) || (tag >> 3) == 0 || (tag >> 32)) return -1;
        uint32_t wt = (uint32_t)(tag & 7);
        uint64_t field = tag >> 3;
        if (wt == WT_LEN && field < 32 && (spec->fields[level] >> field & 1)) {
            if (sz_varint(&q, end, 5, &len) || len > (uint64_t)(end - q)) return -1;
            q += len;
            child_bytes += (uint64_t)(q - field_start);
        } else if (wt == WT_EGROUP || sz_skip(&q, end, wt, field)) {
            return -1;
        }
    }
    uint64_t shared = inherited + ((uint64_t)(end - p) - child_bytes);
    /* Second pass: the children (the framing is known to be sound now). */
    q = p;
    while (q < end) {
        uint64_t tag = 0, len = 0;
        sz_varint(&q, end, 5, &tag);
        uint32_t wt = (uint32_t)(tag & 7);
        uint64_t field = tag >> 3;
        if (wt == WT_LEN && field < 32 && (spec->fields[level] >> field & 1)) {
            sz_varint(&q, end, 5, &len);
            if (sz_walk(spec, q, q + len, level + 1, shared, total)) return -1;
            q += len;
        } else {
            sz_skip(&q, end, wt, field);
        }
    }
    return 0;
}

static PyObject *py_decoded_size(PyObject *self, PyObject *args)
{
    (void)self;
    Py_buffer view;
    int signal;
    if (!PyArg_ParseTuple(args, "y*i", &view, &signal)) return NULL;
    if (signal < 0 || signal > 1) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "signal must be 0 (traces) or 1 (metrics)");
        return NULL;
    }
    uint64_t total = 0;
    const uint8_t *p = (const uint8_t *)view.buf;
    int rc = sz_walk(&SIZE_SPECS[signal], p, p + view.len, 0, 0, &total);
    PyBuffer_Release(&view);
    if (rc) {
        PyErr_Format(PyExc_ValueError, "malformed OTLP %s request: broken protobuf framing",
                     signal ? "metrics" : "traces");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(total);
}

static PyObject *py_repr_double(PyObject *self, PyObject *arg)
{
    (void)self;
    double v = PyFloat_AsDouble(arg);
    if (v == -1.0 && PyErr_Occurred()) return NULL;
    Buf b = {0};
    if (put_double(&b, v)) {
        PyMem_Free(b.p);
        return NULL;
    }
    PyObject *s = PyUnicode_FromStringAndSize(b.p, (Py_ssize_t)b.n);
    PyMem_Free(b.p);
    return s;
}

/* ------------------------------------------------------------------------ */
/* Concatenating decoded columns of many requests (collector.decoding.arrow_batches)    */

/* n bits of src (LSB first; NULL: all set) into dst at bit pos; dst zeroed past pos */
static void append_bits(uint8_t *dst, Py_ssize_t pos, const uint8_t *src, Py_ssize_t n)
{
    Py_ssize_t nbytes = (n + 7) / 8;
    int shift = (int)(pos & 7);
    dst += pos >> 3;
    for (Py_ssize_t b = 0; b < nbytes; b++) {
        uint8_t v = src ? src[b] : 0xFF;
        if (b == nbytes - 1 && (n & 7)) v &= (uint8_t)((1u << (n & 7)) - 1); /* padding bits */
        dst[b] |= (uint8_t)(v << shift);
        if (shift && (v >> (8 - shift))) dst[b + 1] |= (uint8_t)(v >> (8 - shift));
    }
}

enum { K_TEXT, K_FLOAT64, K_BITMAP };

static int bad_chunk(Py_ssize_t j, const char *what)
{
    PyErr_Format(PyExc_ValueError, "concat_column: chunk %zd: %s", j, what);
    return -1;
}

/* bytes or None of the expected size */
static int check_bitmap(PyObject *m, Py_ssize_t n, int allow_none, Py_ssize_t j)
{
    if (m == Py_None && allow_none) return 0;
    if (!PyBytes_Check(m) || PyBytes_GET_SIZE(m) != (n + 7) / 8) return bad_chunk(j, "bitmap of the wrong size");
    return 0;
}

static int check_chunk(int kind, PyObject *c, Py_ssize_t n, Py_ssize_t j, Py_ssize_t *data_bytes)
{
    Py_ssize_t size = kind == K_TEXT ? 3 : 2;
    if (!PyTuple_Check(c) || PyTuple_GET_SIZE(c) != size) return bad_chunk(j, "not a column tuple");
    PyObject *values = PyTuple_GET_ITEM(c, 0), *validity = PyTuple_GET_ITEM(c, size - 1);
    if (check_bitmap(validity, n, 1, j)) return -1;
    if (kind == K_BITMAP) return check_bitmap(values, n, 0, j);
    if (!PyBytes_Check(values)) return bad_chunk(j, "values are not bytes");
    if (kind == K_FLOAT64) return PyBytes_GET_SIZE(values) == 8 * n ? 0 : bad_chunk(j, "not n float64 values");
    PyObject *data = PyTuple_GET_ITEM(c, 1);
    if (PyBytes_GET_SIZE(values) != 4 * (n + 1) || !PyBytes_Check(data)) return bad_chunk(j, "not n + 1 offsets");
    *data_bytes += PyBytes_GET_SIZE(data);
    return 0;
}

static void wr_i32le(uint8_t *p, int32_t x)
{
    uint32_t v = (uint32_t)x;
#if PY_BIG_ENDIAN
    v = __builtin_bswap32(v);
#endif
    memcpy(p, &v, 4);
}

/* concat_column(kind, chunks, counts[, max_text]) -> tuple: decoded columns of
   many requests (tuples in the decode_traces layout with counts[i] rows each)
   concatenated into one tuple of the same layout. kind: 0 text (offsets, data,
   validity), 1 float64 (values, validity), 2 bool (values bitmap, validity).
   OverflowError when the text exceeds max_text (default and at most 2**31 - 1,
   what int32 offsets address). */
static PyObject *py_concat_column(PyObject *self, PyObject *args)
{
    (void)self;
    int kind;
    PyObject *chunks, *counts;
    Py_ssize_t limit = 0x7FFFFFFF;
    if (!PyArg_ParseTuple(args, "iO!O!|n:concat_column", &kind, &PyList_Type, &chunks, &PyList_Type, &counts,
                          &limit))
        return NULL;
    if (limit < 0 || limit > 0x7FFFFFFF) limit = 0x7FFFFFFF;
    Py_ssize_t k = PyList_GET_SIZE(chunks), rows = 0, data_bytes = 0;
    if (kind < K_TEXT || kind > K_BITMAP) {
        PyErr_SetString(PyExc_ValueError, "concat_column: kind must be 0 (text), 1 (float64) or 2 (bool)");
        return NULL;
    }
    if (PyList_GET_SIZE(counts) != k) {
        PyErr_SetString(PyExc_ValueError, "concat_column: chunks and counts differ in length");
        return NULL;
    }
    int any_null = 0;
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_ssize_t n = PyLong_AsSsize_t(PyList_GET_ITEM(counts, j));
        if (n == -1 && PyErr_Occurred()) return NULL;
        if (n < 0 || n > PY_SSIZE_T_MAX / 16 - rows) {
            PyErr_SetString(PyExc_ValueError, "concat_column: bad row count");
            return NULL;
        }
        PyObject *c = PyList_GET_ITEM(chunks, j);
        if (check_chunk(kind, c, n, j, &data_bytes)) return NULL;
        any_null |= PyTuple_GET_ITEM(c, PyTuple_GET_SIZE(c) - 1) != Py_None;
        rows += n;
    }
    if (kind == K_TEXT && data_bytes > limit) {
        PyErr_SetString(PyExc_OverflowError, "concat_column: more text than one array holds");
        return NULL;
    }
    Py_ssize_t bitmap_bytes = (rows + 7) / 8;
    PyObject *first = NULL, *second = NULL, *validity = NULL;
    if (any_null) {
        validity = PyBytes_FromStringAndSize(NULL, bitmap_bytes);
        if (!validity) return NULL;
        memset(PyBytes_AS_STRING(validity), 0, (size_t)bitmap_bytes);
    }
    else {
        validity = Py_None;
        Py_INCREF(validity);
    }
    if (kind == K_TEXT) {
        first = PyBytes_FromStringAndSize(NULL, 4 * (rows + 1));
        second = PyBytes_FromStringAndSize(NULL, data_bytes);
    }
    else if (kind == K_FLOAT64)
        first = PyBytes_FromStringAndSize(NULL, 8 * rows);
    else {
        first = PyBytes_FromStringAndSize(NULL, bitmap_bytes);
        if (first) memset(PyBytes_AS_STRING(first), 0, (size_t)bitmap_bytes);
    }
    if (!first || (kind == K_TEXT && !second)) goto error;
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(first), *od = second ? (uint8_t *)PyBytes_AS_STRING(second) : NULL;
    uint8_t *ov = any_null ? (uint8_t *)PyBytes_AS_STRING(validity) : NULL;
    Py_ssize_t pos = 0;
    int32_t base = 0;
    if (kind == K_TEXT) {
        wr_i32le(o, 0);
        o += 4;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        PyObject *c = PyList_GET_ITEM(chunks, j);
        Py_ssize_t n = PyLong_AsSsize_t(PyList_GET_ITEM(counts, j));
        const uint8_t *values = (const uint8_t *)PyBytes_AS_STRING(PyTuple_GET_ITEM(c, 0));
        PyObject *m = PyTuple_GET_ITEM(c, PyTuple_GET_SIZE(c) - 1);
        if (ov) append_bits(ov, pos, m == Py_None ? NULL : (const uint8_t *)PyBytes_AS_STRING(m), n);
        if (kind == K_TEXT) {
            PyObject *data = PyTuple_GET_ITEM(c, 1);
            Py_ssize_t len = PyBytes_GET_SIZE(data);
            if ((int32_t)le32(values) != 0 || (int32_t)le32(values + 4 * n) != len) {
                bad_chunk(j, "offsets must run from 0 to the length of the data");
                goto error;
            }
            int32_t last = 0;
            for (Py_ssize_t i = 1; i <= n; i++) {
                int32_t v = (int32_t)le32(values + 4 * i);
                if (v < last) {
                    bad_chunk(j, "offsets must not decrease");
                    goto error;
                }
                wr_i32le(o, base + v); /* base + v <= data_bytes <= INT32_MAX */
                o += 4;
                last = v;
            }
            if (len) memcpy(od, PyBytes_AS_STRING(data), (size_t)len);
            od += len;
            base += (int32_t)len;
        }
        else if (kind == K_FLOAT64) {
            if (n) memcpy(o, values, (size_t)(8 * n));
            o += 8 * n;
        }
        else
            append_bits(o, pos, values, n);
        pos += n;
    }
    return kind == K_TEXT ? triple(first, second, validity) : pair(first, validity);
error:
    Py_XDECREF(first);
    Py_XDECREF(second);
    Py_XDECREF(validity);
    return NULL;
}

static PyObject *py_set_max_text_bytes(PyObject *self, PyObject *arg)
{
    (void)self;
    Py_ssize_t v = PyLong_AsSsize_t(arg);
    if (v == -1 && PyErr_Occurred()) return NULL;
    if (v < 0 || v > 0x7FFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "max text bytes must be in [0, 2**31 - 1]");
        return NULL;
    }
    size_t old = max_text;
    max_text = (size_t)v;
    return PyLong_FromSize_t(old);
}

static PyMethodDef methods[] = {
    {"decode_traces", py_decode_traces, METH_O,
     "decode_traces(data: bytes) -> dict\n\nDecode an OTLP ExportTraceServiceRequest into columns "
     "(see collector.decoding.trace_decode). Raises ValueError on malformed input."},
    {"decoded_size", py_decoded_size, METH_VARARGS,
     "decoded_size(data: bytes, signal: int) -> int\n\nEstimated bytes of the decoded rows of an OTLP request "
     "(signal 0 traces, 1 metrics; see collector.decoding.decoded_size). ValueError on broken framing."},
    {"_repr_double", py_repr_double, METH_O, "JSON text of a double as the decoder writes it (tests)."},
    {"concat_column", py_concat_column, METH_VARARGS,
     "concat_column(kind: int, chunks: list[tuple], counts: list[int], max_text: int = 2**31 - 1) -> tuple"
     "\n\nDecoded columns of many requests (kind 0 text, 1 float64, 2 bool; counts[i] rows each) "
     "concatenated in the same layout. OverflowError when the text exceeds max_text."},
    {"_set_max_text_bytes", py_set_max_text_bytes, METH_O,
     "Set the per-request text limit (default 2**31 - 1), return the previous one (tests)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT,
    .m_name = "collector.decoding._speedups",
    .m_doc = "C decoder for OTLP trace requests (see collector.decoding.trace_decode).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
#ifdef __SIZEOF_INT128__
    if (!ryu_ready) ryu_init();
#endif
    promo_init(&RES_PROMO);
    promo_init(&SPAN_PROMO);
    return PyModule_Create(&moduledef);
}
