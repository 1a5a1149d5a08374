import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { errorCodes, type ErrorCode } from '../src/errors.js';
import { itemId, json, rawRequest, testEnv, type TestEnv } from './helpers.js';
import { bearer, jwtEnv, newKey, sign } from './idp.js';
import { freePort, waitFor } from './process.js';

type Res = Awaited<ReturnType<App['inject']>>;
const errorOf = (res: { body: string }) =>
  json<{ error: { code: string; message: string; field?: string } }>(res).error;

/** Every error answer has the documented shape, JSON, and no stack trace. */
function assertError(
  res: Pick<Res, 'statusCode' | 'body'> & { headers?: Res['headers'] },
  status: number,
  code: string,
) {
  assert.equal(res.statusCode, status, res.body);
  if (res.headers) assert.match(String(res.headers['content-type']), /^application\/json/);
  const body = json<{ error: Record<string, unknown> }>(res);
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.doesNotMatch(res.body, /at .+\.js:\d+|stack/i);
}

describe('the HTTP API (PRODUCT.md §2)', () => {
  let env: TestEnv;
  let app: App;
  let sale: string;
  const clock = offsetClock();
  const post = (url: string) => app.inject({ method: 'POST', url });
  const item = (i: number) => itemId(sale, i);
  const checkout = (user: string, i: number) => post(`/checkout?user_id=${user}&id=${item(i)}`);
  const codeFor = async (user: string, i: number) => json<{ code: string }>(await checkout(user, i)).code;

  before(async () => {
    env = await testEnv({
      SALE_DURATION: '3600', // the tests move the clock an hour on to end the sale
      SALE_ITEMS: '200',
      USER_LIMIT: '2',
      RATE_LIMIT_USER_PER_SEC: '1',
      RATE_LIMIT_USER_BURST: '30',
    });
    app = await env.app({ clock });
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  describe('POST /checkout', () => {
    it('with user_id missing answers 400 INVALID_REQUEST naming user_id', async () => {
      const res = await post(`/checkout?id=${item(1)}`);
      assertError(res, 400, 'INVALID_REQUEST');
      assert.equal(errorOf(res).field, 'user_id');
      assert.match(errorOf(res).message, /user_id/);
    });

    it('with a user_id of forbidden characters or over 64 characters answers 400 naming user_id', async () => {
      for (const bad of ['a b', 'ä', '', 'x'.repeat(65), 'a{b}']) {
        const res = await post(`/checkout?user_id=${encodeURIComponent(bad)}&id=${item(1)}`);
        assertError(res, 400, 'INVALID_REQUEST');
        assert.equal(errorOf(res).field, 'user_id', bad);
      }
    });

    it('with an id that is not an item id answers 400 INVALID_REQUEST naming id', async () => {
      for (const bad of ['42', `${sale}-1`, `${sale}-000001x`, "1' OR '1'='1"]) {
        const res = await post(`/checkout?user_id=u&id=${encodeURIComponent(bad)}`);
        assertError(res, 400, 'INVALID_REQUEST');
        assert.equal(errorOf(res).field, 'id', bad);
      }
    });

    it('for an item of another sale or beyond SALE_ITEMS answers 404 ITEM_NOT_FOUND', async () => {
      assertError(await post(`/checkout?user_id=u&id=2001010100-00001`), 404, 'ITEM_NOT_FOUND');
      assertError(await post(`/checkout?user_id=u&id=${item(200)}`), 404, 'ITEM_NOT_FOUND');
    });

    it('for an item sold to someone else answers 409 ITEM_SOLD', async () => {
      assert.equal((await post(`/purchase?code=${await codeFor('seller', 3)}`)).statusCode, 200);
      const res = await checkout('other', 3);
      assertError(res, 409, 'ITEM_SOLD');
      assert.equal(errorOf(res).message, `item ${item(3)} is already sold`);
    });

    it('for a user who bought USER_LIMIT items answers 409 USER_LIMIT_REACHED', async () => {
      for (const i of [10, 11])
        assert.equal((await post(`/purchase?code=${await codeFor('full', i)}`)).statusCode, 200);
      assertError(await checkout('full', 12), 409, 'USER_LIMIT_REACHED');
    });

    it('after the user bought the item returns the same code, which replays the purchase', async () => {
      const code = await codeFor('rebuy', 20);
      const bought = await post(`/purchase?code=${code}`);
      assert.equal(await codeFor('rebuy', 20), code);
      const replay = await post(`/purchase?code=${code}`);
      assert.equal(replay.statusCode, 200);
      assert.equal(replay.body, bought.body);
    });

    it('for a user checking out faster than the bucket allows answers 429 RATE_LIMITED with Retry-After', async () => {
      let res: Res | undefined;
      for (let i = 0; i < 40 && res?.statusCode !== 429; i++) res = await checkout('hammer', 30 + (i % 5));
      assertError(res!, 429, 'RATE_LIMITED');
      assert.ok(Number(res!.headers['retry-after']) >= 1);
      const { rows } = await env.pg.query(
        `SELECT count(*)::int AS n FROM checkout_attempts WHERE outcome = 'RATE_LIMITED'`,
      );
      assert.ok(rows[0].n >= 1, 'a rate-limited attempt is still a validated attempt, recorded');
    });
  });

  describe('POST /purchase', () => {
    it('answers 200 with the item, and the purchase is in PostgreSQL before the answer', async () => {
      const code = await codeFor('buyer', 40);
      const res = await post(`/purchase?code=${code}`);
      assert.equal(res.statusCode, 200);
      const body = json(res);
      assert.deepEqual(Object.keys(body).sort(), ['item', 'item_id', 'purchased_at', 'sale_id', 'user_id']);
      assert.equal(body.item_id, item(40));
      assert.equal(body.user_id, 'buyer');
      assert.equal(body.sale_id, sale);
      const it = body.item as { id: string; name: string; image_url: string };
      assert.equal(it.id, item(40));
      assert.match(it.name, /^\w+ \w+ \w+$/);
      assert.equal(it.image_url, `/items/${item(40)}/image.svg`);
      assert.equal(new Date(body.purchased_at as string).toISOString(), body.purchased_at);
      const { rows } = await env.pg.query('SELECT user_id, code FROM purchases WHERE item_id = $1', [item(40)]);
      assert.deepEqual(rows, [{ user_id: 'buyer', code }]);
    });

    it('repeated with the same code answers 200 with the same body (idempotent replay), never a second sale', async () => {
      const code = await codeFor('replayer', 41);
      const first = await post(`/purchase?code=${code}`);
      const again = await Promise.all([post(`/purchase?code=${code}`), post(`/purchase?code=${code}`)]);
      for (const res of again) {
        assert.equal(res.statusCode, 200);
        assert.equal(res.body, first.body);
      }
      const { rows } = await env.pg.query(`SELECT count(*)::int AS n FROM purchases WHERE user_id = 'replayer'`);
      assert.deepEqual(rows, [{ n: 1 }]);
    });

    it('clicked 12 times at once answers 200 twelve times with one body: one sale, the rest wait and replay', async () => {
      // Within the code's burst (30): a request waiting for the code's lock must not spend more tokens.
      const code = await codeFor('clicker', 42);
      const answers = await Promise.all(Array.from({ length: 12 }, () => post(`/purchase?code=${code}`)));
      assert.deepEqual(
        answers.map((r) => r.statusCode),
        Array(12).fill(200),
        answers.map((r) => r.body).join('\n'),
      );
      assert.equal(new Set(answers.map((r) => r.body)).size, 1);
      const { rows } = await env.pg.query(`SELECT count(*)::int AS n FROM purchases WHERE user_id = 'clicker'`);
      assert.deepEqual(rows, [{ n: 1 }]);
    });

    it('with a code nobody issued answers 404 CODE_NOT_FOUND', async () => {
      assertError(await post(`/purchase?code=${sale}-${'0'.repeat(32)}`), 404, 'CODE_NOT_FOUND');
    });

    it('with a malformed code answers 400 INVALID_REQUEST naming code', async () => {
      for (const bad of ['', 'abc', `${sale}-XYZ`, `${sale}-${'0'.repeat(33)}`]) {
        const res = await post(`/purchase?code=${bad}`);
        assertError(res, 400, 'INVALID_REQUEST');
        assert.equal(errorOf(res).field, 'code');
      }
    });

    it('when the item was sold to someone else answers 409 ITEM_SOLD', async () => {
      const mine = await codeFor('slow', 50);
      const theirs = await codeFor('fast', 50);
      assert.equal((await post(`/purchase?code=${theirs}`)).statusCode, 200);
      assertError(await post(`/purchase?code=${mine}`), 409, 'ITEM_SOLD');
    });

    it('when the user reached the limit meanwhile answers 409 USER_LIMIT_REACHED', async () => {
      const held = await Promise.all([60, 61, 62].map((i) => codeFor('greedy', i)));
      assert.equal((await post(`/purchase?code=${held[0]}`)).statusCode, 200);
      assert.equal((await post(`/purchase?code=${held[1]}`)).statusCode, 200);
      assertError(await post(`/purchase?code=${held[2]}`), 409, 'USER_LIMIT_REACHED');
    });
  });

  describe('GET /sales', () => {
    it('GET /sales/active answers the running sale with its counts', async () => {
      const res = await app.inject('/sales/active');
      assert.equal(res.statusCode, 200);
      const body = json<Record<string, unknown>>(res);
      assert.deepEqual(Object.keys(body).sort(), [
        'ends_at',
        'id',
        'items_remaining',
        'items_sold',
        'started_at',
        'total_items',
      ]);
      const { rows } = await env.pg.query('SELECT count(*)::int AS n FROM purchases WHERE sale_id = $1', [sale]);
      assert.equal(body.items_sold, rows[0].n);
      assert.equal(body.total_items, 200);
      assert.equal(body.items_remaining, 200 - rows[0].n);
    });

    it('GET /sales/{id} answers any sale in the same shape, and 404 SALE_NOT_FOUND for an unknown one', async () => {
      assert.deepEqual(json(await app.inject(`/sales/${sale}`)), json(await app.inject('/sales/active')));
      assertError(await app.inject('/sales/2001010100'), 404, 'SALE_NOT_FOUND');
      assertError(await app.inject('/sales/nonsense'), 404, 'SALE_NOT_FOUND');
    });

    it('GET /sales/{id}/items pages through the items with their sold flags', async () => {
      for (const i of [91, 92]) {
        assert.equal((await post(`/purchase?code=${await codeFor(`pager-${i}`, i)}`)).statusCode, 200);
      }
      const res = await app.inject(`/sales/${sale}/items?offset=90&limit=3`);
      assert.equal(res.statusCode, 200);
      const body = json<{ items: { id: string; sold: boolean; name: string; image_url: string }[] }>(res);
      assert.deepEqual(
        body.items.map((i) => [i.id, i.sold]),
        [
          [item(90), false],
          [item(91), true],
          [item(92), true],
        ],
      );
      assert.deepEqual({ ...body, items: undefined }, { items: undefined, offset: 90, limit: 3, total: 200 });
      assert.equal(json<{ items: unknown[] }>(await app.inject(`/sales/${sale}/items`)).items.length, 100);
      const padded = json<{ offset: number; limit: number }>(
        await app.inject(`/sales/${sale}/items?offset=039&limit=05`),
      );
      assert.deepEqual([padded.offset, padded.limit], [39, 5], 'leading zeros are still numbers');
    });

    it('GET /sales/{id}/items with limit over 1000, negative or not a number answers 400; an unknown sale 404', async () => {
      for (const q of ['limit=1001', 'limit=-1', 'limit=ten', 'offset=-5', 'offset=x']) {
        const res = await app.inject(`/sales/${sale}/items?${q}`);
        assertError(res, 400, 'INVALID_REQUEST');
        assert.match(errorOf(res).message, /^(limit|offset) /);
      }
      assertError(await app.inject('/sales/2001010100/items'), 404, 'SALE_NOT_FOUND');
    });

    it('GET /items/{id}/image.svg serves the generated picture', async () => {
      const res = await app.inject(`/items/${item(7)}/image.svg`);
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^image\/svg\+xml/);
      assert.match(res.body, /^<svg /);
      assert.equal(res.body, (await app.inject(`/items/${item(7)}/image.svg`)).body, 'deterministic');
      assertError(await app.inject(`/items/${item(500)}/image.svg`), 404, 'ITEM_NOT_FOUND');
    });

    it('GET /items/{id}/image.svg of a sale that never existed answers 404 ITEM_NOT_FOUND saying so', async () => {
      const res = await app.inject('/items/2020010100-00001/image.svg');
      assertError(res, 404, 'ITEM_NOT_FOUND');
      assert.equal(errorOf(res).message, 'item 2020010100-00001 does not exist');
      assert.equal((await app.inject('/sales/2020010100')).statusCode, 404, 'as the sale itself');
    });

    it('GET /items/{id}/image.svg serves the items of a past sale, up to that sale’s own size', async () => {
      const { ids } = app.deps;
      const past = ids.windowContaining(clock.now() - 3 * 3600 * 1000);
      // An instance living three hours ago creates that sale, with SALE_ITEMS=200.
      await (await env.app({ clock: offsetClock(past.startsAt - Date.now()) })).deps.sales.active();
      const pastItem = (i: number) => ids.itemId(past.id, i);
      const res = await app.inject(`/items/${pastItem(199)}/image.svg`);
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
      // An instance configured for bigger sales still answers from the sale's own size.
      const bigger = await env.app({ clock, env: { SALE_ITEMS: '300' } });
      const beyond = await bigger.inject(`/items/${pastItem(250)}/image.svg`);
      assertError(beyond, 404, 'ITEM_NOT_FOUND');
      assert.equal(errorOf(beyond).message, `item ${pastItem(250)} does not exist`);
      assert.equal((await bigger.inject(`/items/${pastItem(199)}/image.svg`)).statusCode, 200);
    });
  });

  describe('the rest of the surface', () => {
    it('GET /health answers 200 with the seed HealthData shape', async () => {
      const res = await app.inject('/health');
      assert.equal(res.statusCode, 200);
      const body = json<{
        services_status: object;
        uptime: string;
        memory: Record<string, number>;
        goroutines: number;
      }>(res);
      assert.deepEqual(body.services_status, { app: 'UP', database: 'UP', redis: 'UP' });
      assert.match(body.uptime, /^(\d+h)?(\d+m)?[\d.]+s$/);
      assert.deepEqual(Object.keys(body.memory).sort(), ['alloc', 'num_gc', 'sys', 'total_alloc']);
      assert.ok(Object.values(body.memory).every((v) => Number.isInteger(v) && v >= 0));
      assert.ok(body.goroutines > 0);
    });

    it('GET /metrics answers the Prometheus text exposition', async () => {
      const res = await app.inject('/metrics');
      assert.equal(res.statusCode, 200);
      assert.match(String(res.headers['content-type']), /^text\/plain/);
      assert.match(res.body, /^# HELP http_requests_total /m);
    });

    it('a wrong method on a known path answers 405 METHOD_NOT_ALLOWED with Allow', async () => {
      const res = await app.inject({ method: 'GET', url: '/checkout' });
      assertError(res, 405, 'METHOD_NOT_ALLOWED');
      assert.equal(res.headers.allow, 'POST');
      assert.equal((await app.inject({ method: 'DELETE', url: '/sales/active' })).headers.allow, 'GET, HEAD');
      // Every method Node's parser accepts, not only the common ones; QUERY even without a Content-Type.
      for (const method of ['PROPFIND', 'TRACE', 'SEARCH', 'MKCOL', 'QUERY'] as const) {
        const odd = await app.inject({ method: method as 'GET', url: '/health' });
        assertError(odd, 405, 'METHOD_NOT_ALLOWED');
        assert.equal(odd.headers.allow, 'GET, HEAD', method);
      }
    });

    it('an unknown path answers 404 NOT_FOUND', async () => {
      assertError(await app.inject('/nope/../x?y=1'), 404, 'NOT_FOUND');
    });

    it('a body over the limit answers 413 PAYLOAD_TOO_LARGE', async () => {
      const res = await app.inject({
        method: 'POST',
        url: `/checkout?user_id=u&id=${item(1)}`,
        headers: { 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(100_000) }),
      });
      assertError(res, 413, 'PAYLOAD_TOO_LARGE');
      const form = await app.inject({
        method: 'POST',
        url: `/checkout?user_id=u&id=${item(1)}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'x'.repeat(100_000),
      });
      assertError(form, 413, 'PAYLOAD_TOO_LARGE');
    });

    it('POST with a body the route does not take, of any Content-Type (curl -d), ignores the body', async () => {
      for (const [type, payload] of [
        ['application/x-www-form-urlencoded', ''],
        ['application/json', '{"__proto__":{"polluted":1}}'],
        ['application/json', '{"broken":'],
        ['application/x-evil', 'x'],
        [undefined, 'no content type'],
      ] as const) {
        const res = await app.inject({
          method: 'POST',
          url: `/checkout?user_id=body-sender&id=${item(80)}`,
          headers: type ? { 'content-type': type } : {},
          payload,
        });
        assert.equal(res.statusCode, 200, `${type}: ${res.body}`);
      }
      assertError(
        await app.inject({
          method: 'POST',
          url: `/checkout?user_id=body-sender&id=${item(80)}`,
          headers: { 'content-type': ';;' },
          payload: 'x',
        }),
        400,
        'INVALID_REQUEST',
      );
    });

    it('POST /purchase with a code of an ended sale answers 410 SALE_ENDED, and a bought code still replays', async () => {
      const unused = await codeFor('late', 70);
      const used = await codeFor('early', 71);
      const bought = await post(`/purchase?code=${used}`);
      clock.advance(3600 * 1000);
      try {
        assertError(await post(`/purchase?code=${unused}`), 410, 'SALE_ENDED');
        const replay = await post(`/purchase?code=${used}`);
        assert.equal(replay.statusCode, 200);
        assert.equal(replay.body, bought.body);
      } finally {
        clock.advance(-3600 * 1000);
      }
    });
  });
});

describe('every error code of the catalogue (src/errors.ts), each answered to a real request', () => {
  // ADMIT_PER_SEC 1 and a long pre-queue: nobody joining in a test is admitted before it ends.
  const waitingRoom = {
    WAITING_ROOM: 'on',
    WAITING_ROOM_SECRET: 's'.repeat(32),
    ADMIT_PER_SEC: '1',
    PREQUEUE_SECONDS: '0',
  };
  let env: TestEnv;
  let app: App;
  let port: number;
  let sale: string;
  const post = (url: string) => app.inject({ method: 'POST', url });
  const item = (i: number) => itemId(sale, i);
  const codeFor = async (user: string, i: number) =>
    json<{ code: string }>(await post(`/checkout?user_id=${user}&id=${item(i)}`)).code;

  before(async () => {
    env = await testEnv({
      SALE_DURATION: '3600', // the tests move the clock an hour on to end the sale
      SALE_ITEMS: '50',
      USER_LIMIT: '1',
      RATE_LIMIT_USER_PER_SEC: '1',
      RATE_LIMIT_USER_BURST: '2',
      REQUEST_TIMEOUT_MS: '1000',
    });
    app = await env.app();
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  // One story per code; each arranges its own users and items, so any one runs alone.
  const stories: Record<
    ErrorCode,
    [story: string, status: number, request: () => Promise<Pick<Res, 'statusCode' | 'body'>>]
  > = {
    INVALID_REQUEST: ['POST /checkout without user_id', 400, () => post(`/checkout?id=${item(1)}`)],
    NOT_FOUND: ['GET of an unknown path', 404, () => app.inject('/nope')],
    ITEM_NOT_FOUND: [
      'POST /checkout of an index beyond SALE_ITEMS',
      404,
      () => post(`/checkout?user_id=c&id=${item(50)}`),
    ],
    CODE_NOT_FOUND: [
      'POST /purchase of a code nobody issued',
      404,
      () => post(`/purchase?code=${sale}-${'0'.repeat(32)}`),
    ],
    SALE_NOT_FOUND: ['GET /sales/{id} of a sale that never existed', 404, () => app.inject('/sales/2001010100')],
    METHOD_NOT_ALLOWED: ['GET /checkout', 405, () => app.inject('/checkout')],
    NOT_ADMITTED: [
      'POST /checkout, with the waiting room on, by a user whose ticket is not admitted yet',
      403,
      async () => {
        // Time stands still at the sale's start: admission never gets a second to let anyone in.
        const start = Date.parse(json<{ started_at: string }>(await app.inject('/sales/active')).started_at);
        const room = await env.app({ env: waitingRoom, clock: { now: () => start } });
        // A starting instance answers 503 until its first read of the room's counters.
        await waitFor('counters', async () => (room.deps.queue!.admission.age() < 1000 ? true : undefined));
        const { ticket } = json<{ ticket: string }>(
          await room.inject({ method: 'POST', url: '/queue/join?user_id=early' }),
        );
        return room.inject({
          method: 'POST',
          url: `/checkout?user_id=early&id=${item(9)}`,
          headers: { 'x-queue-ticket': ticket },
        });
      },
    ],
    TICKET_INVALID: [
      'POST /checkout, with the waiting room on, without a ticket',
      403,
      async () =>
        (await env.app({ env: waitingRoom })).inject({ method: 'POST', url: `/checkout?user_id=u&id=${item(9)}` }),
    ],
    SOLD_OUT: [
      'POST /queue/join when every item of the sale is sold',
      410,
      async () => {
        await post(`/purchase?code=${await codeFor('last-buyer', 10)}`);
        // The same sale, seen by an instance configured for the one item just sold.
        const room = await env.app({ env: { ...waitingRoom, SALE_ITEMS: '1' } });
        return room.inject({ method: 'POST', url: '/queue/join?user_id=late' });
      },
    ],
    ITEM_SOLD: [
      'POST /checkout of an item bought by someone else',
      409,
      async () => {
        await post(`/purchase?code=${await codeFor('sold-first', 2)}`);
        return post(`/checkout?user_id=sold-second&id=${item(2)}`);
      },
    ],
    USER_LIMIT_REACHED: [
      'POST /checkout by a user who bought USER_LIMIT items',
      409,
      async () => {
        await post(`/purchase?code=${await codeFor('limited', 3)}`);
        return post(`/checkout?user_id=limited&id=${item(4)}`);
      },
    ],
    SALE_ENDED: [
      'POST /purchase of a code once its sale has ended',
      410,
      async () => {
        const clock = offsetClock();
        const later = await env.app({ clock });
        const code = json<{ code: string }>(
          await later.inject({ method: 'POST', url: `/checkout?user_id=ended&id=${item(5)}` }),
        ).code;
        clock.advance(3_600_000);
        return later.inject({ method: 'POST', url: `/purchase?code=${code}` });
      },
    ],
    UNAUTHENTICATED: ['GET /admin/sales without a token', 401, () => app.inject('/admin/sales')],
    FORBIDDEN: [
      "POST /checkout with AUTH=jwt and a user_id other than the token's sub",
      403,
      async () => {
        const key = await newKey('k1');
        const verified = await env.app({ env: jwtEnv(key) });
        const headers = bearer(await sign(key, { sub: 'alice' }));
        return verified.inject({ method: 'POST', url: `/checkout?user_id=bob&id=${item(8)}`, headers });
      },
    ],
    SALE_PAUSED: [
      'POST /checkout while an operator has paused the sale',
      503,
      async () => {
        const token = 'x'.repeat(40);
        const operator = await env.app({ env: { ADMIN_TOKENS: token } });
        const admin = (action: string) =>
          operator.inject({ method: 'POST', url: `/admin/sales/${sale}/${action}`, headers: bearer(token) });
        assert.equal((await admin('pause')).statusCode, 200);
        try {
          return await operator.inject({ method: 'POST', url: `/checkout?user_id=paused&id=${item(9)}` });
        } finally {
          assert.equal((await admin('resume')).statusCode, 200);
          // The other instance of this suite sees the sale open again before the next story.
          while ((await post(`/checkout?user_id=paused&id=${item(9)}`)).statusCode === 503);
        }
      },
    ],
    REQUEST_TIMEOUT: [
      'a request whose body stops arriving',
      408,
      () => rawRequest(port, 'POST /purchase?code=x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcd'),
    ],
    PAYLOAD_TOO_LARGE: [
      'POST /checkout with a 100 kB body',
      413,
      () => app.inject({ method: 'POST', url: `/checkout?user_id=u&id=${item(1)}`, payload: 'x'.repeat(100_000) }),
    ],
    HEADERS_TOO_LARGE: [
      'a request line over 16 KiB',
      431,
      () => rawRequest(port, `GET /sales/active?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`),
    ],
    RATE_LIMITED: [
      'a third POST /checkout by one user within a burst of two',
      429,
      async () => {
        await post(`/checkout?user_id=hasty&id=${item(6)}`);
        await post(`/checkout?user_id=hasty&id=${item(6)}`);
        return post(`/checkout?user_id=hasty&id=${item(6)}`);
      },
    ],
    INTERNAL: [
      'GET /sales/{id}/items while its table is missing (a bug, masked)',
      500,
      async () => {
        await env.pg.query('ALTER TABLE items RENAME TO items_hidden');
        try {
          return await app.inject(`/sales/${sale}/items`);
        } finally {
          await env.pg.query('ALTER TABLE items_hidden RENAME TO items');
        }
      },
    ],
    UNAVAILABLE: [
      'POST /checkout while Redis is unreachable',
      503,
      async () => {
        const cut = await env.app({ env: { REDIS_URL: `redis://127.0.0.1:${await freePort()}` } });
        return cut.inject({ method: 'POST', url: `/checkout?user_id=u&id=${item(7)}` });
      },
    ],
  };

  for (const code of errorCodes) {
    const [story, status, request] = stories[code];
    it(`${story} answers ${status} ${code} in the error shape`, async () => {
      const res = await request();
      assertError(res, status, code);
      if (status === 500) assert.equal(errorOf(res).message, 'internal error', 'a 500 never tells why');
    });
  }
});
