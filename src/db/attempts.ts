/**
 * The `checkout_attempts` table: one row per validated checkout attempt,
 * with its outcome, and the code it was given (outcome OK). Every statement
 * on it is here.
 */
import type { ErrorCode } from '../errors.js';
import { createBatcher } from './batcher.js';
import type { Db } from './db.js';
import type { Partitions } from './partitions.js';

export interface AttemptRow {
  saleId: string;
  itemId: string;
  userId: string;
  outcome: 'OK' | ErrorCode;
  code: string | null;
  /** attempted_at, in epoch milliseconds */
  at: number;
}

/** A code as issued: to whom, for which item. */
export interface IssuedCode {
  userId: string;
  itemId: string;
  code: string;
}

/**
 * PostgreSQL's refusal of a row whose sale has no partition: SQLSTATE 23514
 * like a CHECK violation, but naming no constraint.
 */
const noPartition = (err: unknown) => {
  const e = err as { code?: string; constraint?: string };
  return e.code === '23514' && e.constraint === undefined;
};

export function attemptsTable(db: Db, timeoutMs: number, partitions: Pick<Partitions, 'ensure'>) {
  // The batch goes as one JSON parameter, the rows as they are: JSON.stringify
  // is native, where pg escapes every element of six array parameters in
  // JavaScript (docs/ARCHITECTURE.md, decision table).
  const write = (rows: AttemptRow[]) =>
    db.query(
      'insert',
      'checkout_attempts',
      `INSERT INTO checkout_attempts (sale_id, item_id, user_id, outcome, code, attempted_at)
       SELECT "saleId", "itemId", "userId", outcome, code, to_timestamp(at / 1000.0)
       FROM json_to_recordset($1::json)
         AS x("saleId" text, "itemId" text, "userId" text, outcome text, code text, at float8)`,
      [JSON.stringify(rows)],
      'checkout_attempts_insert',
    );
  const inserts = createBatcher<AttemptRow, undefined>(
    async (rows) => {
      try {
        await write(rows);
      } catch (err) {
        if (!noPartition(err)) throw err;
        // A sale without its partition (its creation ahead failed, or never
        // ran): create the batch's, idempotently, and write the batch again.
        for (const saleId of new Set(rows.map((r) => r.saleId))) await partitions.ensure(saleId);
        await write(rows);
      }
      return rows.map(() => undefined);
    },
    { timeoutMs },
  );

  return {
    /** Group-committed; resolves once the row is in PostgreSQL. */
    insert: (row: AttemptRow) => inserts.add(row),
    /** Whom a code of this sale was issued to, if it was. */
    async findCode(saleId: string, code: string): Promise<IssuedCode | undefined> {
      const { rows } = await db.query<{ user_id: string; item_id: string }>(
        'select',
        'checkout_attempts',
        'SELECT user_id, item_id FROM checkout_attempts WHERE sale_id = $1 AND code = $2 LIMIT 1',
        [saleId, code],
      );
      const row = rows[0];
      return row && { userId: row.user_id, itemId: row.item_id, code };
    },
    /** Every code issued in a sale, once each. */
    async listCodes(saleId: string): Promise<IssuedCode[]> {
      const { rows } = await db.query<{ user_id: string; item_id: string; code: string }>(
        'select',
        'checkout_attempts',
        `SELECT DISTINCT ON (code) user_id, item_id, code
         FROM checkout_attempts WHERE sale_id = $1 AND code IS NOT NULL`,
        [saleId],
      );
      return rows.map((r) => ({ userId: r.user_id, itemId: r.item_id, code: r.code }));
    },
    drain: () => inserts.drain(),
  };
}

export type Attempts = ReturnType<typeof attemptsTable>;
