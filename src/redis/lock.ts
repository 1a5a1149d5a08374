/**
 * A distributed lock: SET NX PX with a random owner token, released only by
 * its owner through unlock-1.lua. Attempts, successes, failures and hold time
 * are measured per lock type. The purchase lock is taken inside purchase-7.lua
 * (to save a round trip) and reported here through `record`.
 */
import { children, type Metrics } from '../metrics/metrics.js';
import { randomHex } from '../random.js';
import type { Redis } from './redis.js';

export type LockType = 'purchase' | 'rebuild' | 'reconcile' | 'retention';

/** How long a purchase lock lives if its owner dies before releasing it. */
export const PURCHASE_LOCK_TTL_MS = 3000;
export type LockFailure = 'contended' | 'error';

/** 96 random bits: nobody else can release a lock it does not own. */
const newToken = () => randomHex(12);

export function createLocks(redis: Redis, metrics: Metrics) {
  const attempts = children(metrics.redisLockAttempts);
  const successes = children(metrics.redisLockSuccess);
  const failures = children(metrics.redisLockFailure);
  const record = {
    attempt(lockType: LockType) {
      attempts(lockType).inc();
    },
    acquired(lockType: LockType) {
      successes(lockType).inc();
      return metrics.redisLockDuration.labels(lockType).startTimer();
    },
    failed(lockType: LockType, reason: LockFailure) {
      failures(lockType, reason).inc();
    },
  };

  /** Takes the lock or returns undefined; the returned function releases it. */
  async function acquire(lockType: LockType, key: string, ttlMs: number) {
    const token = newToken();
    record.attempt(lockType);
    let ok: string | null;
    try {
      ok = await redis.command<string | null>('set', ['SET', key, token, 'NX', 'PX', String(ttlMs)]);
    } catch (err) {
      record.failed(lockType, 'error');
      throw err;
    }
    if (ok !== 'OK') {
      record.failed(lockType, 'contended');
      return undefined;
    }
    const held = record.acquired(lockType);
    return async () => {
      held();
      await redis.scripts.unlock(key, token);
    };
  }

  return { acquire, record, newToken };
}

export type Locks = ReturnType<typeof createLocks>;
