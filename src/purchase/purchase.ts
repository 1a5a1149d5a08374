/**
 * POST /purchase: purchase-7.lua takes the code's lock and reserves the item
 * and the user's next slot in one round trip; the purchase is then
 * group-committed to PostgreSQL, whose constraints have the last word, and
 * only then answered. Every path ends with the lock released by its owner.
 */
import { createBatcher } from '../db/batcher.js';
import { AppError, unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys, type SaleKeys } from '../redis/keys.js';
import { PURCHASE_LOCK_TTL_MS } from '../redis/lock.js';
import { imageUrl, itemName } from '../sale/catalog.js';
import type { Sales } from '../sale/sales.js';

export type PurchaseDeps = Pick<Infra, 'config' | 'db' | 'redis' | 'locks' | 'ids' | 'clock'> & { sales: Sales };

interface Row {
  saleId: string;
  itemId: string;
  userId: string;
  slot: number;
  code: string;
  at: number;
}

type Reply = [0, string, string, number, number, 0 | 1] | [-1] | [1] | [2] | [3, string] | [4] | [5, number];

const LOCK_RETRY_MS = 20;
const MAX_CONFLICT_RETRIES = 2;

export function createPurchase(deps: PurchaseDeps) {
  const { config, db, redis, locks, ids, sales, clock } = deps;

  const writer = createBatcher<Row, boolean>(async (rows) => {
    const { rows: inserted } = await db.query<{ code: string }>(
      'insert',
      'purchases',
      `INSERT INTO purchases (sale_id, item_id, user_id, slot, code, purchased_at)
       SELECT s, i, u, sl, c, to_timestamp(t / 1000.0)
       FROM unnest($1::text[], $2::text[], $3::text[], $4::int[], $5::text[], $6::float8[]) AS x(s, i, u, sl, c, t)
       ON CONFLICT DO NOTHING RETURNING code`,
      [
        rows.map((r) => r.saleId),
        rows.map((r) => r.itemId),
        rows.map((r) => r.userId),
        rows.map((r) => r.slot),
        rows.map((r) => r.code),
        rows.map((r) => r.at),
      ],
    );
    const done = new Set(inserted.map((r) => r.code));
    return rows.map((r) => done.has(r.code));
  });

  const body = (row: Omit<Row, 'slot' | 'code'>) => ({
    sale_id: row.saleId,
    item_id: row.itemId,
    user_id: row.userId,
    item: { id: row.itemId, name: itemName(row.itemId), image_url: imageUrl(row.itemId) },
    purchased_at: new Date(row.at).toISOString(),
  });

  /** Purchases already confirmed, looked up by code; batched like the writes (replays can come in floods). */
  const stored = createBatcher<string, Omit<Row, 'slot' | 'code'> | undefined>(async (codes) => {
    const { rows } = await db.query<{ code: string; sale_id: string; item_id: string; user_id: string; at: Date }>(
      'select',
      'purchases',
      'SELECT code, sale_id, item_id, user_id, purchased_at AS at FROM purchases WHERE code = ANY($1::text[])',
      [codes],
    );
    const found = new Map(
      rows.map((r) => [r.code, { saleId: r.sale_id, itemId: r.item_id, userId: r.user_id, at: r.at.getTime() }]),
    );
    return codes.map((c) => found.get(c));
  });

  async function codeIssued(code: string) {
    const { rows } = await db.query<{ user_id: string; item_id: string }>(
      'select',
      'checkout_attempts',
      'SELECT user_id, item_id FROM checkout_attempts WHERE sale_id = $1 AND code = $2 LIMIT 1',
      [ids.saleIdOfCode(code), code],
    );
    return rows[0];
  }

  /** Puts back into Redis a code PostgreSQL knows but Redis lost. */
  async function adopt(keys: SaleKeys, code: string): Promise<boolean> {
    const issued = await codeIssued(code);
    if (!issued) return false;
    const field = `${issued.user_id}|${ids.parseItemId(issued.item_id).index}`;
    await Promise.all([
      redis.command('hset', ['HSET', keys.owners, code, field]),
      redis.command('hsetnx', ['HSETNX', keys.codes, field, code]),
    ]);
    return true;
  }

  /**
   * PostgreSQL refused the row: either this code already bought (a replay:
   * the stored purchase is returned), or Redis disagreed with PostgreSQL about
   * the item or the user's slots. Redis is repaired from PostgreSQL's truth;
   * the caller answers or retries.
   */
  async function resolveConflict(keys: SaleKeys, row: Row): Promise<Row | 'retry'> {
    const index = ids.parseItemId(row.itemId).index;
    const { rows } = await db.query<{ item_id: string; user_id: string; slot: number; code: string; at: string }>(
      'select',
      'purchases',
      `SELECT item_id, user_id, slot, code, (extract(epoch FROM purchased_at) * 1000)::bigint AS at
       FROM purchases WHERE code = $1 OR (sale_id = $2 AND (item_id = $3 OR user_id = $4))`,
      [row.code, row.saleId, row.itemId, row.userId],
    );
    const mine = rows.find((r) => r.code === row.code);
    if (mine) return { ...row, itemId: mine.item_id, userId: mine.user_id, slot: mine.slot, at: Number(mine.at) };
    const owner = rows.find((r) => r.item_id === row.itemId);
    const held = rows.filter((r) => r.user_id === row.userId);
    await redis.script(
      'sync',
      [keys.sold, keys.users],
      [
        index,
        owner ? `${owner.code}|${owner.slot}|${owner.at}` : '',
        row.userId,
        config.USER_LIMIT,
        ...held.flatMap((r) => [r.slot, ids.parseItemId(r.item_id).index]),
      ],
    );
    if (owner) throw new AppError('ITEM_SOLD', row.itemId);
    if (held.length >= config.USER_LIMIT) throw new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
    return 'retry';
  }

  /**
   * Confirms a reservation in PostgreSQL; the lock (token) is released on every
   * path. If PostgreSQL cannot confirm, a reservation this request made is
   * given back; an older one (possibly a confirmed purchase being replayed) is
   * left for the reconciler, which checks PostgreSQL before reclaiming it.
   */
  async function confirm(keys: SaleKeys, row: Row, token: string, fresh: boolean) {
    const held = locks.record.acquired('purchase');
    const lock = keys.purchaseLock(row.code);
    const unlock = () => {
      held();
      return redis.script('unlock', [lock], [token]);
    };
    let inserted: boolean;
    try {
      // A reservation the code already held is most likely a confirmed purchase being replayed.
      const replayed = fresh ? undefined : await stored.add(row.code);
      if (replayed) {
        await unlock().catch(() => {});
        return { outcome: 'replay' as const, body: body(replayed) };
      }
      inserted = await writer.add(row);
    } catch (err) {
      held();
      const undo = fresh
        ? redis.script(
            'release',
            [keys.sold, keys.users, lock],
            [row.code, row.userId, ids.parseItemId(row.itemId).index, row.slot, token],
          )
        : redis.script('unlock', [lock], [token]);
      await undo.catch(() => {}); // Redis down too: the lock expires and the reconciler reclaims.
      throw err;
    }
    try {
      if (inserted) return { outcome: 'success' as const, body: body(row) };
      const resolved = await resolveConflict(keys, row);
      return resolved === 'retry' ? undefined : { outcome: 'replay' as const, body: body(resolved) };
    } finally {
      await unlock().catch(() => {});
    }
  }

  async function endedSale(code: string, saleId: string) {
    const replayed = await stored.add(code);
    if (replayed) return { outcome: 'replay' as const, body: body(replayed) };
    if (await codeIssued(code)) throw new AppError('SALE_ENDED', saleId);
    throw new AppError('CODE_NOT_FOUND');
  }

  async function activeSale(code: string, saleId: string, ip: string) {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const token = locks.newToken();
    const deadline = Date.now() + config.DEPENDENCY_TIMEOUT_MS;
    let rebuilt = false;
    let adopted = false;
    for (let conflicts = 0, calls = 0; ; calls++) {
      const reply = await redis.script<Reply>(
        'purchase',
        [
          keys.ready,
          keys.owners,
          keys.sold,
          keys.users,
          keys.purchaseLock(code),
          keys.codeBucket(code),
          keys.ipBucket(ip),
        ],
        [
          code,
          config.USER_LIMIT,
          token,
          PURCHASE_LOCK_TTL_MS,
          clock.now(),
          config.RATE_LIMIT_USER_PER_SEC,
          config.RATE_LIMIT_USER_BURST,
          config.RATE_LIMIT_IP_PER_SEC,
          config.RATE_LIMIT_IP_BURST,
          calls === 0 ? 1 : 0,
        ],
      );
      if (reply[0] !== -1 && reply[0] !== 1 && reply[0] !== 5) locks.record.attempt('purchase');
      switch (reply[0]) {
        case 0: {
          const [, userId, index, slot, at, fresh] = reply;
          const row = { saleId, itemId: ids.itemId(saleId, Number(index)), userId, slot, code, at };
          const result = await confirm(keys, row, token, fresh === 1);
          if (result) return result;
          if (++conflicts > MAX_CONFLICT_RETRIES) throw unavailable('purchase (conflicting state)');
          continue;
        }
        case -1:
          if (rebuilt) throw unavailable('sale state');
          rebuilt = true;
          await sales.rebuild(saleId);
          continue;
        case 1:
          if (adopted || !(await adopt(keys, code))) throw new AppError('CODE_NOT_FOUND');
          adopted = true;
          continue;
        case 2: {
          // Another request is buying with this code right now: wait for it,
          // then answer what it did (a replay) instead of racing it. Once its
          // purchase is in PostgreSQL, every waiter answers at once rather
          // than taking the lock in turn.
          locks.record.failed('purchase', 'contended');
          const replayed = await stored.add(code);
          if (replayed) return { outcome: 'replay' as const, body: body(replayed) };
          if (Date.now() > deadline) throw unavailable('purchase in progress for this code');
          await new Promise((r) => setTimeout(r, LOCK_RETRY_MS));
          continue;
        }
        case 3:
          locks.record.acquired('purchase')();
          throw new AppError('ITEM_SOLD', ids.itemId(saleId, Number(reply[1])));
        case 4:
          locks.record.acquired('purchase')();
          throw new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
        case 5:
          throw new AppError('RATE_LIMITED', '', Math.max(1, Math.ceil(reply[1] / 1000)));
      }
    }
  }

  return {
    async purchase(input: { code: string; ip: string }) {
      const saleId = ids.saleIdOfCode(input.code);
      const window = ids.windowOf(saleId);
      const now = clock.now();
      if (!window || now < window.startsAt) throw new AppError('CODE_NOT_FOUND');
      if (now >= window.endsAt) return endedSale(input.code, saleId);
      return activeSale(input.code, saleId, input.ip);
    },
    drain: () => Promise.all([writer.drain(), stored.drain()]),
  };
}

export type Purchase = ReturnType<typeof createPurchase>;
