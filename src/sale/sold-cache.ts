/**
 * Items PostgreSQL confirmed sold in the active sale, in process memory, so a
 * checkout of one needs no Redis round trip (issue 16: after the first
 * seconds of a stampede ~88% of requests are checkouts of sold items), and a
 * purchase repeated with a code that bought (a double click, a retry) replays
 * without Redis or PostgreSQL.
 *
 * Only PostgreSQL-confirmed facts go in, and such a fact never stops being
 * true: a purchase row is never deleted. They come from the purchases this
 * instance committed, from the other instances (each publishes the purchases
 * it committed on a Redis pub/sub channel, after the commit), and from
 * PostgreSQL itself when an instance first sees a sale (the purchases made
 * before it started, or before it subscribed). A missed message (Redis down,
 * a reconnect) only means the checkout takes the slow path through Redis,
 * which knows the item is sold; nothing is ever answered from a guess.
 *
 * Only the active sale is held: a checkout names the sale it looks up, and a
 * new sale replaces the old one (10,000 small entries at most).
 */
import type { Infra } from '../infra.js';
import type { Announcement } from '../redis/scripts.js';

/** Who bought an item, with which code, and when (purchased_at, epoch ms). */
export interface SoldItem {
  userId: string;
  code: string;
  at: number;
}

/** A confirmed purchase, as a replay answers it. */
export type Bought = SoldItem & { saleId: string; itemId: string };

export type SoldCacheDeps = Pick<Infra, 'config' | 'data' | 'redis' | 'ids' | 'log'>;

export function createSoldCache(deps: SoldCacheDeps) {
  const { config, data, redis, ids, log } = deps;
  // One channel per deployment (REDIS_PREFIX), like its keys.
  const channel = `${config.REDIS_PREFIX}:sold`;
  let saleId: string | undefined;
  let items = new Map<number, SoldItem>();
  let byCode = new Map<string, number>(); // code → index in items

  // Purchases waiting for another purchase of their code to land (whenBought).
  const waiters = new Map<string, Set<() => void>>();

  function add(sale: string, index: number, item: SoldItem) {
    if (sale !== saleId) return;
    items.set(index, item);
    byCode.set(item.code, index);
    waiters.get(item.code)?.forEach((wake) => wake());
  }

  /** A sale seen for the first time: start from what PostgreSQL already confirmed. */
  function switchTo(sale: string) {
    saleId = sale;
    items = new Map();
    byCode = new Map();
    data.purchases.listBySale(sale).then(
      (rows) => rows.forEach((p) => add(p.saleId, ids.parseItemId(p.itemId).index, p)),
      (err: unknown) => log.debug({ err }, 'sold items not loaded; checkouts take the Redis path'),
    );
  }

  function remember(p: Bought): Announcement {
    const index = ids.parseItemId(p.itemId).index;
    add(p.saleId, index, p);
    return { channel, message: `${p.saleId}|${index}|${p.userId}|${p.code}|${p.at}` };
  }

  /** The purchase a code of the active sale made, if PostgreSQL is known to have confirmed it. */
  function purchaseOf(sale: string, code: string): Bought | undefined {
    if (sale !== saleId) switchTo(sale);
    const index = byCode.get(code);
    const item = index === undefined ? undefined : items.get(index);
    return item && { ...item, saleId: sale, itemId: ids.itemId(sale, index!) };
  }

  // A subscribed connection can do nothing else, hence its own; node-redis
  // subscribes again by itself after a reconnect.
  const subscriber = redis.client.duplicate();
  subscriber.on('error', () => {}); // the main connection already reports Redis outages
  const onMessage = (message: string) => {
    // "<sale id>|<index>|<user>|<code>|<purchased_at ms>": none of these can contain '|'.
    const [sale, index, userId, code, at] = message.split('|');
    if (sale && index && userId && code && at) add(sale, Number(index), { userId, code, at: Number(at) });
  };

  return {
    /** Who bought this item of the active sale, if PostgreSQL is known to have confirmed it. */
    lookup(sale: string, index: number): SoldItem | undefined {
      if (sale !== saleId) switchTo(sale);
      return items.get(index);
    },
    purchaseOf,
    /**
     * Resolves when the purchase of this code is known here (committed by this
     * instance, or announced by another), or after `ms` with undefined: a
     * purchase waiting for another one of its code answers at its commit.
     */
    whenBought(sale: string, code: string, ms: number): Promise<Bought | undefined> {
      return new Promise((resolve) => {
        const waiting = waiters.get(code) ?? new Set();
        waiters.set(code, waiting);
        const done = () => {
          clearTimeout(timer);
          waiting.delete(done);
          if (waiting.size === 0 && waiters.get(code) === waiting) waiters.delete(code);
          resolve(purchaseOf(sale, code));
        };
        const timer = setTimeout(done, ms);
        waiting.add(done);
      });
    },
    /**
     * A purchase PostgreSQL just committed, remembered here; returns the
     * announcement that tells the other instances, for the caller to publish
     * in a round trip it makes anyway (the unlock of the purchase's lock).
     */
    remember,
    /** A purchase PostgreSQL confirmed (committed): remembered here and told to every instance. */
    confirmed(p: Bought) {
      const { message } = remember(p);
      // Not awaited: the answer does not wait for it, and a lost message costs only the slow path.
      redis.command('publish', ['PUBLISH', channel, message]).catch(() => {});
    },
    /** Subscribes; connecting retries by itself while Redis is down (await it only if Redis is up). */
    start(): Promise<void> {
      const subscribed = subscriber.connect().then(() => subscriber.subscribe(channel, onMessage));
      subscribed.catch(() => {}); // closed before it connected
      return subscribed;
    },
    async close() {
      if (subscriber.isReady) await subscriber.close();
      else if (subscriber.isOpen) subscriber.destroy();
    },
  };
}

export type SoldCache = ReturnType<typeof createSoldCache>;
