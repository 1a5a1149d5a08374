/**
 * The `purchases` table, one row per sold item: every statement on it. Its
 * constraints are the invariants (001_init.sql): an item sold once, a user's
 * slot 1..user_limit used once.
 */
import { createBatcher } from './batcher.js';
import type { Db } from './db.js';

export interface PurchaseRow {
  saleId: string;
  itemId: string;
  userId: string;
  slot: number;
  code: string;
  /** purchased_at, in epoch milliseconds */
  at: number;
}

interface Raw {
  sale_id: string;
  item_id: string;
  user_id: string;
  slot: number;
  code: string;
  at: string;
}
const SELECT = `SELECT sale_id, item_id, user_id, slot, code, (extract(epoch FROM purchased_at) * 1000)::bigint AS at
  FROM purchases`;
const toRow = (r: Raw): PurchaseRow => ({
  saleId: r.sale_id,
  itemId: r.item_id,
  userId: r.user_id,
  slot: r.slot,
  code: r.code,
  at: Number(r.at),
});

export function purchasesTable(db: Db, timeoutMs: number) {
  const inserts = createBatcher<PurchaseRow, boolean>(
    async (rows) => {
      const { rows: inserted } = await db.query<{ code: string }>(
        'insert',
        'purchases',
        // One JSON parameter, as for attempts (db/attempts.ts).
        `INSERT INTO purchases (sale_id, item_id, user_id, slot, code, purchased_at)
         SELECT "saleId", "itemId", "userId", slot, code, to_timestamp(at / 1000.0)
         FROM json_to_recordset($1::json)
           AS x("saleId" text, "itemId" text, "userId" text, slot int, code text, at float8)
         ON CONFLICT DO NOTHING RETURNING code`,
        [JSON.stringify(rows)],
        'purchases_insert',
      );
      const done = new Set(inserted.map((r) => r.code));
      return rows.map((r) => done.has(r.code));
    },
    { timeoutMs },
  );

  const lookups = createBatcher<string, PurchaseRow | undefined>(
    async (codes) => {
      const { rows } = await db.query<Raw>('select', 'purchases', `${SELECT} WHERE code = ANY($1::text[])`, [codes]);
      const found = new Map(rows.map((r) => [r.code, toRow(r)]));
      return codes.map((c) => found.get(c));
    },
    { timeoutMs },
  );

  return {
    /** Group-committed; false when a constraint refused the row (the item, the slot or the code is taken). */
    insert: (row: PurchaseRow) => inserts.add(row),
    /** The purchase a code made, if any; batched like the inserts (replays come in floods). */
    findByCode: (code: string) => lookups.add(code),
    /** What refused a row: the purchase of its code, of its item, and every purchase of its user in the sale. */
    async findConflicts(row: PurchaseRow): Promise<PurchaseRow[]> {
      const { rows } = await db.query<Raw>(
        'select',
        'purchases',
        `${SELECT} WHERE code = $1 OR (sale_id = $2 AND (item_id = $3 OR user_id = $4))`,
        [row.code, row.saleId, row.itemId, row.userId],
      );
      return rows.map(toRow);
    },
    async listBySale(saleId: string): Promise<PurchaseRow[]> {
      const { rows } = await db.query<Raw>('select', 'purchases', `${SELECT} WHERE sale_id = $1`, [saleId]);
      return rows.map(toRow);
    },
    drain: () => Promise.all([inserts.drain(), lookups.drain()]),
  };
}

export type Purchases = ReturnType<typeof purchasesTable>;
