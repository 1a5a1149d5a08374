/**
 * The hot lane (src/http/lane.ts) answers plain checkouts and purchases below
 * Fastify. These stories hold it to the route's contract: every answer it
 * gives is the one the Fastify route gives (app.inject always takes the
 * route), it is counted the same way, and whatever it does not take reaches
 * the route.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

const TOKEN = 'operator-token-0123456789-abcdefghij';

/** One series of a scrape of /metrics (0 when absent); `labels` as written in the exposition. */
async function metricValue(app: App, name: string, labels: string) {
  const text = (await app.inject('/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `));
  return Number(line?.split(' ')[1] ?? 0);
}

interface Answer {
  status: number;
  type: string | undefined;
  retryAfter: string | undefined;
  body: unknown;
}

describe('POST /checkout and POST /purchase through the hot lane', () => {
  let env: TestEnv;
  let app: App;
  let base: string;
  let sale: string;

  before(async () => {
    env = await testEnv({
      USER_LIMIT: '1',
      RATE_LIMIT_USER_PER_SEC: '1',
      RATE_LIMIT_USER_BURST: '4',
      ADMIN_TOKENS: TOKEN,
    });
    app = await env.app();
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  const metric = (name: string, labels: string) => metricValue(app, name, labels);
  const served = (handler: string) => metric('http_hot_lane_requests_total', `handler="${handler}"`);

  /** Over a socket: the lane takes it if it can. */
  async function overHttp(url: string, init: RequestInit = {}): Promise<Answer> {
    const res = await fetch(`${base}${url}`, { method: 'POST', ...init });
    const type = res.headers.get('content-type') ?? undefined;
    return {
      status: res.status,
      type,
      retryAfter: res.headers.get('retry-after') ?? undefined,
      body: await res.json(),
    };
  }
  /** Through app.inject: always the Fastify route. */
  async function throughRoute(url: string): Promise<Answer> {
    const res = await app.inject({ method: 'POST', url });
    const header = (name: string) => res.headers[name] as string | undefined;
    return { status: res.statusCode, type: header('content-type'), retryAfter: header('retry-after'), body: json(res) };
  }
  /** The lane's answer (checked to be the lane's), then the route's to the same request. */
  async function both(handler: string, url: string) {
    const before = await served(handler);
    const lane = await overHttp(url);
    assert.equal((await served(handler)) - before, 1, `the lane answered ${url}`);
    return { lane, route: await throughRoute(url) };
  }

  it('answers every checkout outcome as the route does: 200 with the code, 409 ITEM_SOLD and USER_LIMIT_REACHED, 404 ITEM_NOT_FOUND, 429 with Retry-After', async () => {
    const ok = await both('checkout', `/checkout?user_id=ann&id=${itemId(sale, 1)}`);
    assert.equal(ok.lane.status, 200);
    assert.deepEqual(ok.lane, ok.route);

    const { code } = ok.lane.body as { code: string };
    assert.equal((await overHttp(`/purchase?code=${code}`)).status, 200);
    const sold = await both('checkout', `/checkout?user_id=bob&id=${itemId(sale, 1)}`);
    assert.equal(sold.lane.status, 409);
    assert.deepEqual(sold.lane, sold.route);

    const full = await both('checkout', `/checkout?user_id=ann&id=${itemId(sale, 2)}`);
    assert.deepEqual((full.lane.body as { error: { code: string } }).error.code, 'USER_LIMIT_REACHED');
    assert.deepEqual(full.lane, full.route);

    const missing = await both('checkout', `/checkout?user_id=cat&id=${itemId(sale, 9999)}`);
    assert.equal(missing.lane.status, 404);
    assert.deepEqual(missing.lane, missing.route);

    // The user's bucket holds 4: the 5th and 6th checkouts within a second are refused.
    for (let i = 0; i < 4; i++) await overHttp(`/checkout?user_id=dan&id=${itemId(sale, 10 + i)}`);
    const limited = await both('checkout', `/checkout?user_id=dan&id=${itemId(sale, 20)}`);
    assert.equal(limited.lane.status, 429);
    assert.equal(limited.lane.retryAfter, '1');
    assert.deepEqual(limited.lane, limited.route);
  });

  it('answers every purchase outcome as the route does: the purchase and its replay, 409 ITEM_SOLD, 404 CODE_NOT_FOUND', async () => {
    const { code } = (await overHttp(`/checkout?user_id=eve&id=${itemId(sale, 30)}`)).body as { code: string };
    const bought = await both('purchase', `/purchase?code=${code}`);
    assert.equal(bought.lane.status, 200);
    assert.deepEqual(bought.lane, bought.route); // the route's answer is the replay: the same body

    const { code: late } = (await overHttp(`/checkout?user_id=fay&id=${itemId(sale, 31)}`)).body as { code: string };
    const { code: first } = (await overHttp(`/checkout?user_id=gus&id=${itemId(sale, 31)}`)).body as {
      code: string;
    };
    assert.equal((await overHttp(`/purchase?code=${first}`)).status, 200);
    const lost = await both('purchase', `/purchase?code=${late}`);
    assert.equal(lost.lane.status, 409);
    assert.deepEqual(lost.lane, lost.route);

    const unknown = await both('purchase', `/purchase?code=${sale}-${'0'.repeat(32)}`);
    assert.equal(unknown.lane.status, 404);
    assert.deepEqual(unknown.lane, unknown.route);
  });

  it('counts what it answers as the route would: http_requests_total, the duration histogram and the business counters', async () => {
    const counted = () =>
      Promise.all([
        metric('http_requests_total', 'handler="checkout",method="POST",status_code="409"'),
        metric('http_request_duration_seconds_count', 'handler="checkout",method="POST",status_code="409"'),
        metric('checkout_attempts_total', ''),
        metric('checkout_failure_total', 'reason="ITEM_SOLD"'),
      ]);
    const before = await counted();
    await both('checkout', `/checkout?user_id=hal&id=${itemId(sale, 1)}`); // sold: once by the lane, once by the route
    assert.deepEqual(
      (await counted()).map((v, i) => v - before[i]!),
      [2, 2, 2, 2],
    );
  });

  it('leaves to the route what it does not take: a body, percent-encoding, a missing, repeated or extra parameter', async () => {
    const item = itemId(sale, 40);
    const cases: [string, RequestInit, number][] = [
      [`/checkout?user_id=ivy&id=${item}`, { body: 'x', headers: { 'content-type': 'text/plain' } }, 200],
      [`/checkout?user_id=iv%79&id=${item}`, {}, 200],
      [`/checkout?user_id=ivy`, {}, 400],
      [`/checkout?user_id=ivy&user_id=joe&id=${item}`, {}, 400],
      [`/checkout?user_id=ivy&id=${item}&x=1`, {}, 200],
      [`/checkout?user_id=i%20y&id=${item}`, {}, 400],
      [`/purchase?code=nope`, {}, 400],
    ];
    for (const [url, init, status] of cases) {
      const before = (await served('checkout')) + (await served('purchase'));
      const answer = await overHttp(url, init);
      assert.equal(answer.status, status, url);
      assert.equal((await served('checkout')) + (await served('purchase')), before, `the route answered ${url}`);
    }
  });

  it('leaves checkouts to the route while an operator holds a sale paused, and takes them again on resume', async () => {
    const admin = (action: string) =>
      app.inject({
        method: 'POST',
        url: `/admin/sales/${sale}/${action}`,
        headers: { authorization: `Bearer ${TOKEN}` },
      });
    assert.equal((await admin('pause')).statusCode, 200);
    const before = await served('checkout');
    const paused = await overHttp(`/checkout?user_id=kim&id=${itemId(sale, 50)}`);
    assert.equal(paused.status, 503);
    assert.equal((paused.body as { error: { code: string } }).error.code, 'SALE_PAUSED');
    assert.equal(await served('checkout'), before, 'the route answered');

    assert.equal((await admin('resume')).statusCode, 200);
    assert.equal((await overHttp(`/checkout?user_id=kim&id=${itemId(sale, 50)}`)).status, 200);
    assert.equal((await served('checkout')) - before, 1, 'the lane answered');
  });
});

describe('GET /queue/status and POST /queue/join through the hot lane (WAITING_ROOM=on)', () => {
  let env: TestEnv;
  let app: App;
  let base: string;

  before(async () => {
    env = await testEnv({ WAITING_ROOM: 'on', WAITING_ROOM_SECRET: 'a-waiting-room-secret-of-32-bytes-or-more' });
    app = await env.app();
    base = await app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(() => env.close());

  const served = (handler = 'queue_status') => metricValue(app, 'http_hot_lane_requests_total', `handler="${handler}"`);
  const answers = async (url: string) => {
    const before = await served();
    const lane = await fetch(`${base}${url}`);
    assert.equal((await served()) - before, 1, `the lane answered ${url}`);
    const route = await app.inject(url);
    return [
      { status: lane.status, retryAfter: lane.headers.get('retry-after'), body: await lane.json() },
      { status: route.statusCode, retryAfter: route.headers['retry-after'] ?? null, body: json(route) },
    ];
  };

  it('answers a ticket’s standing, with its Retry-After, as the route does', async () => {
    const { ticket } = json<{ ticket: string }>(await app.inject({ method: 'POST', url: '/queue/join?user_id=lea' }));
    const url = `/queue/status?ticket=${ticket}`;
    // Admitted, the standing holds still (a waiting one moves, and its Retry-After is drawn at random).
    await waitFor('the ticket admitted', async () => (json(await app.inject(url)).admitted ? true : undefined));
    const [lane, route] = await answers(url);
    assert.equal(lane!.status, 200);
    assert.match(lane!.retryAfter!, /^\d+$/);
    assert.deepEqual(lane, route);
  });

  it('POST /queue/join: answers a join, and the same place again, as the route does', async () => {
    const before = await served('queue_join');
    const res = await fetch(`${base}/queue/join?user_id=ned`, { method: 'POST' });
    assert.equal((await served('queue_join')) - before, 1, 'the lane answered');
    const route = await app.inject({ method: 'POST', url: '/queue/join?user_id=ned' });
    assert.equal(res.status, 200);
    assert.equal(route.statusCode, 200);
    // One place per user: the same ticket (its standing may move between the two, on the admission timer).
    const [lane, again] = [(await res.json()) as Record<string, unknown>, json(route)];
    assert.deepEqual(Object.keys(lane).sort(), Object.keys(again).sort());
    assert.deepEqual([lane.ticket, lane.sale_id], [again.ticket, again.sale_id]);
  });

  it('answers a forged ticket 403 TICKET_INVALID as the route does', async () => {
    const { ticket } = json<{ ticket: string }>(await app.inject({ method: 'POST', url: '/queue/join?user_id=max' }));
    const forged = `${ticket.slice(0, -2)}${ticket.endsWith('AA') ? 'BB' : 'AA'}`;
    const [lane, route] = await answers(`/queue/status?ticket=${forged}`);
    assert.equal(lane!.status, 403);
    assert.deepEqual(lane, route);
  });
});
