/**
 * The partitions of `checkout_attempts` (one per sale, LIST on sale_id;
 * migration 003) and their retirement: every statement that creates,
 * detaches, exports, imports or drops one is here. A partition past its
 * retention is detached and moved into the schema `retired`, where it waits
 * until its archive is written, then dropped; so a failed archive never loses
 * a row, and the hot path never sees a half-retired sale.
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

import type { Db } from './db.js';

const PARENT = 'checkout_attempts';
const DEFAULT_PARTITION = 'checkout_attempts_default';
/** The columns of an archive, in their order: the table's, spelled out so an archive never depends on column order. */
export const ATTEMPT_COLUMNS = ['id', 'sale_id', 'item_id', 'user_id', 'outcome', 'code', 'attempted_at'] as const;
const columns = ATTEMPT_COLUMNS.join(', ');

/** Sale ids are digits (src/sale/ids.ts); anything else never reaches DDL. */
const partitionName = (saleId: string) => {
  if (!/^\d{1,20}$/.test(saleId)) throw new Error(`not a sale id: ${JSON.stringify(saleId)}`);
  return `${PARENT}_${saleId}`;
};
const ident = (name: string) => pg.escapeIdentifier(name);

export interface Partition {
  table: string;
  /** 'public' while attached; 'retired' once detached and waiting for its archive. */
  schema: 'public' | 'retired';
  saleIds: string[];
  /** The earliest start and latest end of its sales (null if a sale is unknown). */
  startsAt: Date | null;
  endsAt: Date | null;
  bytes: number;
}

