/**
 * Compares the active sale's Redis state with PostgreSQL's and repairs drift:
 * purchases PostgreSQL has but Redis lacks are written back (with their
 * user's slots), and reservations Redis holds that PostgreSQL never confirmed
 * (their request died in between) are given back once their lock is gone, so
 * no item stays unsellable. Runs on one instance at a time (a lock), every
 * RECONCILE_INTERVAL_MS; the drift it found is exported as
 * sale_reconcile_drift_items{kind}.
 */
import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import { PURCHASE_LOCK_TTL_MS } from '../redis/lock.js';

/** A reservation younger than this may still be on its way to PostgreSQL. */
const RESERVATION_GRACE_MS = PURCHASE_LOCK_TTL_MS;

export function createReconciler(deps: Infra) {
  const { config, db, redis, locks, ids, clock, metrics, log } = deps;

  async function reconcile(saleId: string) {
    const keys = saleKeys(config.REDIS_PREFIX, saleId);
    // Redis first: a purchase confirmed after this read is not mistaken for leaked.
    const [ready, soldFlat] = await Promise.all([
      redis.command<number>('exists', ['EXISTS', keys.ready]),
      redis.command<string[]>('hgetall', ['HGETALL', keys.sold]),
    ]);
    if (ready === 0) return { missing: 0, leaked: 0 }; // not loaded yet: a rebuild will do it all
    const { rows } = await db.query<{ item_id: string; user_id: string; slot: number; code: string; at: string }>(
      'select',
      'purchases',
      `SELECT item_id, user_id, slot, code, (extract(epoch FROM purchased_at) * 1000)::bigint AS at
       FROM purchases WHERE sale_id = $1`,
      [saleId],
    );
    const inRedis = new Map<string, string>();
    for (let i = 0; i < soldFlat.length; i += 2) if (soldFlat[i] !== '|') inRedis.set(soldFlat[i]!, soldFlat[i + 1]!);
    const indexOf = (r: (typeof rows)[number]) => String(ids.parseItemId(r.item_id).index);
    const inPg = new Map(rows.map((r) => [indexOf(r), r]));

    // A purchase reserved in Redis after the first read can be committed
    // before PostgreSQL's read: ask Redis again about what looks missing.
    const heldBy = (value: string | null | undefined, code: string) => value?.split('|')[0] === code;
    const suspects = rows.filter((r) => !heldBy(inRedis.get(indexOf(r)), r.code));
    const again = suspects.length
      ? await redis.command<(string | null)[]>('hmget', ['HMGET', keys.sold, ...suspects.map(indexOf)])
      : [];
    const missing = suspects.filter((r, i) => !heldBy(again[i], r.code));
    const now = clock.now();
    const leaked = [...inRedis].filter(
      ([index, value]) => !inPg.has(index) && now - Number(value.split('|')[2]) > RESERVATION_GRACE_MS,
    );

    const byUser = new Map<string, typeof rows>();
    for (const r of rows) byUser.set(r.user_id, [...(byUser.get(r.user_id) ?? []), r]);
    for (const r of missing) {
      const held = byUser.get(r.user_id) ?? [];
      await redis.script(
        'sync',
        [keys.sold, keys.users],
        [
          ids.parseItemId(r.item_id).index,
          `${r.code}|${r.slot}|${r.at}`,
          r.user_id,
          config.USER_LIMIT,
          ...held.flatMap((h) => [h.slot, ids.parseItemId(h.item_id).index]),
        ],
      );
    }
    let reclaimed = 0;
    for (const [index, value] of leaked) {
      const code = value.split('|')[0]!;
      reclaimed += await redis.script<number>(
        'reclaim',
        [keys.sold, keys.users, keys.owners, keys.purchaseLock(code)],
        [index, value],
      );
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
    const saleId = ids.windowAt(clock.now()).id;
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
      log.warn({ err: (err as Error).message }, 'reconciliation failed');
    }
  }

  return { reconcile, run };
}
