-- 004: drop messages_user_id_index.  The unique index of 003 on
-- (user_id, client_id) leads with user_id, so it serves every look-up by
-- author (and the foreign key's check when a user is deleted) just as well;
-- the single-column index only cost every insert one more index entry and
-- its WAL (one of four index insertions per message; the writer's batches
-- are bound by PostgreSQL's time per row, app/repo.c).
-- Applied by db_migrate (app/db.c) inside a transaction.
DROP INDEX IF EXISTS messages_user_id_index;
