/**
 * The partitions of `checkout_attempts` (one per sale, LIST on sale_id;
 * migrations 003 and 004) and their retirement: every statement that creates,
 * detaches, exports, imports or drops one is here.
 *
 * There is no DEFAULT partition (migration 004 removed it): PostgreSQL allows
 * DETACH … CONCURRENTLY only without one. A row whose sale has no partition is
 * refused, and the attempts writer then creates the partition and writes the
 * batch again (attempts.ts), so an attempt still never fails for want of one.
 *
 * Retiring a partition takes steps that each leave their mark in the catalog,
 * so a pass that dies anywhere is finished by the next: it is moved into the
 * schema `retired` with its sales noted on it (still attached), detached
 * CONCURRENTLY (or FINALIZEd, when an earlier detach was interrupted), archived,
 * and dropped only once its archive is written; so a failed archive never loses
 * a row, and the hot path never waits for a retirement.
 */
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import pg from 'pg';
import { from as copyFrom, to as copyTo } from 'pg-copy-streams';

import type { Config } from '../config.js';
import type { Db } from './db.js';

const PARENT = 'checkout_attempts';
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
  /** 'public' while in service; 'retired' once retention took it, attached or not. */
  schema: 'public' | 'retired';
  /** 'pending': a DETACH … CONCURRENTLY was interrupted (FINALIZE completes it). */
  attachment: 'attached' | 'pending' | 'detached';
  saleIds: string[];
  /** The earliest start and latest end of its sales (null if a sale is unknown). */
  startsAt: Date | null;
  endsAt: Date | null;
  bytes: number;
}

