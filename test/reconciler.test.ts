import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { saleKeys } from '../src/redis/keys.js';
import { testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

describe('the reconciler (Redis against PostgreSQL for the active sale)', () => {
  let env: TestEnv;
  let app: App;
  const post = async (url: string) => app.inject({ method: 'POST', url });
  const checkout = async (user: string, itemId: string) =>
    (await post(`/checkout?user_id=${user}&id=${itemId}`)).json<{ code: string }>().code;

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '400', RATE_LIMIT_IP_PER_SEC: '0' });
    app = await env.app();
  });
  after(() => env.close());

  it('reconcile() gives back a reservation PostgreSQL never confirmed, and writes back a purchase Redis lost', async () => {
    const { ids, redis, config, reconciler, clock } = app.deps;
    const sale = ids.windowContaining(clock.now()).id;
    const keys = saleKeys(config.REDIS_PREFIX, sale);
    // A confirmed purchase, then Redis loses it.
    const bought = await checkout('a', ids.itemId(sale, 1));
    assert.equal((await post(`/purchase?code=${bought}`)).statusCode, 200);
    await redis.command('hdel', ['HDEL', keys.sold, '1']);
    // A reservation whose request died before PostgreSQL (old enough, no lock).
    const orphan = await checkout('b', ids.itemId(sale, 2));
    await redis.command('hset', ['HSET', keys.sold, '2', `${orphan}|1|${clock.now() - 10_000}`]);
    await redis.command('hset', ['HSET', keys.users, 'b', '1', 'b|1', '2']);

    assert.deepEqual(await reconciler.reconcile(sale), { missing: 1, leaked: 1 });
    const sold = await redis.command<string[]>('hgetall', ['HGETALL', keys.sold]);
    assert.deepEqual(sold.filter((_, i) => i % 2 === 0).sort(), ['1', '|']);
    assert.deepEqual(await reconciler.reconcile(sale), { missing: 0, leaked: 0 });
    // The orphaned item sells again.
    assert.equal((await post(`/purchase?code=${orphan}`)).statusCode, 200);
  });

  it('reconcile(), with a purchase confirmed between its Redis and PostgreSQL reads, takes it for no drift (no false alarm in a stampede)', async () => {
    // The reconciling instance has one PostgreSQL connection, held by a query
    // blocked on an advisory lock the test owns: its pass reads Redis, then
    // waits for PostgreSQL, and meanwhile another instance sells an item
    // (Redis, then PostgreSQL). Releasing the lock lets the pass go on.
    const reconciling = await env.app({
      env: { DB_POOL_SIZE: '1', DEPENDENCY_TIMEOUT_MS: '5000', RECONCILE_INTERVAL_MS: '3600000' },
    });
    const { ids, reconciler, clock, db, metrics } = reconciling.deps;
    const sale = ids.windowContaining(clock.now()).id;
    const code = await checkout('late', ids.itemId(sale, 300));
    const gate = await env.pg.connect();
    try {
      await gate.query('BEGIN');
      await gate.query('SELECT pg_advisory_xact_lock(4242)');
      const hold = db.query('select', 'none', 'SELECT pg_advisory_xact_lock(4242)');
      await waitFor('the held connection to block on the lock', async () => {
        const { rows } = await env.pg.query(
          `SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'SELECT pg_advisory_xact_lock(4242)'`,
        );
        return rows.length > 0 ? true : undefined;
      });
      const pass = reconciler.reconcile(sale);
      await waitFor('the pass to have read Redis and wait for PostgreSQL', async () => {
        const waiting = await metrics.registry.getSingleMetric('db_connections_waiting')!.get();
        return waiting.values[0]!.value >= 1 ? true : undefined;
      });
      assert.equal((await post(`/purchase?code=${code}`)).statusCode, 200);
      const { rows } = await env.pg.query('SELECT 1 FROM purchases WHERE code = $1', [code]);
      assert.equal(rows.length, 1, 'the purchase must be in PostgreSQL before the pass reads it');

      await gate.query('COMMIT');
      assert.deepEqual(await pass, { missing: 0, leaked: 0 });
      await hold;
    } finally {
      await gate.query('ROLLBACK').catch(() => {});
      gate.release();
    }
  });

  it('run() exports the drift of its last pass and when that pass completed, on the instance that ran it', async () => {
    const { ids, redis, config, reconciler, clock, metrics } = app.deps;
    const sale = ids.windowContaining(clock.now()).id;
    const keys = saleKeys(config.REDIS_PREFIX, sale);
    const orphan = await checkout('c', ids.itemId(sale, 3));
    await redis.command('hset', ['HSET', keys.sold, '3', `${orphan}|1|${clock.now() - 10_000}`]);
    await redis.command('del', ['DEL', keys.reconcileLock]); // this round is ours, whatever the timers did
    const before = clock.now() / 1000;

    await reconciler.run();
    const value = async (name: string, labels: Record<string, string> = {}) =>
      (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) =>
        Object.entries(labels).every(([k, l]) => v.labels[k] === l),
      )?.value;
    assert.equal(await value('sale_reconcile_drift_items', { kind: 'unconfirmed_reservation' }), 1);
    assert.equal(await value('sale_reconcile_drift_items', { kind: 'missing_in_redis' }), 0);
    assert.ok((await value('sale_reconcile_runs_total', { outcome: 'ok' }))! >= 1);
    const ranAt = (await value('sale_reconcile_last_run_timestamp_seconds'))!;
    assert.ok(ranAt >= before && ranAt <= clock.now() / 1000, `last run at ${ranAt}`);
  });
});
