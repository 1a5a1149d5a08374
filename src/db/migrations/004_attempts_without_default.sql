-- checkout_attempts loses its DEFAULT partition, so that retention can detach
-- partitions with DETACH PARTITION … CONCURRENTLY, which PostgreSQL refuses
-- while a DEFAULT partition exists. An attempt still never fails for want of a
-- partition: the attempts writer creates a missing one when PostgreSQL refuses
-- a row ("no partition of relation … found for row") and writes the batch
-- again (src/db/attempts.ts).
--
-- In place, losing no row: the DEFAULT partition is detached, each sale it
-- holds rows of gets its own partition (as src/db/partitions.ts creates them:
-- a plain table, attached), its rows go into them through the parent with
-- their ids, and it is dropped. It should hold nothing or a few rows, so the
-- ACCESS EXCLUSIVE lock on checkout_attempts that DETACH takes is brief.

ALTER TABLE checkout_attempts DETACH PARTITION checkout_attempts_default;

DO $$
DECLARE
  sale text;
BEGIN
  FOR sale IN SELECT DISTINCT sale_id FROM checkout_attempts_default ORDER BY 1 LOOP
    EXECUTE format('CREATE TABLE public.%I (LIKE checkout_attempts INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   'checkout_attempts_' || sale);
    EXECUTE format('ALTER TABLE checkout_attempts ATTACH PARTITION public.%I FOR VALUES IN (%L)',
                   'checkout_attempts_' || sale, sale);
  END LOOP;
END
$$;

INSERT INTO checkout_attempts (id, sale_id, item_id, user_id, outcome, code, attempted_at) OVERRIDING SYSTEM VALUE
  SELECT id, sale_id, item_id, user_id, outcome, code, attempted_at FROM checkout_attempts_default;

DROP TABLE checkout_attempts_default;
