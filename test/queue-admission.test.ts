/**
 * Waiting-room admission: the rate under a controlled clock, shared by
 * instances, taken over when the admitting instance is killed, the pre-queue
 * shuffle and first come first served after the start, inventory-aware stop
 * and resume, sold out, Redis down, and the room off.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { queueKeys, saleKeys } from '../src/redis/keys.js';
import { json, testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startRedis, startService, waitFor, type Proc } from './process.js';

const SECRET = 'a-secret-of-at-least-32-bytes-000';
const room = (extra: Record<string, string> = {}) => ({ WAITING_ROOM: 'on', WAITING_ROOM_SECRET: SECRET, ...extra });
const HOUR = 3_600_000;
const thisHour = () => Math.floor(Date.now() / HOUR) * HOUR;

const envs: TestEnv[] = [];
const procs: Proc[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  await Promise.all(envs.map((e) => e.close()));
});
async function newEnv(overrides: Record<string, string>) {
  const env = await testEnv(overrides);
  envs.push(env);
  return env;
}

function manualClock(at: number) {
  let now = at;
  return { now: () => now, advance: (ms: number) => void (now += ms), set: (ms: number) => void (now = ms) };
}
/** Moves the clock in 250 ms steps, one admission step per instance each. */
async function pass(apps: App[], clock: { advance(ms: number): void }, ms: number) {
  for (let t = 0; t < ms; t += 250) {
    clock.advance(250);
    for (const app of apps) await app.deps.queue!.admission.tick();
  }
}

interface Standing {
  ticket: string;
  sale_id: string;
  position: number;
  admitted: boolean;
  sold_out: boolean;
  stale: boolean;
}
const join = async (app: App, user: string) => {
  const res = await app.inject({ method: 'POST', url: `/queue/join?user_id=${user}` });
  assert.equal(res.statusCode, 200, res.body);
  return json<Standing>(res);
};
const status = async (app: App, ticket: string) =>
  json<Standing>(await app.inject(`/queue/status?ticket=${encodeURIComponent(ticket)}`));
const admittedCount = async (app: App, saleId: string) =>
  Number(
    await app.deps.redis.command<string | null>('hget', [
      'HGET',
      queueKeys(app.deps.config.REDIS_PREFIX, saleId).state,
      'admitted',
    ]),
  );