export function partitionsTable(db: Db, config: Pick<Config, 'DATABASE_URL' | 'DATABASE_MIGRATION_URL'>) {
  /**
   * The detach's connection: PostgreSQL itself, like the migrations', since it
   * sets lock_timeout as it connects, which a pooler refuses.
   */
  const directUrl = config.DATABASE_MIGRATION_URL || config.DATABASE_URL;

  /** A dedicated connection for one long statement, so it never holds a slot of the request pool. */
  async function withClient<T>(options: pg.ClientConfig, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = new pg.Client({ ...options, application_name: 'flashsale-retention' });
    await client.connect();
    try {
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
     * UPDATE EXCLUSIVE, which checkout inserts do not wait for. A partition
     * retention has taken but not detached yet still counts: its sale's rows
     * go there and are archived with it.
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
        const table = `public.${ident(name)}`;
        await q('ddl', PARENT, `CREATE TABLE ${table} (LIKE ${PARENT} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
        await q(
          'ddl',
          PARENT,
          `ALTER TABLE ${PARENT} ATTACH PARTITION ${table} FOR VALUES IN (${pg.escapeLiteral(saleId)})`,
        );
        return true;
      }),

    /** Every attempts partition, in service or retired, with its sales' window and its size. */
    async list(): Promise<Partition[]> {
      const { rows } = await db.query<{
        table: string;
        schema: 'public' | 'retired';
        attachment: 'attached' | 'pending' | 'detached';
        sale_ids: string[];
        starts_at: Date | null;
        ends_at: Date | null;
        known: string;
        bytes: string;
      }>(
        'select',
        PARENT,
        // An attached partition's sales are its bound; a detached one's, the note retire() left on it.
        `WITH parts AS (
           SELECT c.relname AS table, n.nspname AS schema, c.oid,
                  CASE WHEN i.inhrelid IS NULL THEN 'detached' WHEN i.inhdetachpending THEN 'pending'
                       ELSE 'attached' END AS attachment,
                  CASE WHEN i.inhrelid IS NULL
                       THEN coalesce(array(SELECT json_array_elements_text(obj_description(c.oid, 'pg_class')::json)),
                                     '{}')
                       ELSE array(SELECT m[1]
                                  FROM regexp_matches(pg_get_expr(c.relpartbound, c.oid), '''([^'']*)''', 'g') AS m)
                  END AS sale_ids
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = $1::regclass
           WHERE c.relkind = 'r' AND (i.inhrelid IS NOT NULL OR n.nspname = 'retired')
         )
         SELECT p.table, p.schema, p.attachment, p.sale_ids, pg_total_relation_size(p.oid) AS bytes,
                min(s.starts_at) AS starts_at, max(s.ends_at) AS ends_at, count(s.id) AS known
         FROM parts p LEFT JOIN sales s ON s.id = ANY (p.sale_ids)
         GROUP BY p.table, p.schema, p.attachment, p.sale_ids, p.oid
         ORDER BY min(s.starts_at) NULLS LAST, p.table`,
        [PARENT],
      );
      return rows.map((r) => {
        const complete = Number(r.known) === r.sale_ids.length && r.sale_ids.length > 0;
        return {
          table: r.table,
          schema: r.schema,
          attachment: r.attachment,
          saleIds: r.sale_ids,
          startsAt: r.starts_at,
          endsAt: complete ? r.ends_at : null,
          bytes: Number(r.bytes),
        };
      });
    },

    /**
     * The first step of retiring a partition: moves it, still attached, into
     * the schema `retired` and notes its sales on it (the detach removes its
     * bound). Locks the partition only, which nothing writes to any more;
     * `lockTimeoutMs` bounds the wait for someone reading it.
     */
    retire: (partition: Pick<Partition, 'table' | 'saleIds'>, lockTimeoutMs: number): Promise<void> =>
      db.transaction(async (q) => {
        const table = `public.${ident(partition.table)}`;
        await q('select', PARENT, "SELECT set_config('lock_timeout', $1, true)", [`${lockTimeoutMs}ms`]);
        await q('ddl', PARENT, `COMMENT ON TABLE ${table} IS ${pg.escapeLiteral(JSON.stringify(partition.saleIds))}`);
        await q('ddl', PARENT, `ALTER TABLE ${table} SET SCHEMA retired`);
      }),

    /**
     * Detaches a retired partition with DETACH … CONCURRENTLY: SHARE UPDATE
     * EXCLUSIVE on checkout_attempts, which inserts do not conflict with, then
     * a wait for the transactions that were using the table. It cannot run in
     * a transaction block, so it runs alone on its own connection, with
     * `lockTimeoutMs` as that connection's lock_timeout (a startup parameter,
     * so that it is never left set on a server connection that a pooler lends
     * to requests: hence the direct URL). A detach interrupted after
     * its first step (the timeout, a crash) leaves the partition "pending":
     * FINALIZE completes it, and until then PostgreSQL refuses to detach any
     * other partition.
     */
    detach: (partition: Pick<Partition, 'table' | 'attachment'>, lockTimeoutMs: number): Promise<void> =>
      withClient({ connectionString: directUrl, lock_timeout: lockTimeoutMs }, async (client) => {
        const mode = partition.attachment === 'pending' ? 'FINALIZE' : 'CONCURRENTLY';
        await client.query(`ALTER TABLE public.${PARENT} DETACH PARTITION retired.${ident(partition.table)} ${mode}`);
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
      withClient({ connectionString: config.DATABASE_URL }, async (client) => {
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

/**
 * Exports retired partitions as CSV with a header, on a connection of its own
 * (the archive worker's: a thread has no pool), opened by the first export and
 * kept for the next, so that a pass does not pay a new PostgreSQL backend
 * (docs/PERFORMANCE.md). Timestamps are spelled in UTC.
 *
 * Passes are an hour apart, and an idle connection may be gone by the next
 * one (PostgreSQL restarted, a proxy or a firewall dropped it, perhaps
 * silently): each export starts with a statement that must answer within
 * `checkMs` (a new connection must be made within it too), and a connection
 * that fails it, or any export, is closed and replaced at the next export.
 */
export function retiredExporter(databaseUrl: string, checkMs: number) {
  // What each export starts with: CSV timestamps in UTC, and the connection's proof of life. pg honours a query's own
  // query_timeout, which its types leave out.
  const utc = { text: "SET TimeZone = 'UTC'", query_timeout: checkMs };
  let kept: pg.Client | undefined;

  const discard = (client: pg.Client) => {
    if (kept === client) kept = undefined;
    client.end().catch(() => {});
  };

  async function connection(): Promise<pg.Client> {
    const client = kept;
    if (client) {
      try {
        await client.query(utc);
        return client;
      } catch {
        discard(client);
      }
    }
    const fresh = new pg.Client({
      connectionString: databaseUrl,
      application_name: 'flashsale-archive',
      connectionTimeoutMillis: checkMs,
    });
    fresh.on('error', () => discard(fresh));
    try {
      await fresh.connect();
      await fresh.query(utc);
    } catch (err) {
      discard(fresh);
      throw err;
    }
    return (kept = fresh);
  }

  return {
    /** Streams retired.`table` into `sink`; resolves to the number of rows. */
    async export(table: string, sink: Writable): Promise<number> {
      const client = await connection();
      try {
        const copy = client.query(
          copyTo(`COPY retired.${ident(table)} (${columns}) TO STDOUT (FORMAT csv, HEADER true)`),
        );
        await pipeline(copy, sink);
        return copy.rowCount;
      } catch (err) {
        discard(client);
        throw err;
      }
    },
  };
}

export type RetiredExporter = ReturnType<typeof retiredExporter>;
