-- 006: messages.user_id's reference to users is checked once per statement
-- instead of once per row.  The foreign key of 002 ran one SPI query per
-- inserted row at the end of the INSERT (SELECT ... FOR KEY SHARE of the
-- user): 13% of the writer backend's CPU for a 1,024-row batch (`perf
-- record`, AfterTriggerEndQuery), for the one or few users a batch names.
-- The triggers below keep the same rules and the same SQLSTATE (23503,
-- foreign_key_violation), which app/db.c and its tests rely on:
--   * a statement that inserts or updates messages locks (FOR KEY SHARE, as
--     the foreign key did) every user its rows name, once each, and fails
--     if one is missing: the whole statement (the batch) is rolled back;
--   * deleting a user, or changing its id, fails while messages name it.
--     The delete waits on the key-share lock of an insert in flight and then
--     sees that insert's rows (a new snapshot per statement in PL/pgSQL), as
--     the foreign key's check did.
-- Applied by db_migrate (app/db.c) inside a transaction.
ALTER TABLE messages DROP CONSTRAINT messages_user_id_fkey;

CREATE FUNCTION messages_users_exist() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  want bigint;
  got bigint;
BEGIN
  SELECT count(DISTINCT user_id) INTO want FROM new_rows;
  PERFORM 1 FROM users u WHERE u.id IN (SELECT user_id FROM new_rows) FOR KEY SHARE;
  GET DIAGNOSTICS got = ROW_COUNT;
  IF got <> want THEN
    RAISE EXCEPTION 'insert or update on table "messages" violates foreign key constraint "messages_user_id_fkey"'
      USING ERRCODE = 'foreign_key_violation',
            DETAIL = 'A message names a user that does not exist.';
  END IF;
  RETURN NULL;
END $$;

-- A trigger with a transition table takes one event, hence two.
CREATE TRIGGER messages_users_exist_insert AFTER INSERT ON messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION messages_users_exist();
CREATE TRIGGER messages_users_exist_update AFTER UPDATE ON messages
  REFERENCING NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION messages_users_exist();

CREATE FUNCTION users_not_referenced() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
    RETURN NULL;
  END IF;
  IF EXISTS (SELECT 1 FROM messages WHERE user_id = OLD.id) THEN
    RAISE EXCEPTION 'update or delete on table "users" violates foreign key constraint "messages_user_id_fkey" on table "messages"'
      USING ERRCODE = 'foreign_key_violation',
            DETAIL = format('Key (id)=(%s) is still referenced from table "messages".', OLD.id);
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER users_not_referenced AFTER DELETE OR UPDATE OF id ON users
  FOR EACH ROW EXECUTE FUNCTION users_not_referenced();