describe('waiting room admission', () => {
  it('admits ADMIT_PER_SEC people a second under a controlled clock, also with two instances stepping the same room', async () => {
    const env = await newEnv({ SALE_ITEMS: '1000' });
    const clock = manualClock(thisHour() + 10_000);
    const [a, b] = [
      await env.app({ clock, env: room({ ADMIT_PER_SEC: '10' }) }),
      await env.app({ clock, env: room({ ADMIT_PER_SEC: '10' }) }),
    ];
    const tickets = await Promise.all(Array.from({ length: 300 }, (_, i) => join(i % 2 ? a : b, `u${i}`)));
    const sale = tickets[0]!.sale_id;
    await pass([a, b], clock, 0);
    for (const app of [a, b]) await app.deps.queue!.admission.tick(); // owed admissions from before the joins
    const before = await admittedCount(a, sale);
    await pass([a, b], clock, 10_000);
    assert.equal((await admittedCount(a, sale)) - before, 100, '10 s at 10 a second, whatever the number of instances');
    assert.equal([a, b].filter((app) => app.deps.queue!.admission.leading()).length, 1, 'one instance leads');
  });

  it('after the instance advancing admission is killed (SIGKILL), another takes over within the lease', async () => {
    const env = await newEnv({ SALE_ITEMS: '1000' });
    const port = await freePort();
    const proc = startService({
      ...env.env,
      ...room({ ADMIT_PER_SEC: '20' }),
      PORT: String(port),
      PREQUEUE_SECONDS: '0',
    });
    procs.push(proc);
    await serviceReady(port);
    // The process must lead before the standby starts, or the standby may take the lease first.
    await waitFor('the lease taken by the process', async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return /^queue_admission_leader 1$/m.test(text) ? true : undefined;
    });
    const standby = await env.app({ env: room({ ADMIT_PER_SEC: '20', PREQUEUE_SECONDS: '0' }) });
    const queue = standby.deps.queue!;
    await waitFor('the standby reading the counters', async () => (queue.admission.age() < 1000 ? true : undefined));
    assert.equal(queue.admission.leading(), false);
    const { sale_id: sale } = await join(standby, 'first');
    await Promise.all(Array.from({ length: 400 }, (_, i) => join(standby, `k${i}`)));
    await waitFor('admission by the process', async () =>
      (await admittedCount(standby, sale)) > 10 ? true : undefined,
    );
    assert.equal(queue.admission.leading(), false);

    await proc.kill('SIGKILL');
    const at = await admittedCount(standby, sale);
    const t0 = Date.now();
    await waitFor(
      'admission by the standby',
      async () => ((await admittedCount(standby, sale)) > at + 10 ? true : undefined),
      5000,
    );
    assert.ok(queue.admission.leading());
    assert.ok(Date.now() - t0 < 4000, `took over in ${Date.now() - t0} ms (lease 2 s)`);
  });

  it('the pre-queue is admitted in a uniformly shuffled order at the start, then later joins first come first served', async () => {
    const env = await newEnv({ SALE_ITEMS: '1000', SALE_DURATION: String(HOUR / 1000) });
    const start = thisHour() + HOUR;
    const clock = manualClock(start - 30_000);
    const app = await env.app({ clock, env: room({ ADMIT_PER_SEC: '20', PREQUEUE_SECONDS: '60' }) });
    const n = 200;
    const early: Standing[] = [];
    for (let i = 0; i < n; i++) {
      early.push(await join(app, `pre${i}`));
      clock.advance(100); // they arrive over 20 s of the pre-queue, in this order
    }
    assert.ok(early.every((t) => t.sale_id === early[0]!.sale_id && !t.admitted));
    clock.set(start);
    const late: Standing[] = [];
    for (let i = 0; i < 20; i++) late.push(await join(app, `post${i}`));

    // Step admission (5 a step) and note the step at which each ticket is first admitted.
    const admittedAt = new Map<string, number>();
    const all = [...early, ...late];
    for (let step = 0; admittedAt.size < all.length; step++) {
      assert.ok(step < 100, 'everyone is admitted');
      await pass([app], clock, 250);
      for (const t of all)
        if (!admittedAt.has(t.ticket) && (await status(app, t.ticket)).admitted) admittedAt.set(t.ticket, step);
    }
    // Spearman's rank correlation of arrival and admission; uncorrelated, sqrt(n-1) * rho is about N(0, 1).
    const steps = early.map((t) => admittedAt.get(t.ticket)!);
    const ranks = averageRanks(steps);
    const mean = (n + 1) / 2;
    let cov = 0,
      varA = 0,
      varB = 0;
    for (let i = 0; i < n; i++) {
      cov += (i + 1 - mean) * (ranks[i]! - mean);
      varA += (i + 1 - mean) ** 2;
      varB += (ranks[i]! - mean) ** 2;
    }
    const z = (cov / Math.sqrt(varA * varB)) * Math.sqrt(n - 1);
    // Two-sided, significance 0.001: a fair shuffle fails this one run in a thousand.
    assert.ok(Math.abs(z) < 3.29, `pre-queue admission order follows arrival order (z = ${z.toFixed(2)})`);
    const lastEarly = Math.max(...steps);
    const lateSteps = late.map((t) => admittedAt.get(t.ticket)!);
    assert.ok(
      lateSteps.every((s) => s >= lastEarly),
      'joins after the start come after the whole pre-queue',
    );
    assert.deepEqual(
      lateSteps,
      [...lateSteps].sort((x, y) => x - y),
      'and in the order they joined',
    );
  });

  it('admission stays within the items remaining, stops when sold out (every status says so within 1 s, joins answer 410) and resumes when an item comes back', async () => {
    const env = await newEnv({ SALE_ITEMS: '3', USER_LIMIT: '1', RECONCILE_INTERVAL_MS: '3600000' });
    const clock = manualClock(thisHour() + 10_000);
    const app = await env.app({
      clock,
      env: room({ ADMIT_PER_SEC: '10', ADMISSION_STOCK_FACTOR: '1', ADMISSION_TTL: '5', PREQUEUE_SECONDS: '0' }),
    });
    const people: Standing[] = [];
    for (let i = 0; i < 8; i++) people.push(await join(app, `s${i}`));
    const sale = people[0]!.sale_id;
    await pass([app], clock, 2000);
    assert.equal(await admittedCount(app, sale), 3, 'three items: three admitted, however fast the rate');

    const post = (url: string, ticket: string) =>
      app.inject({ method: 'POST', url, headers: { 'x-queue-ticket': ticket } });
    const buy = async (i: number) => {
      const code = json<{ code: string }>(
        await post(`/checkout?user_id=s${i}&id=${sale}-0000${i}`, people[i]!.ticket),
      ).code;
      return { code, res: await post(`/purchase?code=${code}`, people[i]!.ticket) };
    };
    assert.equal((await buy(0)).res.statusCode, 200);
    assert.equal((await buy(1)).res.statusCode, 200);
    // The third item is reserved in Redis by a purchase whose instance dies before PostgreSQL.
    const code = json<{ code: string }>(await post(`/checkout?user_id=s2&id=${sale}-00002`, people[2]!.ticket)).code;
    const keys = saleKeys(env.config.REDIS_PREFIX, sale);
    const reserved = await app.deps.redis.scripts.purchase({
      keys,
      code,
      ip: 'x',
      userLimit: 1,
      token: 'dead',
      lockTtlMs: 100,
      now: clock.now(),
      charge: false,
      limits: { ownRate: 0, ownBurst: 1, ipRate: 0, ipBurst: 1 },
    });
    assert.equal(reserved.status, 'reserved');
    const soldAt = Date.now();
    await waitFor('sold out on every status', async () =>
      (await status(app, people[7]!.ticket)).sold_out ? true : undefined,
    );
    assert.ok(Date.now() - soldAt <= 1000, `sold out reached a poller in ${Date.now() - soldAt} ms`);
    const refused = await app.inject({ method: 'POST', url: '/queue/join?user_id=newcomer' });
    assert.equal(refused.statusCode, 410);
    assert.equal(json<{ error: { code: string } }>(refused).error.code, 'SOLD_OUT');
    await pass([app], clock, 1000);
    assert.equal(await admittedCount(app, sale), 3);

    // The reconciler's reclaim gives the reservation back (its lock is gone): the room reopens.
    await waitFor('the dead lock to expire', async () =>
      (await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock(code)])) === 0 ? true : undefined,
    );
    const seen = await app.deps.redis.command<string>('hget', ['HGET', keys.sold, '2']);
    assert.equal(await app.deps.redis.scripts.reclaim(keys, 2, seen), true);
    await waitFor('not sold out', async () => (!(await status(app, people[7]!.ticket)).sold_out ? true : undefined));
    // Two of the three admitted bought; the third, within their 5 s, has the one item left to
    // themself (factor 1): nobody more yet. After their TTL, one more.
    await pass([app], clock, 2000);
    assert.equal(await admittedCount(app, sale), 3);
    await pass([app], clock, 4000);
    assert.equal(await admittedCount(app, sale), 4);
  });

  it('admission stopped at the stock bound by people who then buy resumes at once, long before their ADMISSION_TTL; a buyer counts out once, whatever they buy', async () => {
    const env = await newEnv({ SALE_ITEMS: '5', USER_LIMIT: '2', RECONCILE_INTERVAL_MS: '3600000' });
    const clock = manualClock(thisHour() + 10_000);
    const app = await env.app({
      clock,
      env: room({ ADMIT_PER_SEC: '2', ADMISSION_STOCK_FACTOR: '1', ADMISSION_TTL: '300', PREQUEUE_SECONDS: '0' }),
    });
    const people: Standing[] = [];
    for (let i = 0; i < 8; i++) people.push(await join(app, `b${i}`));
    const sale = people[0]!.sale_id;
    const buy = buyer(app, sale, people);
    await app.deps.queue!.admission.tick(); // one step, no time passed: a second's catch-up at 2 a second
    assert.equal(await admittedCount(app, sale), 2);

    // b0 buys two items (USER_LIMIT 2), b1 one: 2 items left, and 2 admitted within their TTL.
    // Counting everyone admitted, that is the stock bound (1 x 2): admission would stop for 300 s.
    await buy(0, 1);
    await buy(0, 2);
    await buy(1, 3);
    assert.equal(await doneCount(app, sale), 2, 'one member per buyer, not per purchase');
    await pass([app], clock, 1000);
    assert.equal(await admittedCount(app, sale), 4, 'the buyers are done: two more in a second, at the rate');

    // b2 and b3 have not bought: two people for the two items left, the bound; nobody more.
    await pass([app], clock, 2000);
    assert.equal(await admittedCount(app, sale), 4);
    // b2 buys: one item, and b3 who may still buy it. Still nobody more.
    await buy(2, 4);
    await pass([app], clock, 1000);
    assert.equal(await admittedCount(app, sale), 4);
  });

  it('the stock bound holds while admitted people have not bought, and a buyer past their ADMISSION_TTL is not counted out twice', async () => {
    const env = await newEnv({ SALE_ITEMS: '3', USER_LIMIT: '1', RECONCILE_INTERVAL_MS: '3600000' });
    const clock = manualClock(thisHour() + 10_000);
    const app = await env.app({
      clock,
      env: room({ ADMIT_PER_SEC: '10', ADMISSION_STOCK_FACTOR: '2', ADMISSION_TTL: '10', PREQUEUE_SECONDS: '0' }),
    });
    const people: Standing[] = [];
    for (let i = 0; i < 16; i++) people.push(await join(app, `h${i}`));
    const sale = people[0]!.sale_id;
    const buy = buyer(app, sale, people);
    await pass([app], clock, 2000);
    assert.equal(await admittedCount(app, sale), 6, 'two people per item (factor 2 x 3 items), however fast the rate');
    await pass([app], clock, 1000);
    assert.equal(await admittedCount(app, sale), 6);

    // A checkout buys nothing; a purchase takes its buyer out, and its item: 5 people for 2 items.
    const checkout = await app.inject({
      method: 'POST',
      url: `/checkout?user_id=h0&id=${sale}-00001`,
      headers: { 'x-queue-ticket': people[0]!.ticket },
    });
    assert.equal(checkout.statusCode, 200, checkout.body);
    await buy(1, 2);
    assert.equal(await doneCount(app, sale), 1);
    await pass([app], clock, 2000);
    assert.equal(await admittedCount(app, sale), 6);

    // Past the six's 10 s, they are out as expired, and h1 leaves the done set rather than count
    // out a second time: room for 2 x 2 items, so 10 admitted (11 if h1 were still subtracted).
    await pass([app], clock, 6000);
    assert.equal(await doneCount(app, sale), 0);
    assert.equal(await admittedCount(app, sale), 10);
  });

  it('while Redis is down, joins answer 503 with Retry-After, and status answers from the last counters marked stale, then 503', async () => {
    const port = await freePort();
    const redis = await startRedis(port);
    procs.push(redis);
    const env = await newEnv({ REDIS_URL: `redis://127.0.0.1:${port}`, DEPENDENCY_TIMEOUT_MS: '200' });
    const app = await env.app({ env: room({ WAITING_ROOM_STALE_SECONDS: '3', PREQUEUE_SECONDS: '0' }) });
    await waitFor('counters', async () => (app.deps.queue!.admission.age() < 1000 ? true : undefined));
    const { ticket } = await join(app, 'during-outage');
    await redis.kill('SIGKILL');

    const refused = await app.inject({ method: 'POST', url: '/queue/join?user_id=another' });
    assert.equal(refused.statusCode, 503);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    const stale = await waitFor('a stale answer', async () => {
      const res = await app.inject(`/queue/status?ticket=${encodeURIComponent(ticket)}`);
      return res.statusCode === 200 && json<Standing>(res).stale ? res : undefined;
    });
    assert.equal(json<Standing>(stale).admitted, false);
    const gone = await waitFor('503 once the counters are too old', async () => {
      const res = await app.inject(`/queue/status?ticket=${encodeURIComponent(ticket)}`);
      return res.statusCode === 503 ? res : undefined;
    });
    assert.ok(Number(gone.headers['retry-after']) >= 1);
  });

  it('with WAITING_ROOM=off (the default), checkout needs no ticket and /queue routes do not exist', async () => {
    const env = await newEnv({});
    const app = await env.app();
    const sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    const checkout = await app.inject({ method: 'POST', url: `/checkout?user_id=u&id=${sale}-00001` });
    assert.equal(checkout.statusCode, 200);
    const code = json<{ code: string }>(checkout).code;
    assert.equal((await app.inject({ method: 'POST', url: `/purchase?code=${code}` })).statusCode, 200);
    const done = queueKeys(env.config.REDIS_PREFIX, sale).done;
    assert.equal(await app.deps.redis.command('exists', ['EXISTS', done]), 0, 'a purchase writes nothing for the room');
    assert.equal((await app.inject({ method: 'POST', url: '/queue/join?user_id=u' })).statusCode, 404);
    assert.equal(app.deps.queue, undefined);
  });
});

