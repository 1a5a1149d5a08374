/**
 * Compares the active sale's Redis state with PostgreSQL's and repairs drift:
 * purchases PostgreSQL has but Redis lacks are written back (with their
 * user's slots), and reservations Redis holds that PostgreSQL never confirmed
 * (their request died in between) are given back once their lock is gone, so
 * no item stays unsellable. Runs on one instance at a time (a lock), every
 * RECONCILE_INTERVAL_MS; the drift it found is exported as
 * sale_reconcile_drift_items{kind}.
 */
import type { PurchaseRow } from '../db/purchases.js';
import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import { PURCHASE_LOCK_TTL_MS } from '../redis/lock.js';
import { parseSold } from '../redis/scripts.js';

/** A reservation younger than this may still be on its way to PostgreSQL. */
const RESERVATION_GRACE_MS = PURCHASE_LOCK_TTL_MS;

export function createReconciler(deps: Infra) {
  const { config, data, redis, locks, ids, clock, metrics, log } = deps;
  const indexOf = (itemId: string) => ids.parseItemId(itemId).index;

  async function reconcile(saleId: string) {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    // Redis first: a purchase confirmed after this read is not mistaken for leaked.
    const [loaded, soldFlat] = await Promise.all([
      redis.loaded(keys),
      redis.command<string[]>('hgetall', ['HGETALL', keys.sold]),
    ]);
    if (!loaded) return { missing: 0, leaked: 0 }; // a rebuild will do it all
    const purchases = await data.purchases.listBySale(saleId);
    const inRedis = new Map<string, string>();
    for (let i = 0; i < soldFlat.length; i += 2) if (soldFlat[i] !== '|') inRedis.set(soldFlat[i]!, soldFlat[i + 1]!);
    const inPg = new Set(purchases.map((p) => String(indexOf(p.itemId))));

    // A purchase reserved in Redis after the first read can be committed
    // before PostgreSQL's read: ask Redis again about what looks missing.
    const heldBy = (value: string | null | undefined, code: string) => value != null && parseSold(value).code === code;
    const suspects = purchases.filter((p) => !heldBy(inRedis.get(String(indexOf(p.itemId))), p.code));
    const again = suspects.length
      ? await redis.command<(string | null)[]>('hmget', [
          'HMGET',
          keys.sold,
          ...suspects.map((p) => String(indexOf(p.itemId))),
        ])
      : [];
    const missing = suspects.filter((p, i) => !heldBy(again[i], p.code));
    const now = clock.now();
    const leaked = [...inRedis].filter(
      ([index, value]) => !inPg.has(index) && now - parseSold(value).at > RESERVATION_GRACE_MS,
    );

    const byUser = new Map<string, PurchaseRow[]>();
    for (const p of purchases) byUser.set(p.userId, [...(byUser.get(p.userId) ?? []), p]);
    for (const p of missing) {
      await redis.scripts.sync({
        keys,
        index: indexOf(p.itemId),
        sold: p,
        userId: p.userId,
        userLimit: config.USER_LIMIT,
        holds: (byUser.get(p.userId) ?? []).map((h) => ({ slot: h.slot, index: indexOf(h.itemId) })),
      });
    }
    let reclaimed = 0;
    for (const [index, value] of leaked) {
      if (await redis.scripts.reclaim(keys, Number(index), value)) reclaimed++;
    }
    if (missing.length > 0 || reclaimed > 0) {
      log.warn({ sale: saleId, missing: missing.length, leaked: reclaimed }, 'reconciler repaired Redis drift');
    }
    return { missing: missing.length, leaked: reclaimed };
  }

  /**
   * One pass over the active sale per interval for the whole fleet: the lock
   * is left to expire after the interval instead of being released, so the
   * other instances skip this round rather than repeat it.
   */
  async function run(): Promise<void> {
    const saleId = ids.windowContaining(clock.now()).id;
    try {
      const taken = await locks.acquire(
        'reconcile',
        saleKeys(config.REDIS_PREFIX, saleId).reconcileLock,
        config.RECONCILE_INTERVAL_MS,
      );
      if (!taken) return;
      const drift = await reconcile(saleId);
      metrics.reconcileDrift.set({ kind: 'missing_in_redis' }, drift.missing);
      metrics.reconcileDrift.set({ kind: 'unconfirmed_reservation' }, drift.leaked);
      metrics.reconcileRuns.inc({ outcome: 'ok' });
      metrics.reconcileLastRun.set(clock.now() / 1000);
    } catch (err) {
      metrics.reconcileRuns.inc({ outcome: 'error' });
      log.warn({ err }, 'reconciliation failed');
    }
  }

  return { reconcile, run };
}
