-- 001: users.  A user is a name, nothing more (no accounts): the name is unique
-- and a returning name gets its old id back.  Applied by db_migrate (app/db.c)
-- inside a transaction, so this file holds no BEGIN/COMMIT.
CREATE TABLE users (
  id          uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  name        text        NOT NULL,
  inserted_at timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_name_key UNIQUE (name)
);
