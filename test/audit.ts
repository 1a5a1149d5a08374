/**
 * The invariant audit every concurrency and fault test ends with: PostgreSQL's
 * rows against what clients were told, and a final sweep proving every item
 * not sold is still sellable.
 */
import assert from 'node:assert/strict';

import type pg from 'pg';

import { itemId } from './helpers.js';

export interface Confirmed {
  code: string;
  userId: string;
  itemId: string;
}

/** No item sold twice, no user over the limit, every 200 purchase in PostgreSQL. */
export async function auditSale(db: pg.Pool, saleId: string, userLimit: number, confirmed: Confirmed[]) {
  const { rows } = await db.query<{ item_id: string; user_id: string; code: string }>(
    'SELECT item_id, user_id, code FROM purchases WHERE sale_id = $1',
    [saleId],
  );
  const byItem = new Map<string, { user_id: string; code: string }>();
  const perUser = new Map<string, number>();
  for (const r of rows) {
    assert.ok(!byItem.has(r.item_id), `item ${r.item_id} sold twice`);
    byItem.set(r.item_id, r);
    perUser.set(r.user_id, (perUser.get(r.user_id) ?? 0) + 1);
  }
  for (const [user, n] of perUser) assert.ok(n <= userLimit, `user ${user} holds ${n} items, limit ${userLimit}`);
  for (const c of confirmed) {
    const row = byItem.get(c.itemId);
    assert.ok(row, `purchase of ${c.itemId} was answered 200 but is not in PostgreSQL`);
    assert.equal(row.code, c.code, `item ${c.itemId} was confirmed to two codes`);
    assert.equal(row.user_id, c.userId);
  }
  return { sold: rows.length, byItem };
}

/** Buys every item PostgreSQL says is unsold, each by a fresh user: all must succeed. */
export async function sweep(base: string, saleId: string, totalItems: number, sold: Set<string>) {
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: totalItems }, (_, i) => itemId(saleId, i))
      .filter((id) => !sold.has(id))
      .map(async (id, n) => {
        const user = `sweeper-${saleId}-${n}`;
        const co = await fetch(`${base}/checkout?user_id=${user}&id=${id}`, { method: 'POST' });
        const { code } = (await co.json()) as { code?: string };
        const pu = code ? await fetch(`${base}/purchase?code=${code}`, { method: 'POST' }) : co;
        if (pu.status !== 200) failures.push(`${id}: ${pu.status} ${await pu.text()}`);
      }),
  );
  assert.deepEqual(failures, [], 'items left unsellable');
}