export function partitionsTable(db: Db, databaseUrl: string) {
  /** A dedicated connection for a long COPY, so an archive never holds a slot of the request pool. */
  async function withClient<T>(fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ connectionString: databaseUrl, application_name: 'flashsale-retention' });
    await client.connect();
    try {
      await client.query("SET TimeZone = 'UTC'"); // archives spell every timestamp in UTC
      return await fn(client);
    } finally {
      await client.end().catch(() => {});
    }
  }

  return {
    /**
     * Creates the sale's partition unless it exists; true if this call
     * created it. Idempotent across instances (a transaction-scoped advisory
     * lock serialises them, which also works behind PgBouncer's transaction
     * pooling). CREATE TABLE … PARTITION OF would lock the whole table
     * exclusively; creating a plain table and attaching it takes only SHARE
     * UPDATE EXCLUSIVE, which checkout inserts do not wait for. Rows of the sale
     * that reached the DEFAULT partition meanwhile are moved into it first.
     */
    ensure: (saleId: string): Promise<boolean> =>
      db.transaction(async (q) => {
        const name = partitionName(saleId);
        await q('select', PARENT, "SELECT pg_advisory_xact_lock(hashtext('checkout_attempts partitions'))");
        const { rows } = await q<{ attached: boolean }>(
          'select',
          PARENT,
          `SELECT EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                          WHERE i.inhparent = $1::regclass AND c.relname = $2) AS attached`,
          [PARENT, name],
        );
        if (rows[0]!.attached) return false;
        await q('ddl', PARENT, `CREATE TABLE ${ident(name)} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
        await q(
          'ddl',
          PARENT,
          `WITH moved AS (DELETE FROM ${DEFAULT_PARTITION} WHERE sale_id = $1 RETURNING ${columns})
           INSERT INTO ${ident(name)} (${columns}) SELECT ${columns} FROM moved`,
          [saleId],
        );
        await q(
          'ddl',
          PARENT,
          `ALTER TABLE ${PARENT} ATTACH PARTITION ${ident(name)} FOR VALUES IN (${pg.escapeLiteral(saleId)})`,
        );
        return true;
      }),

    /** Every attempts partition, attached or retired, with its sales' window and its size. */
    async list(): Promise<Partition[]> {
      const { rows } = await db.query<{
        table: string;
        schema: 'public' | 'retired';
        sale_ids: string[];
        starts_at: Date | null;
        ends_at: Date | null;
        known: string;
        bytes: string;
      }>(
        'select',
        PARENT,
        `WITH parts AS (
           SELECT c.relname AS table, 'public' AS schema, c.oid,
                  array(SELECT m[1] FROM regexp_matches(pg_get_expr(c.relpartbound, c.oid), '''([^'']*)''', 'g') AS m)
                    AS sale_ids
           FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = $1::regclass AND c.relname <> $2
           UNION ALL
           SELECT c.relname, 'retired', c.oid,
                  coalesce(array(SELECT json_array_elements_text(obj_description(c.oid, 'pg_class')::json)), '{}')
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'retired' AND c.relkind = 'r'
         )
         SELECT p.table, p.schema, p.sale_ids, pg_total_relation_size(p.oid) AS bytes,
                min(s.starts_at) AS starts_at, max(s.ends_at) AS ends_at, count(s.id) AS known
         FROM parts p LEFT JOIN sales s ON s.id = ANY (p.sale_ids)
         GROUP BY p.table, p.schema, p.sale_ids, p.oid
         ORDER BY min(s.starts_at) NULLS LAST, p.table`,
        [PARENT, DEFAULT_PARTITION],
      );
      return rows.map((r) => {
        const complete = Number(r.known) === r.sale_ids.length && r.sale_ids.length > 0;
        return {
          table: r.table,
          schema: r.schema,
          saleIds: r.sale_ids,
          startsAt: r.starts_at,
          endsAt: complete ? r.ends_at : null,
          bytes: Number(r.bytes),
        };
      });
    },

    /**
     * Detaches a partition and moves it into `retired`, in one transaction,
     * noting its sales on it. Plain DETACH, not CONCURRENTLY: PostgreSQL
     * refuses CONCURRENTLY while a DEFAULT partition exists, and the DEFAULT
     * partition is what guarantees an attempt is never refused. Plain DETACH
     * changes only the catalog but needs an exclusive lock on the parent for
     * that moment: `lockTimeoutMs` bounds how long checkout inserts can queue
     * behind it (the attempt gives up and the next pass retries).
     */
    detach: (partition: Pick<Partition, 'table' | 'saleIds'>, lockTimeoutMs: number): Promise<void> =>
      db.transaction(async (q) => {
        await q('select', PARENT, "SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
        await q('ddl', PARENT, `ALTER TABLE ${PARENT} DETACH PARTITION ${ident(partition.table)}`);
        await q('ddl', PARENT, `ALTER TABLE ${ident(partition.table)} SET SCHEMA retired`);
        await q(
          'ddl',
          PARENT,
          `COMMENT ON TABLE retired.${ident(partition.table)} IS ${pg.escapeLiteral(JSON.stringify(partition.saleIds))}`,
        );
      }),

    /** Streams a retired partition as CSV with a header into `sink`; resolves to the number of rows. */
    exportRetired: (table: string, sink: Writable): Promise<number> =>
      withClient(async (client) => {
        const copy = client.query(
          copyTo(`COPY retired.${ident(table)} (${columns}) TO STDOUT (FORMAT csv, HEADER true)`),
        );
        await pipeline(copy, sink);
        return copy.rowCount;
      }),

    /** Drops a retired partition (after its archive is safe). */
    async dropRetired(table: string): Promise<void> {
      await db.query('ddl', PARENT, `DROP TABLE IF EXISTS retired.${ident(table)}`);
    },

    /**
     * Creates `table` shaped like checkout_attempts (no partitioning, no
     * identity) and loads a CSV archive into it, in one transaction that is
     * rolled back unless exactly `expectedRows` rows were loaded.
     */
    importArchive: (table: string, source: Readable, expectedRows: number): Promise<void> =>
      withClient(async (client) => {
        await client.query('BEGIN');
        try {
          await client.query(`CREATE TABLE ${ident(table)} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
          const copy = client.query(copyFrom(`COPY ${ident(table)} (${columns}) FROM STDIN (FORMAT csv, HEADER true)`));
          await pipeline(source, copy);
          if (copy.rowCount !== expectedRows) {
            throw new Error(`the archive holds ${copy.rowCount} rows, its manifest says ${expectedRows}`);
          }
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => {});
          throw err;
        }
      }),

    /** The database's size and each table's (partitions summed into their parent), in bytes. */
    async sizes(): Promise<{ database: number; tables: Record<string, number> }> {
      const { rows } = await db.query<{ database: string; tables: Record<string, string> }>(
        'select',
        'none',
        `SELECT pg_database_size(current_database()) AS database,
                (SELECT json_object_agg(t, (SELECT coalesce(sum(pg_total_relation_size(relid)), 0)
                                            FROM pg_partition_tree(t::regclass)))
                 FROM unnest($1::text[]) AS t) AS tables`,
        [['sales', 'items', 'user_slots', 'purchases', PARENT]],
      );
      const row = rows[0]!;
      return {
        database: Number(row.database),
        tables: Object.fromEntries(Object.entries(row.tables).map(([t, b]) => [t, Number(b)])),
      };
    },
  };
}

export type Partitions = ReturnType<typeof partitionsTable>;