/** Checks out item `item` of the sale as person i and buys it, with their ticket; asserts both succeed. */
const buyer = (app: App, sale: string, people: Standing[]) => async (i: number, item: number) => {
  const headers = { 'x-queue-ticket': people[i]!.ticket };
  const user = Buffer.from(people[i]!.ticket.split('.')[0]!, 'base64url').toString().split('|')[2];
  const id = `${sale}-${String(item).padStart(5, '0')}`;
  const checkout = await app.inject({ method: 'POST', url: `/checkout?user_id=${user}&id=${id}`, headers });
  assert.equal(checkout.statusCode, 200, checkout.body);
  const code = json<{ code: string }>(checkout).code;
  const purchase = await app.inject({ method: 'POST', url: `/purchase?code=${code}`, headers });
  assert.equal(purchase.statusCode, 200, purchase.body);
};
/** People counted out of the stock bound as done (bought, admission within the TTL). */
const doneCount = (app: App, saleId: string) =>
  app.deps.redis.command<number>('zcard', ['ZCARD', queueKeys(app.deps.config.REDIS_PREFIX, saleId).done]);

/** Ranks 1..n, ties given their average rank. */
function averageRanks(values: number[]): number[] {
  const order = values.map((v, i) => [v, i] as const).sort((x, y) => x[0] - y[0]);
  const ranks = new Array<number>(values.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j < order.length && order[j]![0] === order[i]![0]) j++;
    for (let k = i; k < j; k++) ranks[order[k]![1]] = (i + 1 + j) / 2;
    i = j;
  }
  return ranks;
}
