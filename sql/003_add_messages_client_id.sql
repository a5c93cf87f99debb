-- 003: messages.client_id (protocol v2): a send's optional idempotency key,
-- chosen by the client (1 to 64 of A-Z a-z 0-9 _ -, checked by the server
-- before it gets here).  A retry of a send whose reply was lost carries the
-- same key, and the unique index makes it find the stored message instead of
-- storing a second copy (app/db.c's insert uses it as its ON CONFLICT
-- arbiter).  NULL (no key) never conflicts: NULLs are distinct in a unique
-- index.  Adding a nullable column without a default rewrites nothing; the
-- index build reads the table once (about 1 s per million rows here).
-- Applied by db_migrate (app/db.c) inside a transaction.
ALTER TABLE messages ADD COLUMN client_id text NULL;
CREATE UNIQUE INDEX messages_user_id_client_id_index ON messages (user_id, client_id);
