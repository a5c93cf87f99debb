-- 002: messages of the one lobby.  `seq` is assigned by the database at insert
-- and is the protocol's cursor for history and catch-up (PROTOCOL.md): clients
-- page with seq < N and catch up with seq > N, hence the index on seq.
-- Applied by db_migrate (app/db.c) inside a transaction.
CREATE TABLE messages (
  id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  seq         bigint      GENERATED ALWAYS AS IDENTITY,
  content     text        NOT NULL,
  user_id     uuid        NOT NULL REFERENCES users (id),
  inserted_at timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT messages_seq_key UNIQUE (seq)
);

-- The UNIQUE constraint on seq is the index on messages(seq) (a second one
-- would only slow inserts); author look-ups and the foreign key use this one.
CREATE INDEX messages_user_id_index ON messages (user_id);
