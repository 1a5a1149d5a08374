import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { json, testEnv, type TestEnv } from './helpers.js';

/** Parses the text exposition into series -> value. */
function parse(text: string): Map<string, number> {
  const series = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

const sum = (m: Map<string, number>, prefix: string) =>
  [...m].filter(([k]) => k === prefix || k.startsWith(`${prefix}{`)).reduce((a, [, v]) => a + v, 0);

describe('GET /metrics (the seed design, PRODUCT.md §4)', () => {
  let env: TestEnv;
  let app: App;
  let sale: string;
  const scrape = async () => parse((await app.inject('/metrics')).body);
  const post = (url: string) => app.inject({ method: 'POST', url });
  const item = (i: number) => `${sale}-${String(i).padStart(5, '0')}`;

  before(async () => {
    env = await testEnv({ USER_LIMIT: '1' });
    app = await env.app();
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  it('a scripted sequence of requests moves every counter by exactly the expected amount', async () => {
    const before = await scrape();
    const a = json<{ code: string }>(await post(`/checkout?user_id=m1&id=${item(1)}`)).code; // ok
    await post(`/checkout?user_id=m2&id=${item(1)}`); // ok: checkout reserves nothing
    await post(`/checkout?user_id=bad%20id&id=${item(1)}`); // INVALID_REQUEST
    await post(`/checkout?user_id=m3&id=${item(999)}`); // ITEM_NOT_FOUND
    await post(`/purchase?code=${a}`); // success
    await post(`/purchase?code=${a}`); // replay
    await post(`/checkout?user_id=m2&id=${item(1)}`); // ITEM_SOLD
    await post(`/checkout?user_id=m1&id=${item(2)}`); // USER_LIMIT_REACHED
    await post(`/purchase?code=${sale}-${'f'.repeat(32)}`); // CODE_NOT_FOUND
    await post('/purchase?code=nope'); // INVALID_REQUEST
    const after = await scrape();
    const delta = (name: string) => (after.get(name) ?? 0) - (before.get(name) ?? 0);

    assert.equal(delta('checkout_attempts_total'), 6);
    assert.equal(delta('checkout_success_total'), 2);
    for (const [reason, n] of Object.entries({
      INVALID_REQUEST: 1,
      ITEM_NOT_FOUND: 1,
      ITEM_SOLD: 1,
      USER_LIMIT_REACHED: 1,
    })) {
      assert.equal(delta(`checkout_failure_total{reason="${reason}"}`), n, reason);
    }
    assert.equal(delta('purchase_attempts_total'), 4);
    assert.equal(delta('purchase_success_total'), 1);
    assert.equal(delta('purchase_replays_total'), 1);
    assert.equal(delta('purchase_failure_total{reason="CODE_NOT_FOUND"}'), 1);
    assert.equal(delta('purchase_failure_total{reason="INVALID_REQUEST"}'), 1);
    // Attempts add up, in total as well.
    assert.equal(
      sum(after, 'checkout_attempts_total'),
      sum(after, 'checkout_success_total') + sum(after, 'checkout_failure_total'),
    );
    assert.equal(
      sum(after, 'purchase_attempts_total'),
      sum(after, 'purchase_success_total') +
        sum(after, 'purchase_replays_total') +
        sum(after, 'purchase_failure_total'),
    );
    assert.equal(delta('http_requests_total{handler="checkout",method="POST",status_code="200"}'), 2);
    assert.equal(delta('http_requests_total{handler="checkout",method="POST",status_code="409"}'), 2);
    assert.equal(delta('http_requests_total{handler="purchase",method="POST",status_code="200"}'), 2);
    assert.equal(delta('http_request_duration_seconds_count{handler="purchase",method="POST",status_code="404"}'), 1);
    // The purchase lock was taken for the success and the replay, and released.
    assert.equal(delta('redis_lock_attempts_total{lock_type="purchase"}'), 2);
    assert.equal(delta('redis_lock_success_total{lock_type="purchase"}'), 2);
    assert.equal(delta('redis_lock_duration_seconds_count{lock_type="purchase"}'), 2);
    assert.equal(delta('redis_command_duration_seconds_count{command="checkout"}'), 4); // the valid checkouts
    assert.ok(delta('db_query_duration_seconds_count{query_type="insert",table="purchases"}') >= 1);
  });

  it('histogram buckets are exactly the seed design', async () => {
    const buckets = async (name: string) => {
      const metric = (await app.deps.metrics.registry.getMetricsAsJSON()).find((m) => m.name === name)!;
      const les = (metric.values as { metricName?: string; labels: { le?: string | number } }[])
        .filter((v) => v.metricName === `${name}_bucket`)
        .map((v) => String(v.labels.le));
      return [...new Set(les)].filter((le) => le !== '+Inf').map(Number);
    };
    assert.deepEqual(
      await buckets('http_request_duration_seconds'),
      [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    assert.deepEqual(
      await buckets('db_query_duration_seconds'),
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    );
    assert.deepEqual(
      await buckets('redis_command_duration_seconds'),
      [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    );
    assert.deepEqual(
      await buckets('redis_lock_duration_seconds'),
      [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    );
  });

  it('1,000 random unknown paths and methods leave the number of series unchanged', async () => {
    const methods = ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'] as const;
    await app.inject({ method: 'GET', url: '/warm-up-unmatched' });
    for (const m of methods) await app.inject({ method: m, url: '/warm-up' });
    const before = (await scrape()).size;
    for (let i = 0; i < 1000; i++) {
      const path = `/${Math.random().toString(36).slice(2)}/${i}?q=${i}`;
      await app.inject({ method: methods[i % methods.length]!, url: path });
    }
    const after = await scrape();
    assert.equal(after.size, before);
    for (const key of after.keys()) assert.doesNotMatch(key, /handler="\/|[0-9a-z]{8,}\/\d/);
  });

  it('failure reasons come only from the fixed sets', async () => {
    const fixed = {
      checkout: [
        'INVALID_REQUEST',
        'ITEM_NOT_FOUND',
        'ITEM_SOLD',
        'USER_LIMIT_REACHED',
        'RATE_LIMITED',
        'PAYLOAD_TOO_LARGE',
        'UNAVAILABLE',
        'INTERNAL',
      ],
      purchase: [
        'INVALID_REQUEST',
        'CODE_NOT_FOUND',
        'ITEM_SOLD',
        'USER_LIMIT_REACHED',
        'SALE_ENDED',
        'RATE_LIMITED',
        'PAYLOAD_TOO_LARGE',
        'UNAVAILABLE',
        'INTERNAL',
      ],
    };
    const series = await scrape();
    for (const [endpoint, reasons] of Object.entries(fixed)) {
      const seen = [...series.keys()]
        .filter((k) => k.startsWith(`${endpoint}_failure_total{`))
        .map((k) => /reason="([^"]+)"/.exec(k)![1]);
      assert.deepEqual(seen.sort(), [...reasons].sort(), endpoint);
    }
  });

  it('sale and pool gauges agree with PostgreSQL and the pool', async () => {
    const series = await scrape();
    const { rows } = await env.pg.query<{ sold: number; total: number }>(
      'SELECT (SELECT count(*)::int FROM purchases WHERE sale_id = $1) AS sold, total_items AS total FROM sales WHERE id = $1',
      [sale],
    );
    assert.equal(series.get('sale_items_sold'), rows[0]!.sold);
    assert.equal(series.get('sale_items_total'), rows[0]!.total);
    assert.equal(series.get('sale_items_configured'), 200);
    assert.equal(series.get('db_connections_max'), env.config.DB_POOL_SIZE);
    const active = series.get('db_connections_active')!;
    const idle = series.get('db_connections_idle')!;
    assert.ok(active >= 0 && idle >= 0 && active + idle <= env.config.DB_POOL_SIZE);
    assert.equal(series.get('db_up'), 1);
    assert.equal(series.get('redis_up'), 1);
    for (const name of [
      'nodejs_eventloop_utilization_ratio',
      'nodejs_eventloop_lag_p99_seconds',
      'nodejs_active_handles_total',
      'nodejs_heap_size_limit_bytes',
      'process_resident_memory_bytes',
    ]) {
      assert.ok(series.has(name), name);
    }
  });

  it('with Redis pointed at a closed port, GET /health answers 503 with redis DOWN within 2 s, and /metrics keeps answering', async () => {
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const { port } = probe.address() as { port: number };
    await new Promise((r) => probe.close(r));
    const started = Date.now();
    const down = await env.app({ env: { REDIS_URL: `redis://127.0.0.1:${port}` } });
    const t0 = Date.now();
    const res = await down.inject('/health');
    assert.ok(Date.now() - t0 < 2000, 'health took too long');
    assert.equal(res.statusCode, 503);
    assert.equal(res.headers['retry-after'], '1');
    assert.deepEqual(json<{ services_status: object }>(res).services_status, {
      app: 'UP',
      database: 'UP',
      redis: 'DOWN',
    });
    const metrics = await down.inject('/metrics');
    assert.equal(metrics.statusCode, 200);
    assert.equal(parse(metrics.body).get('redis_up'), 0);
    const checkout = await down.inject({ method: 'POST', url: `/checkout?user_id=x&id=${item(5)}` });
    assert.equal(checkout.statusCode, 503);
    assert.equal(checkout.headers['retry-after'], '1');
    assert.ok(Date.now() - started < 5000);
  });
});

describe('metrics producers', () => {
  it('every state gauge the metrics module declares has a producer once the app is built', async () => {
    const env = await testEnv();
    try {
      const app = await env.app();
      assert.deepEqual(app.deps.metrics.unproduced(), []);
    } finally {
      await env.close();
    }
  });

  it('a declared gauge nobody produces fails the scrape instead of exporting 0', async () => {
    const metrics = createMetrics();
    await assert.rejects(metrics.registry.metrics(), /has no producer/);
  });
});
