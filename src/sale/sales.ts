/**
 * Sales: created idempotently by whichever instance gets there first (ahead of
 * their start), read from PostgreSQL, and mirrored into Redis. A sale's Redis
 * state is trusted only while its `ready` key exists; when it is missing (a
 * new sale, or Redis restarted or was flushed) one instance rebuilds it from
 * PostgreSQL under a lock while the others wait, so no write is ever decided
 * on state that disagrees with PostgreSQL's.
 */
import { unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import { itemName } from './catalog.js';
import type { SaleWindow } from './ids.js';

const REBUILD_LOCK_TTL_MS = 30_000;
const HSET_CHUNK = 1000;

export function createSales(deps: Infra) {
  const { config, db, redis, locks, ids, clock, metrics, log } = deps;
  const ensured = new Map<string, Promise<void>>();

  async function create(sale: SaleWindow): Promise<void> {
    const end = metrics.saleCreation.startTimer();
    const created = await db.transaction(async (q) => {
      const inserted = await q(
        'insert',
        'sales',
        `INSERT INTO sales (id, starts_at, ends_at, total_items, user_limit)
         VALUES ($1, to_timestamp($2 / 1000.0), to_timestamp($3 / 1000.0), $4, $5)
         ON CONFLICT (id) DO NOTHING RETURNING id`,
        [sale.id, sale.startsAt, sale.endsAt, config.SALE_ITEMS, config.USER_LIMIT],
      );
      if (inserted.rowCount === 0) return false; // another instance created it
      const itemIds = Array.from({ length: config.SALE_ITEMS }, (_, i) => ids.itemId(sale.id, i));
      await q(
        'insert',
        'items',
        `INSERT INTO items (id, sale_id, idx, name)
         SELECT id, $1, ord - 1, name FROM unnest($2::text[], $3::text[]) WITH ORDINALITY AS t(id, name, ord)`,
        [sale.id, itemIds, itemIds.map(itemName)],
      );
      await q('insert', 'user_slots', 'INSERT INTO user_slots (sale_id, slot) SELECT $1, generate_series(1, $2::int)', [
        sale.id,
        config.USER_LIMIT,
      ]);
      return true;
    });
    if (created) {
      end();
      log.info({ sale: sale.id, items: config.SALE_ITEMS }, 'sale created');
    }
  }

  /** Makes sure the sale exists in PostgreSQL; cheap after the first call. */
  function ensure(sale: SaleWindow): Promise<void> {
    let done = ensured.get(sale.id);
    if (!done) {
      done = create(sale);
      ensured.set(sale.id, done);
      done.catch(() => ensured.delete(sale.id));
    }
    return done;
  }

  /** The sale running now, created if nobody has yet. */
  async function active(): Promise<SaleWindow> {
    const sale = ids.windowAt(clock.now());
    await ensure(sale);
    return sale;
  }

  /** Loads the sale's Redis state from PostgreSQL (one instance; the others wait for it). */
  async function rebuild(saleId: string): Promise<void> {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const release = await locks.acquire('rebuild', keys.rebuildLock, REBUILD_LOCK_TTL_MS);
    if (!release) return waitUntilReady(saleId);
    try {
      const [purchases, codes] = await Promise.all([
        db.query<{ item_id: string; user_id: string; slot: number; code: string; at: string }>(
          'select',
          'purchases',
          `SELECT item_id, user_id, slot, code, (extract(epoch FROM purchased_at) * 1000)::bigint AS at
           FROM purchases WHERE sale_id = $1`,
          [saleId],
        ),
        db.query<{ user_id: string; item_id: string; code: string }>(
          'select',
          'checkout_attempts',
          `SELECT DISTINCT ON (code) user_id, item_id, code
           FROM checkout_attempts WHERE sale_id = $1 AND code IS NOT NULL`,
          [saleId],
        ),
      ]);
      const sold: string[] = [];
      const users: string[] = [];
      const held = new Map<string, number>();
      for (const p of purchases.rows) {
        const index = String(ids.parseItemId(p.item_id).index);
        sold.push(index, `${p.code}|${p.slot}|${p.at}`);
        users.push(`${p.user_id}|${p.slot}`, index);
        held.set(p.user_id, (held.get(p.user_id) ?? 0) + 1);
      }
      for (const [user, n] of held) users.push(user, String(n));
      const codeFields: string[] = [];
      const owners: string[] = [];
      for (const c of codes.rows) {
        const field = `${c.user_id}|${ids.parseItemId(c.item_id).index}`;
        codeFields.push(field, c.code);
        owners.push(c.code, field);
      }
      const hashes = [
        [keys.sold, sold],
        [keys.users, users],
        [keys.codes, codeFields],
        [keys.owners, owners],
      ] as const;
      await redis.command('unlink', ['UNLINK', ...hashes.map(([key]) => key)]);
      // Keys outlive the sale by one window, then Redis drops them by itself.
      // Each hash gets a placeholder field "|" (no user, index or code can be
      // "|") so that it exists, and carries that expiry, even when empty.
      const expireAt = String(ids.windowOf(saleId)!.endsAt + config.SALE_DURATION * 1000);
      const writes: Promise<unknown>[] = [];
      for (const [key, fields] of hashes) {
        writes.push(redis.command('hset', ['HSET', key, '|', '']));
        for (let i = 0; i < fields.length; i += HSET_CHUNK * 2) {
          writes.push(redis.command('hset', ['HSET', key, ...fields.slice(i, i + HSET_CHUNK * 2)]));
        }
        writes.push(redis.command('pexpireat', ['PEXPIREAT', key, expireAt]));
      }
      await Promise.all(writes);
      await redis.command('set', ['SET', keys.ready, '1', 'PXAT', expireAt]);
      log.info({ sale: saleId, sold: purchases.rowCount, codes: codes.rowCount }, 'sale state loaded into Redis');
    } finally {
      await release().catch(() => {});
    }
  }

  async function waitUntilReady(saleId: string): Promise<void> {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const deadline = Date.now() + config.DEPENDENCY_TIMEOUT_MS * 2;
    while (Date.now() < deadline) {
      if ((await redis.command<number>('exists', ['EXISTS', keys.ready])) === 1) return;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw unavailable('sale state (being rebuilt)');
  }

  /** How often tick() runs (app.ts schedules it). */
  const tickIntervalMs = Math.min(1000, (config.SALE_DURATION * 1000) / 4);

  /**
   * Creates the current sale, and the next one once its start is near: at
   * least min(60 s, half a window) ahead, whatever the phase of the ticks.
   */
  async function tick(): Promise<void> {
    const now = clock.now();
    const current = ids.windowAt(now);
    const lead = Math.min(60_000, (config.SALE_DURATION * 1000) / 2) + tickIntervalMs;
    const upcoming = current.endsAt - now <= lead ? [current, ids.windowAt(current.endsAt)] : [current];
    for (const sale of upcoming) {
      await ensure(sale);
      const ready = await redis.command<number>('exists', ['EXISTS', saleKeys(config.REDIS_PREFIX, sale.id).ready]);
      if (ready === 0) await rebuild(sale.id);
    }
  }

  async function info(saleId: string) {
    const { rows } = await db.query<{ starts_at: Date; ends_at: Date; total_items: number; sold: string }>(
      'select',
      'sales',
      `SELECT starts_at, ends_at, total_items, (SELECT count(*) FROM purchases p WHERE p.sale_id = s.id) AS sold
       FROM sales s WHERE id = $1`,
      [saleId],
    );
    const row = rows[0];
    if (!row) return undefined;
    const sold = Number(row.sold);
    return {
      id: saleId,
      started_at: row.starts_at.toISOString(),
      ends_at: row.ends_at.toISOString(),
      total_items: row.total_items,
      items_sold: sold,
      items_remaining: row.total_items - sold,
    };
  }

  async function items(saleId: string, offset: number, limit: number) {
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
  }

  return { active, ensure, rebuild, tick, tickIntervalMs, info, items };
}

export type Sales = ReturnType<typeof createSales>;
