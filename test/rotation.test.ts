import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { createClient } from 'redis';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { json, REDIS_URL, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

const DURATION_S = 3600;
const ITEMS = 150;

/** The id of a sale starting at this instant (YYYYMMDDHH[mm[ss]]), written out here rather than taken from src. */
const saleIdAt = (startMs: number, length: 10 | 12 | 14) =>
  new Date(startMs).toISOString().replace(/\D/g, '').slice(0, length);

describe('sale rotation across the hour, two instances sharing one clock', () => {
  let env: TestEnv;
  let apps: App[];
  const clock = offsetClock();
  const nextHour = Math.ceil(Date.now() / 3_600_000) * 3_600_000;

  before(async () => {
    env = await testEnv({ SALE_ITEMS: String(ITEMS), SALE_DURATION: String(DURATION_S) });
    // Thirty seconds before the next hour, well inside the 61 s lead: the next
    // sale must already exist, and start-up cannot drift across the hour.
    clock.set(nextHour - 30_000);
    apps = await Promise.all([env.app({ clock }), env.app({ clock })]);
  });
  after(() => env.close());

  const post = (app: App, url: string) => app.inject({ method: 'POST', url });

  it('the scheduler creates the next sale ahead of its start, once, with all its items', async () => {
    const { rows } = await env.pg.query<{ id: string; items: string }>(
      `SELECT s.id, (SELECT count(*) FROM items i WHERE i.sale_id = s.id) AS items FROM sales s ORDER BY s.id`,
    );
    assert.deepEqual(rows, [
      { id: saleIdAt(nextHour - 3_600_000, 10), items: String(ITEMS) },
      { id: saleIdAt(nextHour, 10), items: String(ITEMS) },
    ]);
  });

  it('the scheduler creates the next sale a full minute ahead even when the minute starts just after a tick', async () => {
    // 60.5 s before the next hour, one tick happens; the next would come 59.5 s before.
    const early = offsetClock();
    const nextStart = nextHour + 3_600_000;
    early.set(nextStart - 60_500);
    await env.app({ clock: early });
    const { rows } = await env.pg.query('SELECT id FROM sales WHERE id = $1', [saleIdAt(nextStart, 10)]);
    assert.equal(rows.length, 1, `the sale starting at ${new Date(nextStart).toISOString()} is not there yet`);
  });

  it('POST /checkout and POST /purchase with requests in flight across the hour: a code of the ended sale gets 410 SALE_ENDED, a bought one still replays, the new sale sells', async () => {
    const [a, b] = apps as [App, App];
    const old = json<{ id: string }>(await a.inject('/sales/active')).id;
    assert.equal(old, saleIdAt(nextHour - 3_600_000, 10));
    const bought = json<{ code: string }>(await post(a, `/checkout?user_id=early&id=${old}-00001`)).code;
    assert.equal((await post(b, `/purchase?code=${bought}`)).statusCode, 200);
    const unused = json<{ code: string }>(await post(b, `/checkout?user_id=late&id=${old}-00002`)).code;

    // Fire checkouts on both instances while the clock crosses the hour.
    const inFlight = Array.from({ length: 40 }, (_, i) =>
      post(apps[i % 2]!, `/checkout?user_id=crowd-${i}&id=${old}-${String(10 + i).padStart(5, '0')}`),
    );
    clock.set(nextHour + 500);
    const answers = await Promise.all(inFlight);
    for (const res of answers) assert.ok([200, 404].includes(res.statusCode), `checkout answered ${res.statusCode}`);

    const ended = await post(a, `/purchase?code=${unused}`);
    assert.equal(ended.statusCode, 410);
    assert.equal(json<{ error: { code: string } }>(ended).error.code, 'SALE_ENDED');
    const replay = await post(b, `/purchase?code=${bought}`);
    assert.equal(replay.statusCode, 200);

    const fresh = json<{ id: string; total_items: number; items_remaining: number }>(await b.inject('/sales/active'));
    assert.equal(fresh.id, saleIdAt(nextHour, 10));
    assert.equal(fresh.total_items, ITEMS);
    assert.equal(fresh.items_remaining, ITEMS);
    const old404 = await post(a, `/checkout?user_id=late&id=${old}-00003`);
    assert.equal(json<{ error: { code: string } }>(old404).error.code, 'ITEM_NOT_FOUND');
    const sells = await post(a, `/checkout?user_id=late&id=${fresh.id}-00003`);
    assert.equal(sells.statusCode, 200);
    assert.equal((await post(b, `/purchase?code=${json<{ code: string }>(sells).code}`)).statusCode, 200);
  });

  it("a minute after the hour the ended sale's Redis state is unlinked, the new sale's kept, and the old codes still answer from PostgreSQL", async () => {
    const [a] = apps as [App];
    const old = saleIdAt(nextHour - 3_600_000, 10);
    const fresh = saleIdAt(nextHour, 10);
    const redis = await createClient({ url: REDIS_URL }).connect();
    /** The names a sale's keys end with, but for its locks and rate-limit buckets (they expire within seconds). */
    const stateOf = async (sale: string) => {
      const tag = `${env.config.REDIS_PREFIX}:{${sale}}:`;
      const found: string[] = [];
      for await (const keys of redis.scanIterator({ MATCH: `${tag}*`, COUNT: 1000 })) found.push(...keys);
      return found
        .map((k) => k.slice(tag.length))
        .filter((name) => !/^(lock|rl):/.test(name))
        .sort();
    };
    try {
      const held = ['codes', 'owners', 'ready', 'sold', 'users'];
      assert.deepEqual(await stateOf(old), held);
      // Purchases that began before the hour may still be at work: the state stays for a minute.
      clock.set(nextHour + 58_000);
      await sleep(1500); // a tick of each instance
      assert.deepEqual(await stateOf(old), held);
      clock.set(nextHour + 61_000);
      await waitFor(
        'the ended sale unlinked',
        async () => ((await stateOf(old)).length === 0 ? true : undefined),
        5000,
      );
      assert.deepEqual(await stateOf(fresh), held);

      const { rows } = await env.pg.query<{ code: string; bought: boolean }>(
        `SELECT a.code, EXISTS (SELECT 1 FROM purchases p WHERE p.code = a.code) AS bought
           FROM checkout_attempts a WHERE a.sale_id = $1 AND a.code IS NOT NULL`,
        [old],
      );
      const bought = rows.find((r) => r.bought)!.code;
      const unused = rows.find((r) => !r.bought)!.code;
      assert.equal((await post(a, `/purchase?code=${bought}`)).statusCode, 200);
      const ended = await post(a, `/purchase?code=${unused}`);
      assert.equal(json<{ error: { code: string } }>(ended).error.code, 'SALE_ENDED');
    } finally {
      redis.destroy();
    }
  });
});

describe('GET /sales/active, three instances with sales of 90 seconds (ids carry seconds)', () => {
  const DURATION_MS = 90_000;
  let env: TestEnv;
  before(async () => {
    env = await testEnv({ SALE_ITEMS: '50', SALE_DURATION: String(DURATION_MS / 1000) });
  });
  after(() => env.close());

  const idAt = (startMs: number) => saleIdAt(startMs, 14);
  const creations = async (app: App) =>
    Number(/^sale_creation_duration_seconds_count (\d+)$/m.exec((await app.inject('/metrics')).body)?.[1]);

  it('every instance answers the same sale id on both sides of a boundary, and each window is created once with all its items', async () => {
    // 30 s before a boundary: inside the 46 s lead, so the next sale is prepared at start-up.
    const boundary = (Math.ceil(Date.now() / DURATION_MS) + 1) * DURATION_MS;
    const clock = offsetClock();
    clock.set(boundary - 30_000);
    const apps = await Promise.all([env.app({ clock }), env.app({ clock }), env.app({ clock })]);
    const activeIds = () =>
      Promise.all(apps.map(async (a) => json<{ id: string }>(await a.inject('/sales/active')).id));
    assert.deepEqual(await activeIds(), Array(3).fill(idAt(boundary - DURATION_MS)));

    clock.set(boundary + 60_000); // 30 s before the following boundary
    assert.deepEqual(await activeIds(), Array(3).fill(idAt(boundary)));

    const expected = [boundary - DURATION_MS, boundary, boundary + DURATION_MS].map((t) => ({ id: idAt(t), n: '50' }));
    const rows = await waitFor('the sale after the boundary to be prepared', async () => {
      const { rows } = await env.pg.query<{ id: string; n: string }>(
        'SELECT s.id, (SELECT count(*) FROM items i WHERE i.sale_id = s.id) AS n FROM sales s ORDER BY id',
      );
      return rows.length === expected.length ? rows : undefined;
    });
    assert.deepEqual(rows, expected);
    // Three instances raced to create each sale; exactly one created it.
    const created = await Promise.all(apps.map(creations));
    assert.equal(
      created.reduce((a, b) => a + b, 0),
      expected.length,
      `creations per instance: ${created.join(', ')}`,
    );
  });
});

describe('a checkout in a window no instance has prepared', () => {
  let env: TestEnv;
  after(() => env?.close());

  it('POST /checkout in a window the scheduler has not reached yet creates the sale, with its items, before it answers', async () => {
    env = await testEnv({ SALE_ITEMS: String(ITEMS), SALE_DURATION: String(DURATION_S) });
    const clock = offsetClock();
    const app = await env.app({ clock });
    // Five hours ahead, at once: the scheduler's next tick (within a second) has not run yet.
    const start = (Math.ceil(Date.now() / 3_600_000) + 5) * 3_600_000;
    clock.set(start + 1000);
    const sale = saleIdAt(start, 10);
    const res = await app.inject({ method: 'POST', url: `/checkout?user_id=first&id=${sale}-00001` });
    assert.equal(res.statusCode, 200, res.body);
    const { rows } = await env.pg.query<{ n: string }>('SELECT count(*) AS n FROM items WHERE sale_id = $1', [sale]);
    assert.equal(rows[0]!.n, String(ITEMS));
  });
});
