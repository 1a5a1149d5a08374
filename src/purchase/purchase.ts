/**
 * POST /purchase: purchase-7.lua takes the code's lock and reserves the item
 * and the user's next slot in one round trip; the purchase is then
 * group-committed to PostgreSQL, whose constraints have the last word, and
 * only then answered. Every path ends with the lock released by its owner.
 */
import type { PurchaseRow } from '../db/purchases.js';
import { AppError, unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys, type SaleKeys } from '../redis/keys.js';
import { PURCHASE_LOCK_TTL_MS } from '../redis/lock.js';
import { rateLimits, type Announcement, type PurchaseInput } from '../redis/scripts.js';
import { imageUrl, itemName } from '../sale/catalog.js';
import type { Sales } from '../sale/sales.js';
import type { SoldCache } from '../sale/sold-cache.js';

export type PurchaseDeps = Pick<Infra, 'config' | 'data' | 'redis' | 'locks' | 'ids' | 'clock' | 'metrics'> & {
  sales: Sales;
  soldCache: SoldCache;
};

/** How long a purchase waiting for its code's lock waits to hear that the holder's purchase landed before it looks again. */
const LOCK_POLL_MS = 20;
const MAX_CONFLICT_RETRIES = 2;

type Purchased = Pick<PurchaseRow, 'saleId' | 'itemId' | 'userId' | 'at'>;
const body = (p: Purchased) => ({
  sale_id: p.saleId,
  item_id: p.itemId,
  user_id: p.userId,
  item: { id: p.itemId, name: itemName(p.itemId), image_url: imageUrl(p.itemId) },
  purchased_at: new Date(p.at).toISOString(),
});
type Answer = { outcome: 'success' | 'replay'; body: ReturnType<typeof body> };
const replay = (p: Purchased): Answer => ({ outcome: 'replay', body: body(p) });

