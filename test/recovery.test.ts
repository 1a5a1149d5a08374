/**
 * What a dependency comes back with, with real processes. A Redis that
 * returns with old data (an RDB snapshot, an AOF that lost its tail, a
 * replica promoted before it caught up) must not be trusted: the service
 * rebuilds the sale from PostgreSQL before its first answer, so sold items
 * stay sold, full users stay full, and a code once issued is never replaced.
 * And a PostgreSQL that freezes (connections open, nothing answered) gets
 * 503s within DEPENDENCY_TIMEOUT_MS, not after queueing behind each other.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { createClient } from 'redis';

import { auditSale, sweep, type Confirmed } from './audit.js';
import { itemId, testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startRedis, startService, waitFor, type Proc } from './process.js';

const USER_LIMIT = 3;
const ITEMS = 40;
const procs: Proc[] = [];
const envs: TestEnv[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(procs.map((p) => p.kill()));
  await Promise.all(envs.map((e) => e.close()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function redisOn(port: number, ...args: string[]) {
  const proc = await startRedis(port, ...args);
  procs.push(proc);
  return proc;
}

/** A sale in progress on one service, and the client's view of it. */
async function saleOn(redisPort: number, overrides: Record<string, string> = {}) {
  const env = await testEnv({
    SALE_ITEMS: String(ITEMS),
    USER_LIMIT: String(USER_LIMIT),
    RATE_LIMIT_IP_PER_SEC: '0',
    RECONCILE_INTERVAL_MS: '3600000', // only the rebuild may repair, so the test sees what it did
    ...overrides,
  });
  envs.push(env);
  const port = await freePort();
  procs.push(startService({ ...env.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redisPort}` }));
  const sale = await serviceReady(port);
  const base = `http://127.0.0.1:${port}`;
  const item = (i: number) => itemId(sale, i);
  const post = async (path: string) => {
    const res = await fetch(`${base}${path}`, { method: 'POST' });
    return { status: res.status, body: (await res.json()) as { code?: string; error?: { code: string } } };
  };
  const checkout = (user: string, i: number) => post(`/checkout?user_id=${user}&id=${item(i)}`);
  const confirmed: Confirmed[] = [];
  const codes = new Map<string, string>();
  /** Checks out (and remembers the code), and buys unless told not to. */
  async function take(user: string, i: number, buy = true) {
    const co = await checkout(user, i);
    assert.equal(co.status, 200, JSON.stringify(co.body));
    codes.set(`${user}|${i}`, co.body.code!);
    if (!buy) return;
    const pu = await post(`/purchase?code=${co.body.code}`);
    assert.equal(pu.status, 200, JSON.stringify(pu.body));
    confirmed.push({ code: co.body.code!, userId: user, itemId: item(i) });
  }
  return { env, base, sale, item, post, checkout, take, confirmed, codes };
}

type Sale = Awaited<ReturnType<typeof saleOn>>;

/** Before the snapshot: a few purchases and checkouts. After it: more, and one user reaches the limit. */
async function sellAroundSnapshot(s: Sale, snapshot: () => Promise<void>) {
  for (let i = 0; i < 4; i++) await s.take(`early${i}`, i);
  for (let i = 10; i < 13; i++) await s.take(`looker${i}`, i, false);
  await snapshot();
  for (let i = 4; i < 7; i++) await s.take(`late${i}`, i);
  for (let i = 20; i < 20 + USER_LIMIT; i++) await s.take('full', i);
  for (let i = 13; i < 16; i++) await s.take(`looker${i}`, i, false);
}

/** The moment /health says 200 again, nothing sold or issued after the snapshot is forgotten. */
async function assertNothingForgotten(s: Sale) {
  await waitFor('health 200', async () => ((await fetch(`${s.base}/health`)).status === 200 ? true : undefined));
  const [sold, full, ...again] = await Promise.all([
    Promise.all([4, 5, 6, 20, 21, 22].map((i) => s.checkout('someone-else', i))),
    s.checkout('full', 30),
    ...[10, 11, 12, 13, 14, 15].map((i) => s.checkout(`looker${i}`, i)),
  ]);
  for (const r of sold) assert.equal(r.body.error?.code, 'ITEM_SOLD', JSON.stringify(r.body));
  assert.equal(full.body.error?.code, 'USER_LIMIT_REACHED', JSON.stringify(full.body));
  again.forEach((r, n) => assert.equal(r.body.code, s.codes.get(`looker${10 + n}|${10 + n}`), 'a code was replaced'));
  // A code issued after the snapshot still buys.
  const late = await s.post(`/purchase?code=${s.codes.get('looker15|15')}`);
  assert.equal(late.status, 200, JSON.stringify(late.body));
  s.confirmed.push({ code: s.codes.get('looker15|15')!, userId: 'looker15', itemId: s.item(15) });

  const { rows } = await s.env.pg.query(
    `SELECT user_id, item_id FROM checkout_attempts WHERE sale_id = $1 AND code IS NOT NULL
     GROUP BY user_id, item_id HAVING count(DISTINCT code) > 1`,
    [s.sale],
  );
  assert.deepEqual(rows, [], 'one user and item hold two codes');
  const { byItem } = await auditSale(s.env.pg, s.sale, USER_LIMIT, s.confirmed);
  await sweep(s.base, s.sale, ITEMS, new Set(byItem.keys()));
}

async function redisCli(port: number, ...command: string[]) {
  const client = await createClient({ url: `redis://127.0.0.1:${port}` }).connect();
  try {
    return await client.sendCommand(command);
  } finally {
    client.destroy();
  }
}

function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'flashsale-redis-'));
  dirs.push(dir);
  return dir;
}

