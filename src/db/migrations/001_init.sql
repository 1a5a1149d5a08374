-- Sales, their items, every validated checkout attempt, and every sold item.
-- The invariants live here as constraints, so no cache bug can oversell.

CREATE TABLE sales (
  id          text        PRIMARY KEY,
  starts_at   timestamptz NOT NULL,
  ends_at     timestamptz NOT NULL CHECK (ends_at > starts_at),
  total_items integer     NOT NULL CHECK (total_items > 0),
  user_limit  integer     NOT NULL CHECK (user_limit > 0),
  created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE items (
  id      text    PRIMARY KEY,
  sale_id text    NOT NULL REFERENCES sales (id),
  idx     integer NOT NULL CHECK (idx >= 0),
  name    text    NOT NULL,
  UNIQUE (sale_id, idx)
);

-- One row per slot a user may fill in a sale (1..user_limit). purchases.slot
-- references it, so the per-user limit is a foreign key, not a count.
CREATE TABLE user_slots (
  sale_id text    NOT NULL REFERENCES sales (id),
  slot    integer NOT NULL CHECK (slot > 0),
  PRIMARY KEY (sale_id, slot)
);

CREATE TABLE purchases (
  sale_id      text        NOT NULL,
  item_id      text        NOT NULL REFERENCES items (id),
  user_id      text        NOT NULL,
  slot         integer     NOT NULL,
  code         text        NOT NULL UNIQUE,
  purchased_at timestamptz NOT NULL,
  PRIMARY KEY (sale_id, item_id),          -- invariant 1: an item is sold at most once
  UNIQUE (sale_id, user_id, slot),         -- invariant 2: at most user_limit items per user
  FOREIGN KEY (sale_id, slot) REFERENCES user_slots (sale_id, slot)
);

-- outcome is 'OK' or the error code the attempt was answered with; code is
-- the checkout code issued (or returned again) when the outcome is OK.
CREATE TABLE checkout_attempts (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sale_id      text        NOT NULL,
  item_id      text        NOT NULL,
  user_id      text        NOT NULL,
  outcome      text        NOT NULL,
  code         text,
  attempted_at timestamptz NOT NULL,
  CHECK ((outcome = 'OK') = (code IS NOT NULL))
);
-- Only attempts that got a code are indexed: the rebuild reads a sale's codes,
-- and a purchase looks a code up by (sale, code), the sale being the code's
-- prefix. The refused attempts (most of a stampede) touch only the primary key.
CREATE INDEX checkout_attempts_codes ON checkout_attempts (sale_id, code) WHERE code IS NOT NULL;
