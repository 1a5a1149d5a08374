import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { json, testEnv, type TestEnv } from './helpers.js';

const DURATION_S = 3600;
const ITEMS = 150;

describe('sale rotation across the hour, two instances sharing one clock', () => {
  let env: TestEnv;
  let apps: App[];
  const clock = offsetClock();

  before(async () => {
    env = await testEnv({ SALE_ITEMS: String(ITEMS), SALE_DURATION: String(DURATION_S) });
    // Two seconds before the next hour: the next sale must already exist.
    const nextHour = Math.ceil(Date.now() / 3_600_000) * 3_600_000;
    clock.set(nextHour - 2000);
    apps = await Promise.all([env.app({ clock }), env.app({ clock })]);
  });
  after(() => env.close());

  const post = (app: App, url: string) => app.inject({ method: 'POST', url });

  it('creates the next sale ahead of its start, once, with all its items', async () => {
    const current = apps[0]!.deps.ids.windowAt(clock.now());
    const next = apps[0]!.deps.ids.windowAt(current.endsAt);
    const { rows } = await env.pg.query<{ id: string; items: string }>(
      `SELECT s.id, (SELECT count(*) FROM items i WHERE i.sale_id = s.id) AS items FROM sales s ORDER BY s.id`,
    );
    assert.deepEqual(rows, [
      { id: current.id, items: String(ITEMS) },
      { id: next.id, items: String(ITEMS) },
    ]);
  });

  it('creates the next sale a full minute ahead even when the minute starts just after a tick', async () => {
    // 60.5 s before the next hour, one tick happens; the next would come 59.5 s before.
    const early = offsetClock();
    const nextStart = Math.ceil(Date.now() / 3_600_000) * 3_600_000 + 3_600_000;
    early.set(nextStart - 60_500);
    const app = await env.app({ clock: early });
    const next = app.deps.ids.windowAt(nextStart).id;
    const { rows } = await env.pg.query('SELECT id FROM sales WHERE id = $1', [next]);
    assert.equal(rows.length, 1, `the sale starting at ${new Date(nextStart).toISOString()} is not there yet`);
  });

  it('with requests in flight across the boundary, a code of the ended sale gets 410 SALE_ENDED and a bought one still replays', async () => {
    const [a, b] = apps as [App, App];
    const old = json<{ id: string }>(await a.inject('/sales/active')).id;
    const bought = json<{ code: string }>(await post(a, `/checkout?user_id=early&id=${old}-00001`)).code;
    assert.equal((await post(b, `/purchase?code=${bought}`)).statusCode, 200);
    const unused = json<{ code: string }>(await post(b, `/checkout?user_id=late&id=${old}-00002`)).code;

    // Fire checkouts on both instances while the clock crosses the hour.
    const inFlight = Array.from({ length: 40 }, (_, i) =>
      post(apps[i % 2]!, `/checkout?user_id=crowd-${i}&id=${old}-${String(10 + i).padStart(5, '0')}`),
    );
    clock.advance(2500);
    const answers = await Promise.all(inFlight);
    for (const res of answers) assert.ok([200, 404].includes(res.statusCode), `checkout answered ${res.statusCode}`);

    const ended = await post(a, `/purchase?code=${unused}`);
    assert.equal(ended.statusCode, 410);
    assert.equal(json<{ error: { code: string } }>(ended).error.code, 'SALE_ENDED');
    const replay = await post(b, `/purchase?code=${bought}`);
    assert.equal(replay.statusCode, 200);

    const fresh = json<{ id: string; total_items: number; items_remaining: number }>(await b.inject('/sales/active'));
    assert.notEqual(fresh.id, old);
    assert.equal(fresh.total_items, ITEMS);
    assert.equal(fresh.items_remaining, ITEMS);
    const old404 = await post(a, `/checkout?user_id=late&id=${old}-00003`);
    assert.equal(json<{ error: { code: string } }>(old404).error.code, 'ITEM_NOT_FOUND');
    const sells = await post(a, `/checkout?user_id=late&id=${fresh.id}-00003`);
    assert.equal(sells.statusCode, 200);
    assert.equal((await post(b, `/purchase?code=${json<{ code: string }>(sells).code}`)).statusCode, 200);
  });
});

describe('sales of a few seconds on the real clock', () => {
  let env: TestEnv;
  before(async () => {
    env = await testEnv({ SALE_ITEMS: '50', SALE_DURATION: '2' });
  });
  after(() => env.close());

  it('every instance derives the same sale id, and each window is created exactly once', async () => {
    const apps = await Promise.all([env.app(), env.app(), env.app()]);
    const ids = await Promise.all(apps.map(async (a) => json<{ id: string }>(await a.inject('/sales/active')).id));
    assert.equal(new Set(ids).size <= 2, true, 'instances disagree beyond one boundary'); // a boundary may fall between calls
    await new Promise((r) => setTimeout(r, 2500));
    const { rows } = await env.pg.query<{ id: string; n: string }>(
      'SELECT s.id, (SELECT count(*) FROM items i WHERE i.sale_id = s.id) AS n FROM sales s ORDER BY id',
    );
    assert.ok(rows.length >= 2, 'the next sale was not created');
    for (const r of rows) assert.equal(r.n, '50');
    const windowed = rows.map((r) => apps[0]!.deps.ids.windowOf(r.id));
    for (const w of windowed) assert.ok(w, 'a sale id that is not a window');
  });
});
