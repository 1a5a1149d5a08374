/**
 * Sales: created idempotently by whichever instance gets there first (ahead of
 * their start), read from PostgreSQL, and mirrored into Redis. A sale's Redis
 * state is trusted only while its `ready` key names the Redis server it was
 * loaded into (src/redis/redis.ts); otherwise (a new sale, or a Redis that
 * restarted empty, from an old snapshot, or failed over) one instance rebuilds
 * it from PostgreSQL under a lock while the others wait, so no write is ever
 * decided on state that disagrees with PostgreSQL's.
 */
import { unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { saleKeys, saleStateKeys } from '../redis/keys.js';
import { soldValue } from '../redis/scripts.js';
import { itemName } from './catalog.js';
import type { SaleWindow } from './ids.js';

const REBUILD_LOCK_TTL_MS = 30_000;
const HSET_CHUNK = 1000;
const READY_POLL_MS = 25;

export function createSales(deps: Infra) {
  const { config, data, redis, locks, ids, clock, metrics, log } = deps;
  const ensured = new Map<string, Promise<void>>();
  /** Ids of the sales `ensure` has seen exist: `current` answers for them without waiting. */
  const existing = new Set<string>();

  async function create(sale: SaleWindow): Promise<void> {
    const end = metrics.saleCreation.startTimer();
    // Its attempts partition first, by every instance (idempotent): a sale
    // whose creator died before creating it still gets one. A failure must not
    // stop the sale: the attempts' writer creates it when an insert is refused.
    await data.partitions
      .ensure(sale.id)
      .catch((err: unknown) => log.warn({ err, sale: sale.id }, 'could not create the attempts partition'));
    const itemIds = Array.from({ length: config.SALE_ITEMS }, (_, i) => ids.itemId(sale.id, i));
    const created = await data.sales.create({
      ...sale,
      userLimit: config.USER_LIMIT,
      items: itemIds.map((id) => ({ id, name: itemName(id) })),
    });
    if (!created) return; // another instance created it
    end();
    log.info({ sale: sale.id, items: config.SALE_ITEMS }, 'sale created');
  }

  /** Makes sure the sale exists in PostgreSQL; cheap after the first call. */
  function ensure(sale: SaleWindow): Promise<void> {
    let done = ensured.get(sale.id);
    if (!done) {
      done = create(sale);
      ensured.set(sale.id, done);
      done.then(
        () => existing.add(sale.id),
        () => ensured.delete(sale.id),
      );
    }
    return done;
  }

  /** The sale running now, created if nobody has yet. */
  async function active(): Promise<SaleWindow> {
    const sale = ids.windowContaining(clock.now());
    await ensure(sale);
    return sale;
  }

  /**
   * The sale running now if this instance already knows it exists, else
   * undefined (then `active`): every checkout asks, and once the sale exists
   * the answer needs neither I/O nor a promise.
   */
  function current(): SaleWindow | undefined {
    const sale = ids.windowContaining(clock.now());
    return existing.has(sale.id) ? sale : undefined;
  }

  /** Loads the sale's Redis state from PostgreSQL (one instance; the others wait for it). */
  async function rebuild(saleId: string): Promise<void> {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const release = await locks.acquire('rebuild', keys.rebuildLock, REBUILD_LOCK_TTL_MS);
    if (!release) return waitUntilLoaded(saleId);
    try {
      const [purchases, codes] = await Promise.all([
        data.purchases.listBySale(saleId),
        data.attempts.listCodes(saleId),
      ]);
      const sold: string[] = [];
      const users: string[] = [];
      const itemsHeld = new Map<string, number>();
      for (const p of purchases) {
        const index = String(ids.parseItemId(p.itemId).index);
        sold.push(index, soldValue(p));
        users.push(`${p.userId}|${p.slot}`, index);
        itemsHeld.set(p.userId, (itemsHeld.get(p.userId) ?? 0) + 1);
      }
      for (const [user, n] of itemsHeld) users.push(user, String(n));
      const codeFields: string[] = [];
      const owners: string[] = [];
      for (const c of codes) {
        const field = `${c.userId}|${ids.parseItemId(c.itemId).index}`;
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
      const expireAt = ids.windowOfSale(saleId)!.endsAt + config.SALE_DURATION * 1000;
      const writes: Promise<unknown>[] = [];
      for (const [key, fields] of hashes) {
        writes.push(redis.command('hset', ['HSET', key, '|', '']));
        for (let i = 0; i < fields.length; i += HSET_CHUNK * 2) {
          writes.push(redis.command('hset', ['HSET', key, ...fields.slice(i, i + HSET_CHUNK * 2)]));
        }
        writes.push(redis.command('pexpireat', ['PEXPIREAT', key, String(expireAt)]));
      }
      await Promise.all(writes);
      await redis.markLoaded(keys, expireAt);
      log.info({ sale: saleId, sold: purchases.length, codes: codes.length }, 'sale state loaded into Redis');
    } finally {
      await release().catch(() => {});
    }
  }

  async function waitUntilLoaded(saleId: string): Promise<void> {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    const deadline = Date.now() + config.DEPENDENCY_TIMEOUT_MS * 2;
    while (Date.now() < deadline) {
      if (await redis.loaded(keys)) return;
      await new Promise((r) => setTimeout(r, READY_POLL_MS));
    }
    throw unavailable('sale state (being rebuilt)');
  }

  /** How often tick() runs (app.ts schedules it). */
  const tickIntervalMs = Math.min(1000, (config.SALE_DURATION * 1000) / 4);

  /**
   * min(60 s, half a window): how far ahead of its start the next sale is
   * prepared, and how long after its end a sale's Redis state is kept (the
   * purchases that began before the end have long finished by then).
   */
  const marginMs = Math.min(60_000, (config.SALE_DURATION * 1000) / 2);
  /** The last sale this instance retired: each instance unlinks each sale once (a repeat would find nothing). */
  let retired: string | undefined;

  /**
   * Unlinks the Redis state of the sale before the current one, once it has
   * been over for marginMs. Nothing reads it after its end: its codes
   * buy nothing and a replay reads PostgreSQL. UNLINK frees its hashes on
   * Redis's background thread; left to expire, they would be freed on its
   * main thread (unless lazyfree-lazy-expire is on) as the sale after next
   * starts, stalling that stampede (docs/operations.md).
   */
  async function retirePrevious(current: SaleWindow, now: number): Promise<void> {
    if (now - current.startsAt < marginMs) return;
    const previous = ids.windowContaining(current.startsAt - 1);
    if (retired === previous.id) return;
    const unlinked = await redis.command<number>('unlink', [
      'UNLINK',
      ...saleStateKeys(config.REDIS_PREFIX, previous.id),
    ]);
    retired = previous.id;
    if (unlinked > 0) log.info({ sale: previous.id, keys: unlinked }, 'Redis state of the ended sale unlinked');
  }

  /**
   * Creates the current sale, and the next one once its start is near: at
   * least min(60 s, half a window) ahead, whatever the phase of the ticks.
   * Each is (re)loaded into Redis when Redis does not hold it as loaded. The
   * sale before is retired from Redis.
   */
  async function tick(): Promise<void> {
    const now = clock.now();
    const current = ids.windowContaining(now);
    const lead = marginMs + tickIntervalMs;
    const upcoming = current.endsAt - now <= lead ? [current, ids.windowContaining(current.endsAt)] : [current];
    for (const sale of upcoming) {
      await ensure(sale);
      if (!(await redis.loaded(saleKeys(config.REDIS_PREFIX, sale.id)))) await rebuild(sale.id);
    }
    await retirePrevious(current, now);
  }

  /** A sale as the API shows it, or undefined if it does not exist. */
  async function info(saleId: string) {
    const sale = await data.sales.find(saleId);
    return (
      sale && {
        id: saleId,
        started_at: sale.startsAt.toISOString(),
        ends_at: sale.endsAt.toISOString(),
        total_items: sale.totalItems,
        items_sold: sale.itemsSold,
        items_remaining: sale.totalItems - sale.itemsSold,
      }
    );
  }

  // The active sale's gauges, read once per scrape for both.
  metrics.produce(['sale_items_total', 'sale_items_sold'], async ([total, sold]) => {
    const sale = await data.sales.find(ids.windowContaining(clock.now()).id).catch(() => undefined);
    total.set(sale?.totalItems ?? 0);
    sold.set(sale?.itemsSold ?? 0);
  });
  metrics.produce(['sale_items_configured'], ([g]) => g.set(config.SALE_ITEMS));

  return { active, current, rebuild, tick, tickIntervalMs, info, items: data.sales.listItems };
}

export type Sales = ReturnType<typeof createSales>;
