-- checkout_attempts becomes a table partitioned by LIST (sale_id): one
-- partition per sale, created ahead with the sale (src/db/partitions.ts), so
-- retention retires a whole sale by dropping a table instead of deleting
-- millions of rows (no bloat, no vacuum debt). sale_id, not attempted_at:
-- every statement on the table names its sale (the insert routes by it,
-- findCode and listCodes prune to one partition), and a sale is the unit the
-- business retires. The primary key must contain the partition key, so it
-- becomes (sale_id, id). A DEFAULT partition catches a row whose sale has no
-- partition yet, so an attempt never fails for want of one.
--
-- In place, without copying a row: the existing table is renamed, loses its
-- identity (the new table's identity continues after its highest id), and is
-- attached as the partition of every sale it holds. ATTACH scans it once to
-- check that and builds its (sale_id, id) primary key index, while checkout
-- writes wait (docs/operations.md, "Upgrading to partitioned attempts", has
-- the time this takes per million rows).

LOCK TABLE checkout_attempts IN ACCESS EXCLUSIVE MODE;
ALTER TABLE checkout_attempts RENAME TO checkout_attempts_legacy;
-- Its primary key (id) gives way to the partitioned table's (sale_id, id).
ALTER TABLE checkout_attempts_legacy DROP CONSTRAINT checkout_attempts_pkey;
ALTER INDEX checkout_attempts_codes RENAME TO checkout_attempts_legacy_codes;
ALTER TABLE checkout_attempts_legacy ALTER COLUMN id DROP IDENTITY;

CREATE TABLE checkout_attempts (
  id           bigint GENERATED ALWAYS AS IDENTITY,
  sale_id      text        NOT NULL,
  item_id      text        NOT NULL,
  user_id      text        NOT NULL,
  outcome      text        NOT NULL,
  code         text,
  attempted_at timestamptz NOT NULL,
  PRIMARY KEY (sale_id, id),
  -- the same name as the legacy table's check, which ATTACH requires
  CONSTRAINT checkout_attempts_check CHECK ((outcome = 'OK') = (code IS NOT NULL))
) PARTITION BY LIST (sale_id);
CREATE INDEX checkout_attempts_codes ON checkout_attempts (sale_id, code) WHERE code IS NOT NULL;
CREATE TABLE checkout_attempts_default PARTITION OF checkout_attempts DEFAULT;

-- Partitions past their retention wait here, detached, until their archive is
-- written; then they are dropped (src/retention/).
CREATE SCHEMA retired;

DO $$
DECLARE
  sale_ids text;
  next_id  bigint;
BEGIN
  SELECT string_agg(quote_literal(sale_id), ', ' ORDER BY sale_id) INTO sale_ids
    FROM (SELECT DISTINCT sale_id FROM checkout_attempts_legacy) AS s;
  SELECT coalesce(max(id), 0) + 1 INTO next_id FROM checkout_attempts_legacy;
  EXECUTE format('ALTER TABLE checkout_attempts ALTER COLUMN id RESTART WITH %s', next_id);
  IF sale_ids IS NULL THEN
    DROP TABLE checkout_attempts_legacy;
  ELSE
    EXECUTE format('ALTER TABLE checkout_attempts ATTACH PARTITION checkout_attempts_legacy FOR VALUES IN (%s)',
                   sale_ids);
  END IF;
END
$$;