describe('Redis comes back with old data', () => {
  it('from an old RDB snapshot: sold items stay sold, full users stay full, and no code is reissued', async () => {
    const dir = tempDir();
    const port = await freePort();
    const redis = await redisOn(port, '--dir', dir);
    const s = await saleOn(port);
    await sellAroundSnapshot(s, async () => void (await redisCli(port, 'SAVE')));
    await redis.kill('SIGKILL');
    await redisOn(port, '--dir', dir); // loads dump.rdb: the state as of SAVE, `ready` key included
    await assertNothingForgotten(s);
  });

  it('from an AOF that lost its tail: the same', async () => {
    const dir = tempDir();
    const copy = tempDir();
    const port = await freePort();
    const aof = ['--dir', dir, '--appendonly', 'yes', '--appendfsync', 'always'];
    const redis = await redisOn(port, ...aof);
    const s = await saleOn(port);
    await sellAroundSnapshot(s, async () => cpSync(join(dir, 'appendonlydir'), copy, { recursive: true }));
    await redis.kill('SIGKILL');
    rmSync(join(dir, 'appendonlydir'), { recursive: true });
    cpSync(copy, join(dir, 'appendonlydir'), { recursive: true });
    await redisOn(port, ...aof);
    await assertNothingForgotten(s);
  });

  it('from a replica that lagged behind and was promoted: the same', async () => {
    const port = await freePort();
    const replicaPort = await freePort();
    const primary = await redisOn(port, '--dir', tempDir());
    const s = await saleOn(port);
    await sellAroundSnapshot(s, async () => {
      await redisOn(replicaPort, '--dir', tempDir(), '--replicaof', '127.0.0.1', String(port));
      await waitFor('the replica in sync', async () =>
        String(await redisCli(replicaPort, 'INFO', 'replication')).includes('master_link_status:up') ? true : undefined,
      );
      await redisCli(replicaPort, 'REPLICAOF', 'NO', 'ONE'); // from here on it lags
    });
    await primary.kill('SIGKILL');
    // The service's address now serves a copy of the lagging replica, promoted.
    await redisOn(port, '--dir', tempDir(), '--replicaof', '127.0.0.1', String(replicaPort));
    await waitFor('the copy in sync', async () =>
      String(await redisCli(port, 'INFO', 'replication')).includes('master_link_status:up') ? true : undefined,
    );
    await redisCli(port, 'REPLICAOF', 'NO', 'ONE');
    await assertNothingForgotten(s);
  });
});

/** A TCP proxy in front of PostgreSQL that can freeze: connections stay open, nothing passes. */
async function freezingProxy(port: number) {
  const sockets = new Set<Socket>();
  let frozen = false;
  const server = createServer((client) => {
    const upstream = connect(5432, '127.0.0.1');
    for (const [from, to] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(from);
      from.on('error', () => {});
      from.on('close', () => to.destroy());
      from.on('data', (chunk) => frozen || to.write(chunk));
    }
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    freeze: () => void (frozen = true),
    close() {
      server.close();
      for (const s of sockets) s.destroy();
    },
  };
}

describe('PostgreSQL freezes', () => {
  it('checkouts and purchases answer 503 within DEPENDENCY_TIMEOUT_MS (plus the sweep), not queued behind each other', async () => {
    const proxyPort = await freePort();
    const proxy = await freezingProxy(proxyPort);
    const redisPort = await freePort();
    await redisOn(redisPort);
    const env = await testEnv({ SALE_ITEMS: String(ITEMS), DEPENDENCY_TIMEOUT_MS: '1000', RATE_LIMIT_IP_PER_SEC: '0' });
    envs.push(env);
    const port = await freePort();
    const dbName = new URL(env.env.DATABASE_URL!).pathname;
    procs.push(
      startService({
        ...env.env,
        PORT: String(port),
        REDIS_URL: `redis://127.0.0.1:${redisPort}`,
        DATABASE_URL: `postgres://postgres@127.0.0.1:${proxyPort}${dbName}`,
      }),
    );
    const sale = await serviceReady(port);
    const item = (i: number) => itemId(sale, i);
    const codes = await Promise.all(
      [1, 2, 3].map(async (i) => {
        const res = await fetch(`http://127.0.0.1:${port}/checkout?user_id=u${i}&id=${item(i)}`, { method: 'POST' });
        return ((await res.json()) as { code: string }).code;
      }),
    );

    proxy.freeze();
    // Waves of requests, each arriving while the one before still waits on the frozen server.
    const started = Date.now();
    const answers = await Promise.all(
      Array.from({ length: 30 }, async (_, n) => {
        await new Promise((r) => setTimeout(r, (n % 6) * 150));
        const path = n % 2 ? `/purchase?code=${codes[n % 3]}` : `/checkout?user_id=w${n}&id=${item(10 + n)}`;
        const t0 = Date.now();
        const res = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST' });
        return {
          status: res.status,
          ms: Date.now() - t0,
          code: ((await res.json()) as { error?: { code: string } }).error?.code,
        };
      }),
    );
    proxy.close();
    for (const a of answers) {
      assert.equal(a.status, 503);
      assert.equal(a.code, 'UNAVAILABLE');
    }
    const slowest = Math.max(...answers.map((a) => a.ms));
    assert.ok(slowest <= 1000 + 300, `a request waited ${slowest} ms (test ran ${Date.now() - started} ms)`);
  });
});
