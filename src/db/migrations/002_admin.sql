-- The operator API (src/admin): the kill switch and its audit trail.
--
-- sale_controls holds a sale's state only once an operator has changed it
-- (no row: open). Every instance reads the rows of unfinished sales every
-- SALE_STATE_REFRESH_MS, so PostgreSQL, not Redis, is what makes a pause hold
-- on every instance and through a Redis restart. 'ended' is final: nothing
-- updates a row that holds it (src/db/admin.ts).
CREATE TABLE sale_controls (
  sale_id    text        PRIMARY KEY REFERENCES sales (id),
  state      text        NOT NULL CHECK (state IN ('open', 'paused', 'ended')),
  changed_at timestamptz NOT NULL,
  changed_by text        NOT NULL
);

-- One row per authenticated operator request, written with the change it made
-- (same transaction) or after the read it served. actor is the admin token's
-- id (a prefix of its SHA-256) or the operator token's sub, never a secret.
CREATE TABLE admin_audit (
  id      bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at      timestamptz NOT NULL,
  actor   text        NOT NULL,
  action  text        NOT NULL,
  sale_id text,
  target  text,
  address text        NOT NULL,
  result  text        NOT NULL
);
CREATE INDEX admin_audit_sale ON admin_audit (sale_id, at);
