/*
 * repo.h -- the repo actors (an actor: repo.c), what they answer and how.
 *
 * One supervisor ("repo") over the connection actors repo.0 .. repo.N-1,
 * each owning one libpq connection (db.c, a pure library); repo.0 is the
 * single writer, which batches inserts, and the others serve reads
 * round-robin.  Every request is an act_request answered with act_reply;
 * a negative rc in a reply is `unavailable` (the database is down).
 */
#ifndef CHATTER_REPO_H
#define CHATTER_REPO_H

#include "app.h"
#include "protocol.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
  /* repo: requests (payloads below) and their replies */
  REPO_GET_USER = 100,  /* repo_name_req_t -> REPO_USER */
  REPO_INSERT,          /* repo_insert_req_t -> REPO_INSERTED */
  REPO_LATEST,          /* repo_page_req_t (limit) -> REPO_MESSAGES */
  REPO_HISTORY,         /* repo_page_req_t (before, limit) -> REPO_MESSAGES */
  REPO_CATCH_UP,        /* repo_page_req_t (after) -> REPO_MESSAGES */
  REPO_LIST_USERS,      /* no payload -> REPO_USERS */
  REPO_FIND_CLIENT_ID,  /* repo_client_req_t -> REPO_INSERTED (existed, or
                           rc == REPO_NOT_FOUND): a send whose client_id this
                           user may already have stored (PROTOCOL.md) */
  REPO_USER,
  REPO_INSERTED,
  REPO_MESSAGES,
  REPO_USERS,
  REPO_TICK,            /* internal: the writer's idle ping is due */
};

#define REPO_CLIENT_ID_MAX 64 /* PROTOCOL.md: 1 to 64 of A-Z a-z 0-9 _ - */

typedef struct repo_name_req { char name[PROTO_NAME_MAX * 4 + 1]; } repo_name_req_t;

/* A negative rc is unavailable (the database is down or failed). */
typedef struct repo_user_reply {
  int rc;
  bool created;
  char id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
} repo_user_reply_t;

typedef struct repo_insert_req {
  char user_id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
  char client_id[REPO_CLIENT_ID_MAX + 1]; /* "" = none */
  size_t content_len;
  char content[]; /* PROTO_CONTENT_MAX code points, at most 4 bytes each */
} repo_insert_req_t;

/* REPO_FIND_CLIENT_ID */
typedef struct repo_client_req {
  char user_id[PROTO_UUID_LEN + 1];
  char client_id[REPO_CLIENT_ID_MAX + 1];
} repo_client_req_t;

/* REPO_INSERTED: rc, the new seq, and the message's JSON fragment (encoded
 * once by the writer and also used for the broadcast). */
#define REPO_NOT_FOUND 1 /* REPO_FIND_CLIENT_ID: no such message */
typedef struct repo_inserted {
  int rc;
  bool existed;   /* the client_id was already stored: frag is that stored
                     message, and nothing was broadcast again */
  int64_t seq;
  size_t frag_len;
  char frag[];
} repo_inserted_t;

typedef struct repo_page_req {
  int64_t before; /* REPO_HISTORY */
  int64_t after;  /* REPO_CATCH_UP */
  int limit;      /* REPO_LATEST, REPO_HISTORY; catch_up uses PROTO_HISTORY_MAX */
} repo_page_req_t;

/* REPO_MESSAGES: a JSON array fragment of messages, oldest first, and where
 * each one lies in it, so that a session can push them one by one. */
typedef struct repo_msg_span { int64_t seq; uint32_t off, len; } repo_msg_span_t;
typedef struct repo_messages {
  int rc;
  bool more;
  uint32_t n;
  size_t array_len;              /* bytes of "[...]" after the spans */
  repo_msg_span_t spans[];       /* n spans, then the array bytes */
} repo_messages_t;
static inline const char *repo_messages_array(const repo_messages_t *m) {
  return (const char *)&m->spans[m->n];
}

/* REPO_USERS: n records of (id, name) */
typedef struct repo_user_rec {
  char id[PROTO_UUID_LEN + 1];
  char name[PROTO_NAME_MAX * 4 + 1];
} repo_user_rec_t;
typedef struct repo_users {
  int rc;
  uint32_t n;
  repo_user_rec_t users[];
} repo_users_t;

const act_behaviour_t *repo_conn_behaviour(void);
/* The repo connection actor i (0 = writer) and a reader for round-robin. */
act_pid_t repo_writer(void);
act_pid_t repo_reader(void);
bool repo_database_up(void);    /* the writer's view: for /healthz */
void repo_mark_migrated(void);  /* main applied the migrations at start */
/* For tests only (test_repo.c): nothing in app/ calls it. */
bool repo_migration_idle(void); /* no migration queued or running on the pool */

#endif
