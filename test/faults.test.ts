/**
 * Faults, with real processes: a private redis-server killed and restarted
 * empty, or stopped (SIGSTOP) with its connections open, PostgreSQL cut off
 * by a TCP proxy or slow to commit (a lock held), a service killed with
 * SIGKILL under load. Every scenario ends with the invariant audit.
 */
import assert from 'node:assert/strict';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { createClient } from 'redis';

import { auditSale, sweep, type Confirmed } from './audit.js';
import { itemId, testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startRedis, startService, waitFor, type Proc } from './process.js';

const procs: Proc[] = [];
const envs: TestEnv[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  await Promise.all(envs.map((e) => e.close()));
});

async function newEnv(overrides: Record<string, string> = {}) {
  const env = await testEnv({
    SALE_ITEMS: '60',
    USER_LIMIT: '2',
    RATE_LIMIT_IP_PER_SEC: '0',
    LOG_LEVEL: 'info',
    ...overrides,
  });
  envs.push(env);
  return env;
}

function service(env: Record<string, string>) {
  const proc = startService(env);
  procs.push(proc);
  return proc;
}

async function redisOn(port: number, ...args: string[]) {
  const proc = await startRedis(port, ...args);
  procs.push(proc);
  return proc;
}

/** Times one request; the body is read so the timing covers the whole answer. */
async function timed(url: string, method = 'POST') {
  const t0 = Date.now();
  const res = await fetch(url, { method });
  const text = await res.text();
  return { status: res.status, text, ms: Date.now() - t0, retryAfter: res.headers.get('retry-after') };
}

/**
 * While a dependency is out: each of these requests answers 503 UNAVAILABLE
 * with Retry-After within `ms`, and GET /health answers 503 naming it DOWN
 * within `healthMs`.
 */
async function assertDown(base: string, dependency: 'redis' | 'database', urls: string[], ms: number, healthMs = ms) {
  for (const url of urls) {
    const res = await timed(url);
    assert.equal(res.status, 503, res.text);
    assert.equal(JSON.parse(res.text).error.code, 'UNAVAILABLE');
    assert.ok(Number(res.retryAfter) >= 1, 'Retry-After');
    assert.ok(res.ms < ms, `took ${res.ms} ms`);
  }
  const health = await timed(`${base}/health`, 'GET');
  assert.equal(health.status, 503);
  assert.equal(JSON.parse(health.text).services_status[dependency], 'DOWN');
  assert.ok(health.ms < healthMs, `health took ${health.ms} ms`);
}

