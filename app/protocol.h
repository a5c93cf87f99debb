/* protocol.h: the wire protocol of PROTOCOL.md as pure functions (no I/O, no
 * actors). The session actor decodes each client text frame with proto_decode,
 * applies the error precedence of PROTOCOL.md "Errors" itself (bad_request, then
 * state, then validity via proto_canon_name/proto_canon_content, then
 * name_taken/rate_limited, then unavailable), and answers with one of the
 * proto_enc_* frames. Broadcasters (pubsub, presence, the welcome snapshot)
 * build their frames here too, once, and share the bytes.
 *
 * Everything here is reentrant (no shared mutable state): any actor on any
 * scheduler thread may call it.
 *
 * Ownership: every proto_str returned is malloc'd, NUL-terminated, owned by the
 * caller (free(s.ptr)); on out-of-memory it is {NULL, 0}. Every input pointer is
 * borrowed for the duration of the call only.
 *
 * "Encode once": a message record is encoded once into a JSON object fragment
 * (proto_frag_message), kept with the message, and spliced byte-for-byte into
 * `message` pushes, `sent` replies and message arrays (proto_frag_array). Each
 * user is encoded once per online state (proto_frag_user) and `users` pages
 * are those fragments copied side by side. Fragments are plain JSON text.
 *
 * ref: a usable ref (a JSON number or string) is kept as its JSON encoding, e.g.
 * `7` or `"a\"b"`, and echoed verbatim. Numbers are echoed as the shortest text
 * that reads back as the same double (what a JavaScript client sent is a double
 * anyway; 1e999 echoes as 1e999). A ref of any other JSON type is bad_request and
 * leaves req->ref NULL, so that error carries no ref. When the ref is usable and
 * some OTHER field is bad (unknown type, missing name, ...), req->ref is kept and
 * the bad_request error echoes it: the frame had a usable ref.
 */
#ifndef CHATTER_PROTOCOL_H
#define CHATTER_PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest text frame payload the protocol accepts (PROTOCOL.md: over it, 1009). */
#define PROTO_MAX_FRAME 65536
#define PROTO_NAME_MAX 32      /* code points, after trimming */
#define PROTO_CONTENT_MAX 2000 /* code points, after trimming */
#define PROTO_HISTORY_MAX 500  /* largest history `limit`, catch_up page size */
#define PROTO_UUID_LEN 36      /* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
#define PROTO_TIME_LEN 27      /* "2026-11-24T01:02:03.123456Z" */
#define PROTO_VERSION 2        /* welcome.protocol */
#define PROTO_USERS_MAX 500    /* largest `users` limit */
#define PROTO_AFTER_MAX 128    /* `users` after: at most 128 bytes, any string */
#define PROTO_PREFIX_MAX 32    /* `users` prefix: 1 to 32 code points */
#define PROTO_CLIENT_ID_MAX 64 /* `send` client_id: 1 to 64 of A-Z a-z 0-9 _ - */

/* An owned (or, where documented, borrowed) byte string with its length. */
typedef struct {
    char *ptr;
    size_t len;
} proto_str;

/* Error codes, in no particular order; strings and default texts in one table. */
typedef enum {
    PROTO_OK = 0,
    PROTO_BAD_REQUEST,
    PROTO_NAME_INVALID,
    PROTO_NAME_TAKEN,
    PROTO_ALREADY_JOINED,
    PROTO_TAKEN_OVER,
    PROTO_NOT_JOINED,
    PROTO_CONTENT_INVALID,
    PROTO_RATE_LIMITED,
    PROTO_UNAVAILABLE,
    PROTO_CODE_COUNT
} proto_code;

typedef enum {
    PROTO_REQ_NONE = 0, /* decode failed before the type was known */
    PROTO_REQ_JOIN,
    PROTO_REQ_SEND,
    PROTO_REQ_HISTORY,
    PROTO_REQ_CATCH_UP,
    PROTO_REQ_LEAVE,
    PROTO_REQ_PING,
    PROTO_REQ_USERS
} proto_req_type;

/* A decoded client request. Strings are owned by it (free with
 * proto_request_free); a caller that keeps the ref after freeing the request
 * takes it (keep req->ref, set it to NULL). Absent strings have ptr == NULL.
 * Strings may hold U+0000 (as a 0 byte), which is why they carry a length. */
typedef struct {
    proto_req_type type;
    char *ref;         /* JSON fragment to echo, or NULL: no usable ref */
    proto_str name;    /* join: as sent; canonicalise with proto_canon_name */
    proto_str token;   /* join: optional (absent or null both mean none) */
    proto_str content; /* send: as sent; canonicalise with proto_canon_content */
    int64_t before;    /* history */
    int64_t limit;     /* history: 1..PROTO_HISTORY_MAX; users: 1..PROTO_USERS_MAX */
    int64_t after;     /* catch_up */
    bool online;       /* users: which index to read */
    proto_str after_name; /* users: optional, <= PROTO_AFTER_MAX bytes, as is */
    proto_str prefix;  /* users: optional, 1..PROTO_PREFIX_MAX code points */
    proto_str client_id; /* send: optional, checked against its alphabet */
    char why[96];      /* human reason when decoding failed, else "" */
} proto_request;

/* Records as the encoders read them. Strings are borrowed UTF-8. */
typedef struct {
    char id[PROTO_UUID_LEN + 1];
    const char *name;
    bool online;
} proto_user;