export function createPurchase(deps: PurchaseDeps) {
  const { config, data, redis, locks, ids, sales, clock, soldCache, metrics } = deps;
  const limits = rateLimits(config);
  const indexOf = (itemId: string) => ids.parseItemId(itemId).index;

  /**
   * AUTH=jwt: a code spent by another user than its owner is refused, else a
   * verified user holding someone's code would buy for them. The same check
   * as purchase-7.lua's, for the answers PostgreSQL gives.
   */
  function checkOwner(buyer: string | undefined, owner: string) {
    if (buyer === undefined || buyer === owner) return;
    throw notOwner();
  }
  function notOwner() {
    metrics.authRejections.inc({ reason: 'code_owner' });
    return new AppError(
      'FORBIDDEN',
      "the code was checked out by another user than the token's sub",
      undefined,
      'code',
    );
  }

  /** Puts back into Redis a code PostgreSQL issued but Redis lost; false if PostgreSQL never issued it. */
  async function adopt(keys: SaleKeys, saleId: string, code: string, buyer: string | undefined): Promise<boolean> {
    const issued = await data.attempts.findCode(saleId, code);
    if (!issued) return false;
    checkOwner(buyer, issued.userId);
    const field = `${issued.userId}|${indexOf(issued.itemId)}`;
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
  async function resolveConflict(keys: SaleKeys, row: PurchaseRow): Promise<PurchaseRow | 'retry'> {
    const found = await data.purchases.findConflicts(row);
    const mine = found.find((p) => p.code === row.code);
    if (mine && mine.slot === row.slot) return mine;
    const itemPurchase = found.find((p) => p.itemId === row.itemId);
    if (itemPurchase) soldCache.confirmed(itemPurchase); // PostgreSQL's word: every instance may answer from it
    const userPurchases = found.filter((p) => p.userId === row.userId);
    await redis.scripts.sync({
      keys,
      index: indexOf(row.itemId),
      sold: itemPurchase,
      userId: row.userId,
      userLimit: config.USER_LIMIT,
      holds: userPurchases.map((p) => ({ slot: p.slot, index: indexOf(p.itemId) })),
    });
    if (mine) return mine;
    if (itemPurchase) throw new AppError('ITEM_SOLD', row.itemId);
    if (userPurchases.length >= config.USER_LIMIT) throw new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
    return 'retry';
  }

  /**
   * Confirms a reservation in PostgreSQL; the lock (token) is released on every
   * path. If PostgreSQL cannot confirm, a reservation this request made is
   * given back; an older one (possibly a confirmed purchase being replayed) is
   * left for the reconciler, which checks PostgreSQL before reclaiming it.
   */
  async function confirm(keys: SaleKeys, row: PurchaseRow, token: string, fresh: boolean): Promise<Answer | 'retry'> {
    const lockHeld = locks.record.acquired('purchase');
    const lock = keys.purchaseLock(row.code);
    /** `announce`: a committed purchase's message, published in the same round trip as the unlock. */
    const unlock = (announce?: Announcement) => {
      lockHeld();
      return redis.scripts.unlock(lock, token, announce).catch(() => false);
    };
    let inserted: boolean;
    try {
      // A reservation the code already held is most likely a confirmed purchase being replayed.
      const stored = fresh ? undefined : await data.purchases.findByCode(row.code);
      if (stored) {
        await unlock();
        return replay(stored);
      }
      inserted = await data.purchases.insert(row);
    } catch (err) {
      lockHeld();
      const undo = fresh
        ? redis.scripts.release({
            keys,
            code: row.code,
            userId: row.userId,
            index: indexOf(row.itemId),
            slot: row.slot,
            token,
          })
        : redis.scripts.unlock(lock, token);
      await undo.catch(() => {}); // Redis down too: the lock expires and the reconciler reclaims.
      throw err;
    }
    if (inserted) {
      // Committed: every instance may now answer its checkouts from memory.
      // The answer does not wait for the unlock: the purchase is durable, and
      // a purchase with this code that finds the lock still held waits for
      // the purchase it guards and replays it (waitForOtherPurchase).
      void unlock(soldCache.remember(row));
      return { outcome: 'success', body: body(row) };
    }
    try {
      const resolved = await resolveConflict(keys, row);
      return resolved === 'retry' ? 'retry' : replay(resolved);
    } finally {
      await unlock();
    }
  }

  /**
   * Another request is buying with this code right now: rather than race it,
   * wait and answer what it did (a replay). Once its purchase is in
   * PostgreSQL, every waiter answers at once instead of taking the lock in
   * turn: at its commit when this instance learns of it (sold-cache.ts),
   * else when the next look finds it.
   */
  async function waitForOtherPurchase(saleId: string, code: string, deadline: number): Promise<Purchased | undefined> {
    locks.record.failed('purchase', 'contended');
    const stored = soldCache.purchaseOf(saleId, code) ?? (await data.purchases.findByCode(code));
    if (stored) return stored;
    if (Date.now() > deadline) throw unavailable('purchase in progress for this code');
    return soldCache.whenBought(saleId, code, LOCK_POLL_MS);
  }

  /** A purchase in a sale that is open: reserve in Redis, confirm in PostgreSQL, retrying what can be repaired. */
  async function buyInOpenSale(code: string, saleId: string, ip: string, buyer: string | undefined): Promise<Answer> {
    const input: PurchaseInput = {
      keys: saleKeys(config.REDIS_PREFIX, saleId),
      code,
      ip,
      userLimit: config.USER_LIMIT,
      token: locks.newToken(),
      lockTtlMs: PURCHASE_LOCK_TTL_MS,
      now: 0,
      limits,
      charge: true,
      buyer,
    };
    const lockWaitEnds = Date.now() + config.DEPENDENCY_TIMEOUT_MS;
    const retriesLeft = { rebuild: 1, adopt: 1, conflict: MAX_CONFLICT_RETRIES };
    for (; ; input.charge = false) {
      input.now = clock.now();
      const r = await redis.scripts.purchase(input);
      switch (r.status) {
        case 'reserved': {
          locks.record.attempt('purchase');
          const row = { saleId, itemId: ids.itemId(saleId, r.index), userId: r.userId, slot: r.slot, code, at: r.at };
          const answer = await confirm(input.keys, row, input.token, r.fresh);
          if (answer !== 'retry') return answer;
          if (retriesLeft.conflict-- === 0) throw unavailable('purchase (conflicting state)');
          break;
        }
        case 'not_ready':
          if (retriesLeft.rebuild-- === 0) throw unavailable('sale state');
          await sales.rebuild(saleId);
          break;
        case 'unknown_code':
          if (retriesLeft.adopt-- === 0 || !(await adopt(input.keys, saleId, code, buyer))) {
            throw new AppError('CODE_NOT_FOUND');
          }
          break;
        case 'locked': {
          locks.record.attempt('purchase');
          const stored = await waitForOtherPurchase(saleId, code, lockWaitEnds);
          if (stored) return replay(stored);
          break;
        }
        case 'item_sold':
          lockTakenAndDropped();
          throw new AppError('ITEM_SOLD', ids.itemId(saleId, r.index));
        case 'user_full':
          lockTakenAndDropped();
          throw new AppError('USER_LIMIT_REACHED', String(config.USER_LIMIT));
        case 'rate_limited':
          throw new AppError('RATE_LIMITED', '', Math.max(1, Math.ceil(r.retryMs / 1000)));
        case 'not_owner':
          throw notOwner();
      }
    }
  }

  /** The script took the code's lock, found the purchase impossible and dropped the lock at once. */
  function lockTakenAndDropped() {
    locks.record.attempt('purchase');
    locks.record.acquired('purchase')();
  }

  /** A code of a sale that has ended: its purchase replays, anything else is refused. */
  async function afterSaleEnded(code: string, saleId: string, buyer: string | undefined): Promise<Answer> {
    const stored = await data.purchases.findByCode(code);
    if (stored) {
      checkOwner(buyer, stored.userId);
      return replay(stored);
    }
    const issued = await data.attempts.findCode(saleId, code);
    if (!issued) throw new AppError('CODE_NOT_FOUND');
    checkOwner(buyer, issued.userId);
    throw new AppError('SALE_ENDED', saleId);
  }

  /**
   * The purchases of a code this instance is running now. A second request
   * with the code (a double click, a retry, a script racing itself) waits for
   * the first to settle instead of running the script to find the code's lock
   * taken and then asking PostgreSQL whether it bought: a Redis round trip and
   * a query saved per duplicate. It then goes on as if it had arrived after:
   * a replay from memory if the first bought, its own attempt otherwise (a
   * 503 if the purchases it waited for took longer than DEPENDENCY_TIMEOUT_MS).
   */
  const running = new Map<string, Promise<unknown>>();

  return {
    /** `buyer`: AUTH=jwt's verified user, who must own the code (403 otherwise); undefined when AUTH=off. */
    async purchase(input: { code: string; ip: string; buyer?: string }): Promise<Answer> {
      const saleId = ids.saleIdOfCode(input.code);
      const window = ids.windowOfSale(saleId);
      if (!window || clock.now() < window.startsAt) throw new AppError('CODE_NOT_FOUND');
      const waitEnds = Date.now() + config.DEPENDENCY_TIMEOUT_MS;
      for (let first = running.get(input.code); first; first = running.get(input.code)) {
        await first.catch(() => {});
        if (Date.now() > waitEnds) throw unavailable('purchase in progress for this code');
      }
      if (clock.now() >= window.endsAt) return afterSaleEnded(input.code, saleId, input.buyer);
      // A code that bought, sent again: its confirmed purchase is in memory (src/sale/sold-cache.ts).
      const bought = soldCache.purchaseOf(saleId, input.code);
      if (bought) {
        checkOwner(input.buyer, bought.userId);
        return replay(bought);
      }
      const buying = buyInOpenSale(input.code, saleId, input.ip, input.buyer);
      running.set(input.code, buying);
      try {
        return await buying;
      } finally {
        running.delete(input.code);
      }
    },
  };
}

export type Purchase = ReturnType<typeof createPurchase>;