/** The service on a free port, with its own private redis-server. */
async function serviceWithRedis(env: TestEnv, overrides: Record<string, string> = {}) {
  const redisPort = await freePort();
  const redis = await redisOn(redisPort);
  const port = await freePort();
  service({ ...env.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redisPort}`, ...overrides });
  const sale = await serviceReady(port);
  return { redis, redisPort, sale, base: `http://127.0.0.1:${port}` };
}

/** The code a checkout answers (the test fails on any other answer). */
async function checkoutCode(base: string, user: string, item: string) {
  const res = await fetch(`${base}/checkout?user_id=${user}&id=${item}`, { method: 'POST' });
  const body = (await res.json()) as { code?: string };
  assert.equal(res.status, 200, JSON.stringify(body));
  return body.code!;
}

/** A buyer who checks out and immediately purchases; returns the purchase answer. */
async function buy(base: string, user: string, item: string) {
  const co = await fetch(`${base}/checkout?user_id=${user}&id=${item}`, { method: 'POST' });
  const body = (await co.json()) as { code?: string };
  if (!body.code) return { status: co.status, code: undefined };
  const pu = await fetch(`${base}/purchase?code=${body.code}`, { method: 'POST' });
  await pu.text();
  return { status: pu.status, code: body.code };
}

describe('POST /checkout and POST /purchase, with Redis killed and then back empty', () => {
  it('answers fast 503s while Redis is down, then rebuilds the sale from PostgreSQL before it sells again', async () => {
    const env = await newEnv();
    const started = await serviceWithRedis(env);
    const { redisPort, sale, base } = started;
    let redis = started.redis;
    const confirmed: Confirmed[] = [];
    for (const i of [1, 2]) {
      const r = await buy(base, 'full', itemId(sale, i));
      assert.equal(r.status, 200);
      confirmed.push({ code: r.code!, userId: 'full', itemId: itemId(sale, i) });
    }
    const pending = await checkoutCode(base, 'later', itemId(sale, 3));

    await redis.kill();
    await assertDown(
      base,
      'redis',
      [`${base}/checkout?user_id=x&id=${itemId(sale, 4)}`, `${base}/purchase?code=${pending}`],
      1000,
      2000,
    );
    assert.equal((await timed(`${base}/metrics`, 'GET')).status, 200);

    redis = await redisOn(redisPort); // empty: it kept nothing
    await waitFor('recovery', async () => ((await fetch(`${base}/health`)).status === 200 ? true : undefined));
    assert.equal(
      JSON.parse((await timed(`${base}/checkout?user_id=x&id=${itemId(sale, 1)}`)).text).error.code,
      'ITEM_SOLD',
    );
    assert.equal(
      JSON.parse((await timed(`${base}/checkout?user_id=full&id=${itemId(sale, 9)}`)).text).error.code,
      'USER_LIMIT_REACHED',
    );
    const late = await timed(`${base}/purchase?code=${pending}`);
    assert.equal(late.status, 200, 'a code issued before the restart still buys');
    confirmed.push({ code: pending, userId: 'later', itemId: itemId(sale, 3) });

    const { byItem } = await auditSale(env.pg, sale, 2, confirmed);
    await sweep(base, sale, 60, new Set(byItem.keys()));
  });
});

describe('POST /checkout and POST /purchase, with Redis hung (stopped, connection still open)', () => {
  it('answers 503 within the dependency timeout, and after it resumes, a reservation it made too late is given back', async () => {
    const env = await newEnv({ DEPENDENCY_TIMEOUT_MS: '500', RECONCILE_INTERVAL_MS: '1000' });
    const { redis, sale, base } = await serviceWithRedis(env);
    const early = await buy(base, 'early', itemId(sale, 1));
    assert.equal(early.status, 200);
    const stuck = await checkoutCode(base, 'stuck', itemId(sale, 2));

    redis.child.kill('SIGSTOP');
    try {
      // Nothing refuses the connection: every command waits until its deadline.
      await assertDown(
        base,
        'redis',
        [`${base}/purchase?code=${stuck}`, `${base}/checkout?user_id=x&id=${itemId(sale, 3)}`],
        1000,
      );
      const metrics = await timed(`${base}/metrics`, 'GET');
      assert.equal(metrics.status, 200);
      assert.match(metrics.text, /^redis_up 0$/m, 'the connection looks open, but Redis does not answer');
    } finally {
      redis.child.kill('SIGCONT');
    }

    // Redis now runs the purchase it was sent while stopped: item 2 is
    // reserved for a request that was already answered 503, and nobody
    // retries it. The reconciler gives it back, well within 10 s.
    const t0 = Date.now();
    const refused = await timed(`${base}/checkout?user_id=other&id=${itemId(sale, 2)}`);
    assert.equal(JSON.parse(refused.text).error?.code, 'ITEM_SOLD', 'the late reservation should hold item 2 at first');
    const other = await waitFor('item 2 to be sellable again', async () => {
      const r = await buy(base, 'other', itemId(sale, 2));
      return r.status === 200 ? r : undefined;
    });
    assert.ok(Date.now() - t0 < 10_000, `item 2 was unsellable for ${Date.now() - t0} ms`);
    assert.equal((await timed(`${base}/purchase?code=${stuck}`)).status, 409);
    const confirmed = [
      { code: early.code!, userId: 'early', itemId: itemId(sale, 1) },
      { code: other.code!, userId: 'other', itemId: itemId(sale, 2) },
    ];
    const { byItem } = await auditSale(env.pg, sale, 2, confirmed);
    assert.equal(byItem.size, 2);
    const { rows } = await env.pg.query<{ outcome: string }>(
      `SELECT outcome FROM checkout_attempts WHERE sale_id = $1 AND user_id = 'x'`,
      [sale],
    );
    assert.deepEqual(rows, [{ outcome: 'UNAVAILABLE' }], 'the refused checkout is recorded with its outcome');
    await sweep(base, sale, 60, new Set(byItem.keys()));
  });
});

/** A TCP proxy in front of PostgreSQL that the test can cut and restore. */
function pgProxy(port: number) {
  const sockets = new Set<Socket>();
  let server: Server | undefined;
  return {
    up: () =>
      new Promise<void>((resolve) => {
        server = createServer((client) => {
          const upstream = connect(5432, '127.0.0.1');
          for (const s of [client, upstream]) {
            sockets.add(s);
            s.on('error', () => {});
            s.on('close', () => sockets.delete(s));
          }
          client.on('close', () => upstream.destroy());
          upstream.on('close', () => client.destroy());
          client.pipe(upstream).pipe(client);
        });
        server.listen(port, '127.0.0.1', resolve);
      }),
    down: () => {
      server?.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('POST /checkout and POST /purchase, with PostgreSQL cut off', () => {
  it('answers fast 503s, loses nothing confirmed, releases reservations it could not confirm, and recovers by itself', async () => {
    const env = await newEnv();
    const proxyPort = await freePort();
    const proxy = pgProxy(proxyPort);
    await proxy.up();
    const dbName = new URL(env.env.DATABASE_URL!).pathname;
    const port = await freePort();
    service({ ...env.env, PORT: String(port), DATABASE_URL: `postgres://postgres@127.0.0.1:${proxyPort}${dbName}` });
    const sale = await serviceReady(port);
    const base = `http://127.0.0.1:${port}`;
    const before = await buy(base, 'early', itemId(sale, 1));
    assert.equal(before.status, 200);
    const code = await checkoutCode(base, 'stuck', itemId(sale, 2));

    proxy.down();
    await assertDown(
      base,
      'database',
      [`${base}/purchase?code=${code}`, `${base}/checkout?user_id=x&id=${itemId(sale, 3)}`],
      2500,
    );

    await proxy.up();
    await waitFor('recovery', async () => ((await fetch(`${base}/health`)).status === 200 ? true : undefined));
    // The reservation the failed purchase made was given back: someone else can buy item 2.
    const other = await buy(base, 'other', itemId(sale, 2));
    assert.equal(other.status, 200, 'item 2 was left reserved by a purchase PostgreSQL never confirmed');
    assert.equal((await timed(`${base}/purchase?code=${code}`)).status, 409);
    const confirmed = [
      { code: before.code!, userId: 'early', itemId: itemId(sale, 1) },
      { code: other.code!, userId: 'other', itemId: itemId(sale, 2) },
    ];
    const { byItem } = await auditSale(env.pg, sale, 2, confirmed);
    assert.equal(byItem.size, 2);
    await sweep(base, sale, 60, new Set(byItem.keys()));
    proxy.down();
  });
});

describe('POST /checkout and POST /purchase, with PostgreSQL slow to commit (a lock holds their inserts)', () => {
  it('answer 503 within the dependency timeout; the rows sent commit once the lock goes, and the purchase then replays its 200', async () => {
    const env = await newEnv();
    const port = await freePort();
    service({ ...env.env, PORT: String(port) });
    const sale = await serviceReady(port);
    const base = `http://127.0.0.1:${port}`;
    const code = await checkoutCode(base, 'late', itemId(sale, 1));

    // Inserts wait for this lock as they would for a disk that stalls its WAL flushes.
    const holder = await env.pg.connect();
    await holder.query('BEGIN');
    await holder.query('LOCK TABLE checkout_attempts, purchases IN SHARE MODE');
    try {
      const answers = await Promise.all([
        timed(`${base}/checkout?user_id=stalled&id=${itemId(sale, 3)}`),
        timed(`${base}/purchase?code=${code}`),
      ]);
      for (const res of answers) {
        assert.equal(res.status, 503, res.text);
        assert.equal(JSON.parse(res.text).error.code, 'UNAVAILABLE');
        // DEPENDENCY_TIMEOUT_MS is 1000 ms; pg's own query timeout, twice that, must not be what answers.
        assert.ok(res.ms < 1500, `took ${res.ms} ms`);
      }
    } finally {
      await holder.query('COMMIT');
      holder.release();
    }

    // Both rows were sent before their deadlines: they commit once the lock is gone.
    await waitFor('the stalled rows committed', async () => {
      const { rows } = await env.pg.query<{ attempts: string; purchases: string }>(
        `SELECT (SELECT count(*) FROM checkout_attempts WHERE sale_id = $1 AND user_id = 'stalled') AS attempts,
                (SELECT count(*) FROM purchases WHERE code = $2) AS purchases`,
        [sale, code],
      );
      return rows[0]!.attempts === '1' && rows[0]!.purchases === '1' ? true : undefined;
    });
    // The buyer who got the 503 retries: the purchase PostgreSQL committed is answered, not a second one.
    const retry = await timed(`${base}/purchase?code=${code}`);
    assert.equal(retry.status, 200, retry.text);
    assert.equal(JSON.parse(retry.text).item_id, itemId(sale, 1));
    const { byItem } = await auditSale(env.pg, sale, 2, [{ code, userId: 'late', itemId: itemId(sale, 1) }]);
    assert.equal(byItem.size, 1);
    await sweep(base, sale, 60, new Set(byItem.keys()));
  });
});

describe('POST /checkout and POST /purchase on two instances, one killed with SIGKILL under load and restarted', () => {
  it('keeps every 200 in PostgreSQL, and Redis and PostgreSQL agree again with nothing unsellable', async () => {
    const ITEMS = 300;
    const env = await newEnv({
      SALE_ITEMS: String(ITEMS),
      USER_LIMIT: '3',
      RECONCILE_INTERVAL_MS: '1000',
      LOG_LEVEL: 'warn',
    });
    const ports = [await freePort(), await freePort()];
    const start = (port: number) => service({ ...env.env, PORT: String(port) });
    const victim = start(ports[0]!);
    start(ports[1]!);
    const sale = await serviceReady(ports[0]!);
    await serviceReady(ports[1]!);
    const confirmed = new Map<string, Confirmed>();
    // Per port: buyers answered (whatever the status), and buyers who got no answer at all.
    const answered = new Map<number, number>();
    const refused = new Map<number, number>();
    const bump = (m: Map<number, number>, port: number) => m.set(port, (m.get(port) ?? 0) + 1);
    const atLeast = (m: Map<number, number>, port: number, n: number) => async () =>
      (m.get(port) ?? 0) >= n ? true : undefined;
    let stop = false;
    const buyers = Array.from({ length: 100 }, async (_, b) => {
      for (let n = 0; !stop; n++) {
        const port = ports[(b + n) % 2]!;
        const r = await buy(`http://127.0.0.1:${port}`, `k${b}`, itemId(sale, Math.floor(Math.random() * ITEMS))).catch(
          () => undefined,
        );
        bump(r ? answered : refused, port);
        if (r?.status === 200) confirmed.set(r.code!, { code: r.code!, userId: `k${b}`, itemId: '' });
      }
    });
    // Kill the victim once both instances are serving buyers, restart it once
    // its port has refused some, and stop once the restarted one serves them.
    await waitFor(
      'both instances to serve buyers',
      async () => (await atLeast(answered, ports[0]!, 10)()) && atLeast(answered, ports[1]!, 10)(),
    );
    await victim.kill('SIGKILL');
    const servedBefore = answered.get(ports[0]!)!;
    await waitFor('requests to the killed instance to be refused', atLeast(refused, ports[0]!, 10));
    start(ports[0]!);
    await serviceReady(ports[0]!);
    const restartedAt = Date.now();
    await waitFor('the restarted instance to serve buyers', atLeast(answered, ports[0]!, servedBefore + 10));
    stop = true;
    await Promise.all(buyers);

    // Which item each confirmed code bought, from the codes' checkout attempts.
    const { rows } = await env.pg.query<{ code: string; item_id: string }>(
      `SELECT DISTINCT code, item_id FROM checkout_attempts WHERE code = ANY($1)`,
      [[...confirmed.keys()]],
    );
    for (const r of rows) confirmed.get(r.code)!.itemId = r.item_id;
    const { byItem } = await auditSale(env.pg, sale, 3, [...confirmed.values()]);

    const redis = await createClient({ url: env.env.REDIS_URL }).connect();
    const soldKey = `${env.env.REDIS_PREFIX}:{${sale}}:sold`;
    await waitFor(
      'Redis to agree with PostgreSQL',
      async () => {
        const sold = await redis.hGetAll(soldKey);
        const inRedis = Object.entries(sold)
          .filter(([k]) => k !== '|')
          .map(([k, v]) => `${itemId(sale, Number(k))}=${v.split('|')[0]}`)
          .sort();
        const { rows: pg } = await env.pg.query<{ item_id: string; code: string }>(
          'SELECT item_id, code FROM purchases WHERE sale_id = $1',
          [sale],
        );
        const inPg = pg.map((r) => `${r.item_id}=${r.code}`).sort();
        return JSON.stringify(inRedis) === JSON.stringify(inPg) ? true : undefined;
      },
      10_000,
    );
    await redis.close();
    await sweep(`http://127.0.0.1:${ports[0]}`, sale, ITEMS, new Set(byItem.keys()));
    assert.ok(Date.now() - restartedAt < 12_000, 'convergence took too long');
  });
});

describe('start-up against a Redis that may evict keys (REDIS_EVICTION_POLICY_CHECK)', () => {
  it('with REDIS_EVICTION_POLICY_CHECK=refuse, start-up stops with a line naming maxmemory-policy; with warn, it starts and warns', async () => {
    const env = await newEnv();
    const redisPort = await freePort();
    await redisOn(redisPort, '--maxmemory-policy', 'allkeys-lru');
    const common = { ...env.env, REDIS_URL: `redis://127.0.0.1:${redisPort}` };
    const refused = service({ ...common, PORT: String(await freePort()), REDIS_EVICTION_POLICY_CHECK: 'refuse' });
    assert.notEqual(await refused.exited, 0);
    assert.match(refused.output(), /start-up failed: Redis maxmemory-policy is \\"allkeys-lru\\"/);
    const port = await freePort();
    const warned = service({ ...common, PORT: String(port), REDIS_EVICTION_POLICY_CHECK: 'warn' });
    await serviceReady(port);
    assert.match(warned.output(), /Redis maxmemory-policy is \\"allkeys-lru\\".*set it to noeviction/);
  });
});

describe('GET /sales/{id}/items, past MAX_IN_FLIGHT (load shedding)', () => {
  let env: TestEnv;
  before(async () => {
    env = await newEnv({ SALE_ITEMS: '1000', MAX_IN_FLIGHT: '1', LOG_LEVEL: 'silent' });
  });

  it('past MAX_IN_FLIGHT requests are shed with 503 UNAVAILABLE in the error shape, and counted', async () => {
    const app = await env.app();
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    const sale = ((await (await fetch(`${base}/sales/active`)).json()) as { id: string }).id;
    // Pages of 1,000 items keep each request busy long enough for the next ones to overlap.
    const answers = await Promise.all(
      Array.from({ length: 60 }, () => fetch(`${base}/sales/${sale}/items?limit=1000`)),
    );
    const shed = answers.filter((r) => r.status === 503);
    assert.ok(shed.length > 0, 'nothing was shed');
    assert.ok(
      answers.some((r) => r.status === 200),
      'everything was shed',
    );
    for (const r of shed) {
      assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'UNAVAILABLE');
      assert.equal(r.headers.get('retry-after'), '1');
    }
    const metric = await app.deps.metrics.registry.getSingleMetric('http_requests_shed_total')!.get();
    assert.equal(metric.values.find((v) => v.labels.reason === 'in_flight')?.value, shed.length);
  });
});