typedef struct {
    char id[PROTO_UUID_LEN + 1];
    int64_t seq;
    char user_id[PROTO_UUID_LEN + 1];
    const char *name;
    const char *content;
    char inserted_at[PROTO_TIME_LEN + 1];
} proto_message;

typedef struct {
    char user_id[PROTO_UUID_LEN + 1];
    const char *name; /* the presence key */
    char joined_at[PROTO_TIME_LEN + 1];
    const char *phx_ref;
} proto_meta;

/* ---- codes */

/* The wire string ("bad_request", ...) of a code, so no caller spells it. */
const char *proto_code_str(proto_code code);

/* The default human text for a code, used when an error gives none. */
const char *proto_code_message(proto_code code);

/* ---- decoding */

/* Decodes one client frame into *req (always initialised, always to be freed).
 * Returns PROTO_OK or PROTO_BAD_REQUEST (with req->why). Stricter than cJSON
 * alone: rejects trailing data, non-JSON numbers (+1, 01, .5), raw control
 * characters in strings, and keeps "\u0000" (which cJSON would silently cut)
 * so that proto_canon_content can refuse it. req->ref is set whenever the
 * frame had a usable ref, even if decoding failed later. */
proto_code proto_decode(const char *frame, size_t len, proto_request *req);

/* Frees what proto_decode allocated; safe on a zeroed or already-freed request. */
void proto_request_free(proto_request *req);

/* Trims Unicode White_Space from a join name in place and checks it:
 * 1..32 code points of L*, Nd, '_', '-', '.', and single inner U+0020, not
 * all of them invisible (U+3164 HANGUL FILLER, U+115F, ... are letters that
 * render blank: a name made only of them would show as nothing).
 * Returns PROTO_OK (s now holds the canonical name) or PROTO_NAME_INVALID
 * (s untouched). No normalisation, exactly as PROTOCOL.md says: a decomposed
 * "e" + U+0301 is refused (Mn is not a letter), precomposed "ë" is accepted. */
proto_code proto_canon_name(proto_str *s);

/* Trims Unicode White_Space from send content in place and checks it:
 * 1..2000 code points, no U+0000. Returns PROTO_OK or PROTO_CONTENT_INVALID. */
proto_code proto_canon_content(proto_str *s);

/* ---- fragments, encoded once and shared */

/* One user as a JSON object, for joined.user and `users` pages. */
proto_str proto_frag_user(const proto_user *u);

/* One message as a JSON object: the unit cached with each message. */
proto_str proto_frag_message(const proto_message *m);

/* "[f0,f1,...]" from already-encoded fragments (borrowed views), so that a
 * message list costs copies, not re-encoding. */
proto_str proto_frag_array(const proto_str *frags, size_t n);

/* ---- frames (fragments are borrowed; NULL users/messages mean "[]") */

/* Sent unasked on connect: protocol 2 and the two counts, identical for
 * every socket, so build once per change of the counts and share it. */
proto_str proto_enc_welcome(size_t total_users, size_t online_count);

/* Arguments of the joined reply: too many for a readable parameter list. */
typedef struct {
    const char *ref;           /* NULL: no ref */
    const proto_user *user;
    const char *token;
    const proto_str *messages; /* array fragment, oldest first */
    bool more;
    size_t total_users;
    size_t online_count;
} proto_joined;

/* Reply to join: the user's own record, its fresh token, the latest
 * messages and the counts (protocol 2: no users list). */
proto_str proto_enc_joined(const proto_joined *j);

/* Reply to send, after the commit; message is the cached fragment. */
proto_str proto_enc_sent(const char *ref, const proto_str *message);

/* Reply to history and catch_up (both are "history" on the wire). */
proto_str proto_enc_history(const char *ref, const proto_str *messages, bool more);

/* Reply to `users`: a page array fragment ("[u,...]", NULL means "[]"). */
proto_str proto_enc_users(const char *ref, const proto_str *users, bool more);

/* Replies that carry nothing but their ref. */
proto_str proto_enc_left(const char *ref);
proto_str proto_enc_pong(const char *ref);

/* Error reply (ref may be NULL: no usable ref, or a push such as taken_over);
 * message NULL means the code's default text. */
proto_str proto_enc_error(const char *ref, proto_code code, const char *message);

/* Push of a committed message to every joined socket. */
proto_str proto_enc_message(const proto_str *message);

/* Presence push. Metas are grouped by name into {NAME:{"metas":[...]}} (so
 * callers may pass them in any order; within a name, order is kept). */
proto_str proto_enc_presence_diff(const proto_meta *joins, size_t n_joins,
                                  const proto_meta *leaves, size_t n_leaves,
                                  size_t total_users, size_t online_count);
/* Several presence diffs of proto_enc_presence_diff, oldest first, as one
 * diff: the union of their joins, the union of their leaves, the last
 * one's counts.  A client applying it (joins, then leaves) ends where
 * applying them in turn would have, because a meta (phx_ref) joins once
 * and leaves once: none left in one diff joins in a later one.  Names stay
 * in byte order, so the union is a k-way merge, O(total metas x n).
 * {NULL, 0}: out of memory, or a diff that is not one of ours. */
proto_str proto_merge_presence_diffs(const proto_str *diffs, size_t n);

/* ---- time */

/* Formats microseconds since the Unix epoch as "YYYY-MM-DDTHH:MM:SS.uuuuuuZ",
 * the one timestamp form the protocol uses (inserted_at, joined_at). */
void proto_format_time(int64_t unix_us, char out[PROTO_TIME_LEN + 1]);

#endif
