/**
 * The operator API: its own credentials, the views of a sale, and the kill
 * switch as every instance sees it (PostgreSQL, polled), audited.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';

import type { App } from '../src/app.js';
import { auditSale, type Confirmed } from './audit.js';
import { deleteKeys, itemId, json, testEnv, type TestEnv } from './helpers.js';
import { bearer, identityProvider, jwtEnv, newKey, sign, type IdentityProvider, type Key } from './idp.js';

const TOKEN = 'operator-token-0123456789-abcdefghij';
const HASHED = `sha256:${createHash('sha256').update(TOKEN).digest('hex')}`;
const ADMIN = bearer(TOKEN);
type Res = Awaited<ReturnType<App['inject']>>;
const errorCode = (res: Res) => json<{ error: { code: string } }>(res).error.code;

/** Waits until `check` holds (polling, no fixed sleep); returns the milliseconds it took. */
async function until(check: () => Promise<boolean>, withinMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    assert.ok(Date.now() - start < withinMs, `${what}: not within ${withinMs} ms`);
    await new Promise((resolve) => setImmediate(resolve));
  }
  return Date.now() - start;
}

describe('/admin/: who may call it', () => {
  let env: TestEnv;
  let idp: IdentityProvider;
  let key: Key;
  let app: App;
  before(async () => {
    key = await newKey('k1');
    idp = await identityProvider([key]);
    // The configuration holds the token's hash, never the token.
    env = await testEnv({ ...jwtEnv(idp), ADMIN_TOKENS: HASHED });
    app = await env.app();
  });
  after(async () => {
    await env.close();
    await idp.close();
  });

  it('no token: 401 UNAUTHENTICATED with a Bearer challenge; a wrong token: 401 with invalid_token', async () => {
    const none = await app.inject('/admin/sales');
    assert.equal(none.statusCode, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer realm="flashsale-admin"');
    for (const token of [`${TOKEN}x`, TOKEN.slice(1), 'a.b.c', 'x']) {
      const wrong = await app.inject({ url: '/admin/sales', headers: bearer(token) });
      assert.equal(wrong.statusCode, 401, token);
      assert.match(String(wrong.headers['www-authenticate']), /error="invalid_token"/);
    }
  });

  it("a buyer's valid token: 403 FORBIDDEN; one with the operator role: admitted as its sub", async () => {
    const buyer = await app.inject({ url: '/admin/sales', headers: bearer(await sign(key, { sub: 'alice' })) });
    assert.equal(buyer.statusCode, 403);
    assert.equal(errorCode(buyer), 'FORBIDDEN');
    const scoped = await sign(key, { sub: 'ops-1', scope: 'read flashsale:admin' });
    assert.equal((await app.inject({ url: '/admin/sales', headers: bearer(scoped) })).statusCode, 200);
    const roles = await sign(key, { sub: 'ops-2', roles: ['flashsale:admin'] });
    assert.equal((await app.inject({ url: '/admin/sales', headers: bearer(roles) })).statusCode, 200);
    const { rows } = await env.pg.query<{ actor: string }>("SELECT actor FROM admin_audit WHERE action = 'list'");
    assert.deepEqual(
      rows.map((r) => r.actor),
      ['sub:ops-1', 'sub:ops-2'],
    );
  });

  it('the hashed admin token is admitted and named by its hash prefix; refusals are counted', async () => {
    assert.equal((await app.inject({ url: '/admin/sales', headers: ADMIN })).statusCode, 200);
    const { rows } = await env.pg.query<{ actor: string }>('SELECT actor FROM admin_audit ORDER BY id DESC LIMIT 1');
    assert.equal(rows[0]!.actor, `token:${HASHED.slice(7, 15)}`);
    const counted = (await app.deps.metrics.adminRequests.get()).values;
    assert.ok(counted.some((v) => v.labels.result === 'unauthenticated' && v.value >= 5));
    assert.ok(counted.some((v) => v.labels.result === 'forbidden' && v.value >= 1));
  });
});

describe('/admin/: the kill switch across instances', () => {
  let env: TestEnv;
  let a: App;
  let b: App;
  let sale: string;
  let next = 0;
  const item = () => itemId(sale, next++);
  const post = (app: App, url: string, headers = {}) => app.inject({ method: 'POST', url, headers });
  const change = (app: App, action: string) => post(app, `/admin/sales/${sale}/${action}`, ADMIN);
  /** 503 paused, 410 ended, 200 open: a checkout of an item no test here buys. */
  const checkoutState = async (app: App) =>
    (await post(app, `/checkout?user_id=probe&id=${itemId(sale, 499)}`)).statusCode;
  const codeFor = async (app: App, user: string) =>
    json<{ code: string }>(await post(app, `/checkout?user_id=${user}&id=${item()}`)).code;

  before(async () => {
    env = await testEnv({ ADMIN_TOKENS: TOKEN, RATE_LIMIT_USER_PER_SEC: '0', SALE_ITEMS: '500' });
    a = await env.app();
    b = await env.app();
    sale = json<{ id: string }>(await a.inject('/sales/active')).id;
  });
  after(() => env.close());

  it('pause on one instance: the other answers 503 SALE_PAUSED within 1 s; a bought code still replays; resume reopens both', async () => {
    const bought = await codeFor(a, 'early');
    const receipt = await post(a, `/purchase?code=${bought}`);
    assert.equal(receipt.statusCode, 200);
    const unbought = await codeFor(a, 'late');

    assert.deepEqual(json(await change(a, 'pause')), { sale_id: sale, state: 'paused' });
    assert.equal(await checkoutState(a), 503, 'the instance that paused refuses at once');
    const seenIn = await until(async () => (await checkoutState(b)) === 503, 1000, 'instance b sees the pause');
    const paused = await post(b, `/checkout?user_id=u&id=${item()}`);
    assert.equal(errorCode(paused), 'SALE_PAUSED');
    assert.equal(paused.headers['retry-after'], '5');
    const replay = await post(b, `/purchase?code=${bought}`);
    assert.equal(replay.statusCode, 200);
    assert.equal(replay.body, receipt.body);
    const refused = await post(b, `/purchase?code=${unbought}`);
    assert.equal(refused.statusCode, 503);
    assert.equal(errorCode(refused), 'SALE_PAUSED');
    const { rows } = await env.pg.query("SELECT 1 FROM checkout_attempts WHERE outcome = 'SALE_PAUSED'");
    assert.ok(rows.length >= 2, 'a paused checkout is a validated attempt, recorded with its outcome');

    assert.deepEqual(json(await change(b, 'resume')), { sale_id: sale, state: 'open' });
    await until(async () => (await checkoutState(a)) !== 503, 1000, 'instance a sees the resume');
    assert.equal((await post(a, `/purchase?code=${unbought}`)).statusCode, 200);
    assert.ok(seenIn < 1000);
  });

  it('the pause holds through a Redis wipe and on an instance started afterwards (PostgreSQL is the truth)', async () => {
    await change(a, 'pause');
    await deleteKeys(`${env.env.REDIS_PREFIX}:*`);
    const c = await env.app();
    assert.equal(await checkoutState(c), 503);
    await change(c, 'resume');
    for (const app of [a, b, c]) await until(async () => (await checkoutState(app)) !== 503, 1000, 'resumed');
  });

  it('a pause while purchases are in flight loses nothing: every 200 is in PostgreSQL, every 503 buys after resume', async () => {
    const codes = await Promise.all(Array.from({ length: 40 }, (_, i) => codeFor(i % 2 ? a : b, `flight${i}`)));
    const answers = codes.map((code, i) =>
      post(i % 2 ? a : b, `/purchase?code=${code}`).then((res) => ({ code, res })),
    );
    await change(a, 'pause');
    const settled = await Promise.all(answers);
    for (const { res } of settled) assert.ok([200, 503].includes(res.statusCode), res.body);
    const confirmed: Confirmed[] = settled
      .filter(({ res }) => res.statusCode === 200)
      .map(({ code, res }) => ({ code, ...json<{ user_id: string; item_id: string }>(res) }))
      .map((p) => ({ code: p.code, userId: p.user_id, itemId: p.item_id }));
    await auditSale(env.pg, sale, env.config.USER_LIMIT, confirmed);
    await change(a, 'resume');
    await until(async () => (await checkoutState(b)) !== 503, 1000, 'resumed');
    for (const { code, res } of settled.filter(({ res }) => res.statusCode !== 200)) {
      assert.equal(errorCode(res), 'SALE_PAUSED');
      assert.equal((await post(b, `/purchase?code=${code}`)).statusCode, 200);
    }
    const { sold } = await auditSale(env.pg, sale, env.config.USER_LIMIT, []);
    assert.ok(sold >= codes.length);
  });

  it('end closes the sale for good: checkout 410 SALE_ENDED, unbought codes 410, bought ones replay; resume refused', async () => {
    const bought = await codeFor(b, 'before-end');
    assert.equal((await post(b, `/purchase?code=${bought}`)).statusCode, 200);
    const unbought = await codeFor(b, 'too-late');
    assert.deepEqual(json(await change(a, 'end')), { sale_id: sale, state: 'ended' });
    await until(async () => (await checkoutState(b)) === 410, 1000, 'instance b sees the end');
    assert.equal(errorCode(await post(b, `/checkout?user_id=x&id=${item()}`)), 'SALE_ENDED');
    assert.equal((await post(b, `/purchase?code=${unbought}`)).statusCode, 410);
    assert.equal((await post(b, `/purchase?code=${bought}`)).statusCode, 200);
    for (const action of ['resume', 'pause']) {
      const res = await change(b, action);
      assert.equal(res.statusCode, 410, action);
      assert.equal(errorCode(res), 'SALE_ENDED');
    }
    assert.equal((await change(b, 'end')).statusCode, 200, 'ending again is idempotent');
  });

  it('admin_audit has a row for each action: who, what, when, from where, with what result', async () => {
    const { rows } = await env.pg.query<{ actor: string; action: string; address: string; result: string; at: Date }>(
      `SELECT actor, action, address, result, at FROM admin_audit WHERE sale_id = $1 ORDER BY id`,
      [sale],
    );
    const actor = `token:${createHash('sha256').update(TOKEN).digest('hex').slice(0, 8)}`;
    assert.deepEqual(
      rows.map((r) => [r.action, r.result]),
      [
        ['pause', 'OK'],
        ['resume', 'OK'],
        ['pause', 'OK'],
        ['resume', 'OK'],
        ['pause', 'OK'],
        ['resume', 'OK'],
        ['end', 'OK'],
        ['resume', 'SALE_ENDED'],
        ['pause', 'SALE_ENDED'],
        ['end', 'OK'],
      ],
    );
    for (const r of rows) {
      assert.equal(r.actor, actor);
      assert.equal(r.address, '127.0.0.1');
      assert.ok(Date.now() - r.at.getTime() < 60_000);
    }
  });

  it('GET /admin/sales and /admin/sales/{id}: counts, state, a per-minute timeline and the top users', async () => {
    const list = json<{ sales: { id: string; state: string; items_sold: number; attempts: Record<string, number> }[] }>(
      await a.inject({ url: '/admin/sales', headers: ADMIN }),
    );
    const mine = list.sales.find((s) => s.id === sale)!;
    assert.equal(mine.state, 'ended');
    const { rows } = await env.pg.query<{ n: number }>('SELECT count(*)::int AS n FROM purchases');
    assert.equal(mine.items_sold, rows[0]!.n);
    assert.ok(mine.attempts.OK! > 0 && mine.attempts.SALE_PAUSED! > 0);
    const detail = json<{
      timeline: { attempts: number; purchases: number }[];
      top_users: { user_id: string; attempts: number }[];
    }>(await a.inject({ url: `/admin/sales/${sale}`, headers: ADMIN }));
    const totals = detail.timeline.reduce((t, m) => ({ a: t.a + m.attempts, p: t.p + m.purchases }), { a: 0, p: 0 });
    assert.equal(totals.p, rows[0]!.n);
    assert.equal(
      totals.a,
      Object.values(mine.attempts).reduce((x, y) => x + y, 0),
    );
    assert.equal(detail.top_users[0]!.user_id, 'probe', 'the user with the most attempts comes first');
    assert.equal((await a.inject({ url: '/admin/sales/2001010100', headers: ADMIN })).statusCode, 404);
  });

  it('GET /admin/sales/{id}/users/{user}: what one user did; SQL-looking and oversized ids are refused or harmless', async () => {
    const view = json<{ attempts: { outcome: string }[]; purchases: { code: string }[] }>(
      await a.inject({ url: `/admin/sales/${sale}/users/before-end`, headers: ADMIN }),
    );
    assert.deepEqual(
      view.attempts.map((x) => x.outcome),
      ['OK'],
    );
    assert.equal(view.purchases.length, 1);
    for (const hostile of ["x' OR '1'='1", "'; DROP TABLE purchases; --", 'a'.repeat(65), 'b'.repeat(5000), 'a|1']) {
      const res = await a.inject({ url: `/admin/sales/${sale}/users/${encodeURIComponent(hostile)}`, headers: ADMIN });
      assert.equal(res.statusCode, 400, hostile);
      assert.equal(errorCode(res), 'INVALID_REQUEST');
    }
    for (const harmless of ['--', '1--', 'x@y.z:1']) {
      const res = json<{ attempts: unknown[] }>(
        await a.inject({ url: `/admin/sales/${sale}/users/${harmless}`, headers: ADMIN }),
      );
      assert.deepEqual(res.attempts, [], harmless);
    }
    const { rows } = await env.pg.query(`SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'purchases'`);
    assert.deepEqual(rows, [{ n: 1 }]);
  });

  it('fuzzing: any sale id, user id or Authorization on /admin/ never gets a 5xx', async () => {
    const q = encodeURIComponent;
    const ok = (res: Res) => {
      assert.ok(res.statusCode < 500, `${res.statusCode} ${res.body}`);
      if (res.statusCode >= 400) assert.equal(typeof errorCode(res), 'string');
    };
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 80 }), fc.string({ unit: 'binary', maxLength: 80 }), async (x, y) => {
        ok(await a.inject({ url: `/admin/sales/${q(x)}/users/${q(y)}`, headers: ADMIN }));
        ok(await a.inject({ url: `/admin/sales/${q(x)}`, headers: ADMIN }));
        ok(await a.inject({ method: 'POST', url: `/admin/sales/${q(x)}/pause`, headers: ADMIN }));
        ok(await a.inject({ url: '/admin/sales', headers: { authorization: x } }));
        ok(await a.inject({ method: 'POST', url: `/checkout?id=${q(y)}`, headers: { authorization: `Bearer ${x}` } }));
      }),
      { numRuns: 100 },
    );
  });
});
