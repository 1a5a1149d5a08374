/**
 * The `sales`, `items` and `user_slots` tables, written together when a sale
 * is created and read by the sale routes: every statement on them.
 */
import type { Db } from './db.js';

export interface NewSale {
  id: string;
  startsAt: number;
  endsAt: number;
  userLimit: number;
  items: { id: string; name: string }[];
}

export interface SaleRow {
  id: string;
  startsAt: Date;
  endsAt: Date;
  totalItems: number;
  itemsSold: number;
}

export function salesTables(db: Db) {
  return {
    /** Creates the sale with its items and slots in one transaction; false if it existed already. */
    create: (sale: NewSale): Promise<boolean> =>
      db.transaction(async (q) => {
        const inserted = await q(
          'insert',
          'sales',
          `INSERT INTO sales (id, starts_at, ends_at, total_items, user_limit)
           VALUES ($1, to_timestamp($2 / 1000.0), to_timestamp($3 / 1000.0), $4, $5)
           ON CONFLICT (id) DO NOTHING RETURNING id`,
          [sale.id, sale.startsAt, sale.endsAt, sale.items.length, sale.userLimit],
        );
        if (inserted.rowCount === 0) return false;
        await q(
          'insert',
          'items',
          `INSERT INTO items (id, sale_id, idx, name)
           SELECT id, $1, ord - 1, name FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(id, name, ord)`,
          [sale.id, sale.items.map((i) => i.id), sale.items.map((i) => i.name)],
        );
        await q(
          'insert',
          'user_slots',
          'INSERT INTO user_slots (sale_id, slot) SELECT $1, generate_series(1, $2::int)',
          [sale.id, sale.userLimit],
        );
        return true;
      }),

    async find(saleId: string): Promise<SaleRow | undefined> {
      const { rows } = await db.query<{ starts_at: Date; ends_at: Date; total_items: number; sold: string }>(
        'select',
        'sales',
        `SELECT starts_at, ends_at, total_items, (SELECT count(*) FROM purchases p WHERE p.sale_id = s.id) AS sold
         FROM sales s WHERE id = $1`,
        [saleId],
      );
      const row = rows[0];
      return (
        row && {
          id: saleId,
          startsAt: row.starts_at,
          endsAt: row.ends_at,
          totalItems: row.total_items,
          itemsSold: Number(row.sold),
        }
      );
    },

    async listItems(saleId: string, offset: number, limit: number) {
      const { rows } = await db.query<{ id: string; name: string; sold: boolean }>(
        'select',
        'items',
        // EXISTS per row of the page, not a join: a sale created moments ago has
        // no planner statistics yet, and the join was planned as a nested loop
        // over the whole sale (30 ms a page instead of 0.1 ms).
        `SELECT i.id, i.name,
                EXISTS (SELECT 1 FROM purchases p WHERE p.sale_id = i.sale_id AND p.item_id = i.id) AS sold
         FROM items i WHERE i.sale_id = $1 AND i.idx >= $2 ORDER BY i.idx LIMIT $3`,
        [saleId, offset, limit],
      );
      return rows;
    },
  };
}

export type SalesTables = ReturnType<typeof salesTables>;
