/**
 * The Lua scripts, run directly against Redis through their typed entry
 * points (src/redis/scripts.ts): each contract header's promises, one by one.
 */
import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { MAX_CHECKOUTS_PER_CALL } from '../src/redis/checkouts.js';
import { queueKeys, saleKeys, type SaleKeys } from '../src/redis/keys.js';
import { testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

describe('Lua scripts, run directly against Redis', () => {
  let env: TestEnv;
  let app: App;
  let keys: SaleKeys;
  const sale = '2000010100';
  const scripts = () => app.deps.redis.scripts;
  const hash = (key: string) => app.deps.redis.command<string[]>('hgetall', ['HGETALL', key]);
  const off = { ownRate: 0, ownBurst: 1, ipRate: 0, ipBurst: 1 };
  const checkout = (user: string, index: number, newCode = `${sale}-${user}${index}`, limits = off) =>
    scripts().checkout({ keys, userId: user, index, ip: 'ip', newCode, userLimit: 2, now: 1_000_000, limits });
  const purchase = (code: string, token = 'tok', bucket = { rate: 0, charge: true }, buyer?: string) =>
    scripts().purchase({
      keys,
      code,
      ip: 'ip',
      userLimit: 2,
      token,
      lockTtlMs: 3000,
      now: 1000,
      limits: { ...off, ownRate: bucket.rate },
      charge: bucket.charge,
      buyer,
    });
  const reserved = { status: 'reserved', userId: 'u', index: 1, slot: 1, at: 1000 } as const;

  before(async () => {
    env = await testEnv();
    app = await env.app();
    // The service starts after waiting DEPENDENCY_TIMEOUT_MS for Redis and connects later if it must; these
    // tests call the scripts directly, without its retries, so they wait for the connection (a loaded host once
    // took longer, and every test here failed with 503 UNAVAILABLE).
    await waitFor('Redis connected', async () => app.deps.redis.isReady() || undefined);
  });
  beforeEach(async () => {
    keys = saleKeys(env.config.REDIS_PREFIX, `${sale}${Math.random().toString(36).slice(2, 8)}`);
    await app.deps.redis.markLoaded(keys, Date.now() + 60_000);
  });
  after(() => env.close());

  it('checkout-5+2n: answers not ready, to every checkout of the call, while the sale is not loaded', async () => {
    await app.deps.redis.command('del', ['DEL', keys.ready]);
    assert.deepEqual(await Promise.all([checkout('u', 1), checkout('v', 2)]), [
      { status: 'not_ready' },
      { status: 'not_ready' },
    ]);
  });

  it('checkout-5+2n and purchase-7: state loaded into another Redis server (an old snapshot, a promoted replica) is not ready', async () => {
    await app.deps.redis.command('set', ['SET', keys.ready, 'run-id-of-a-server-that-is-gone']);
    assert.deepEqual(await checkout('u', 1), { status: 'not_ready' });
    assert.deepEqual(await purchase('c1'), { status: 'not_ready' });
    assert.equal(await app.deps.redis.loaded(keys), false);
  });

  it('checkout-5+2n: creates a code once, then returns the same one', async () => {
    assert.deepEqual(await checkout('u', 1, 'first'), { status: 'ok', code: 'first' });
    assert.deepEqual(await checkout('u', 1, 'second'), { status: 'ok', code: 'first' });
    assert.deepEqual(await hash(keys.owners), ['first', 'u|1']);
  });

  /** Script calls made so far, from the service's redis_command_duration_seconds. */
  const checkoutCalls = async () => {
    const text = (await app.inject('/metrics')).body;
    return Number(/^redis_command_duration_seconds_count\{command="checkout"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };

  it('checkout-5+2n: the checkouts of one turn of the event loop share one call, each decided as if alone, in order', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    const calls = await checkoutCalls();
    const answers = await Promise.all([
      checkout('v', 1, 'v1'),
      checkout('u', 1, 'new'),
      checkout('w', 2, 'w2'),
      checkout('x', 2, 'x2'),
      checkout('w', 2, 'again'),
    ]);
    assert.deepEqual(answers, [
      { status: 'item_sold' },
      { status: 'ok', code: 'c1' },
      { status: 'ok', code: 'w2' },
      { status: 'ok', code: 'x2' },
      { status: 'ok', code: 'w2' },
    ]);
    assert.equal((await checkoutCalls()) - calls, 1);
    assert.deepEqual(await hash(keys.owners), ['c1', 'u|1', 'w2', 'w|2', 'x2', 'x|2']);
  });

  it('checkout-5+2n: in one call, each checkout takes its own tokens in turn', async () => {
    const limits = { ownRate: 1, ownBurst: 2, ipRate: 0, ipBurst: 1 };
    const answers = await Promise.all([1, 2, 3].map((i) => checkout('r', i, `r${i}`, limits)));
    assert.deepEqual(
      answers.map((a) => a.status),
      ['ok', 'ok', 'rate_limited'],
    );
  });

  it('checkout-5+2n: checkouts of one turn with other limits go in a call of their own', async () => {
    const calls = await checkoutCalls();
    const strict = { ownRate: 1, ownBurst: 1, ipRate: 0, ipBurst: 1 };
    const answers = await Promise.all([
      checkout('s', 1, 's1', strict),
      checkout('s', 2, 's2', strict),
      checkout('t', 1, 't1'),
      checkout('t', 2, 't2'),
    ]);
    assert.deepEqual(
      answers.map((a) => a.status),
      ['ok', 'rate_limited', 'ok', 'ok'],
    );
    assert.equal((await checkoutCalls()) - calls, 2);
  });

  it(`checkout-5+2n: more than ${MAX_CHECKOUTS_PER_CALL} checkouts in one turn take several calls, every one answered`, async () => {
    const calls = await checkoutCalls();
    const n = 2 * MAX_CHECKOUTS_PER_CALL + 1;
    const answers = await Promise.all(Array.from({ length: n }, (_, i) => checkout(`b${i}`, i, `b${i}`)));
    assert.deepEqual(
      answers,
      Array.from({ length: n }, (_, i) => ({ status: 'ok', code: `b${i}` })),
    );
    assert.equal((await checkoutCalls()) - calls, 3);
  });

  it('purchase-7: reserves the lowest free slot, holds the lock, and a second call for the code is refused while locked', async () => {
    await checkout('u', 1, 'c1');
    assert.deepEqual(await purchase('c1'), { ...reserved, fresh: true });
    assert.deepEqual(await purchase('c1', 'other'), { status: 'locked' });
    assert.equal(await app.deps.redis.command('get', ['GET', keys.purchaseLock('c1')]), 'tok');
  });

  it('purchase-7: a request calling again (waiting for the lock) spends no token; a new request does', async () => {
    await checkout('u', 1, 'c1');
    assert.equal((await purchase('c1', 'tok', { rate: 1, charge: true })).status, 'reserved'); // burst 1: one token
    assert.deepEqual(await purchase('c1', 'waiter', { rate: 1, charge: false }), { status: 'locked' });
    assert.deepEqual(await purchase('c1', 'waiter', { rate: 1, charge: false }), { status: 'locked' });
    assert.equal((await purchase('c1', 'another', { rate: 1, charge: true })).status, 'rate_limited');
  });

  it('checkout-5+2n and purchase-7: a sold item is ITEM_SOLD for others, but its buyer gets the code back', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    assert.deepEqual(await checkout('v', 1), { status: 'item_sold' });
    assert.deepEqual(await checkout('u', 1, 'new'), { status: 'ok', code: 'c1' });
    await checkout('v', 1, 'cv'); // refused: no code is created for v
    assert.deepEqual(await hash(keys.owners), ['c1', 'u|1']);
  });

  it('purchase-7: a user at the limit gets user_full and the lock is not kept', async () => {
    for (const i of [1, 2]) {
      await checkout('u', i, `c${i}`);
      await purchase(`c${i}`, `t${i}`);
    }
    assert.deepEqual(await checkout('u', 3), { status: 'user_full' });
    await app.deps.redis.command('hset', ['HSET', keys.owners, 'c3', 'u|3']);
    assert.deepEqual(await purchase('c3'), { status: 'user_full' });
    assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock('c3')]), 0);
  });

  it('purchase-7: an unknown code is unknown_code; an item sold to another code is item_sold with its index', async () => {
    assert.deepEqual(await purchase('nobody'), { status: 'unknown_code' });
    await checkout('u', 1, 'c1');
    await purchase('c1');
    await app.deps.redis.command('hset', ['HSET', keys.owners, 'c2', 'v|1']);
    assert.deepEqual(await purchase('c2', 'tok2'), { status: 'item_sold', index: 1 });
  });

  it('purchase-7: replaying a held reservation returns it unchanged, not fresh', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    await scripts().unlock(keys.purchaseLock('c1'), 'tok');
    assert.deepEqual(await purchase('c1', 'tok2'), { ...reserved, fresh: false });
  });

  it("purchase-7: a buyer other than the code's owner is not_owner: nothing locked or reserved, the code's bucket untouched", async () => {
    await checkout('u', 1, 'c1');
    const exists = (key: string) => app.deps.redis.command('exists', ['EXISTS', key]);
    assert.deepEqual(await purchase('c1', 'tok', { rate: 1, charge: true }, 'v'), { status: 'not_owner' });
    assert.equal(await exists(keys.purchaseLock('c1')), 0);
    assert.equal(await exists(keys.codeBucket('c1')), 0, 'knowing a code does not rate-limit its owner');
    assert.deepEqual(await hash(keys.sold), []);
    assert.deepEqual(await hash(keys.users), []);
    assert.deepEqual(await purchase('nobody', 'tok', undefined, 'v'), { status: 'unknown_code' });
    // burst 1: the owner's one token is still there
    assert.deepEqual(await purchase('c1', 'tok', { rate: 1, charge: true }, 'u'), { ...reserved, fresh: true });
  });

  it("purchase-7: a buyer other than the code's owner is charged to the client IP's bucket", async () => {
    await checkout('u', 1, 'c1');
    const byIp = (buyer: string) =>
      scripts().purchase({
        keys,
        code: 'c1',
        ip: 'ip',
        userLimit: 2,
        token: 'tok',
        lockTtlMs: 3000,
        now: 1000,
        limits: { ...off, ipRate: 1, ipBurst: 1 },
        charge: true,
        buyer,
      });
    assert.deepEqual(await byIp('v'), { status: 'not_owner' });
    assert.equal((await byIp('v')).status, 'rate_limited');
  });

  it('release-3: gives back only its own reservation, and unlocks only with the owner token', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    const release = (code: string, token: string) =>
      scripts().release({ keys, code, userId: 'u', index: 1, slot: 1, token });
    assert.equal(await release('c2', 'tok'), false, 'another code does not give back c1');
    assert.deepEqual(await hash(keys.sold), ['1', 'c1|1|1000']);
    assert.equal(await release('c1', 'not-the-owner'), true);
    assert.deepEqual(await hash(keys.sold), []);
    assert.deepEqual(await hash(keys.users), []);
    assert.equal(
      await app.deps.redis.command('get', ['GET', keys.purchaseLock('c1')]),
      'tok',
      'only its owner unlocks',
    );
    await app.deps.redis.command('set', ['SET', keys.purchaseLock('c2'), 'tok']);
    assert.equal(await release('c2', 'tok'), false);
    assert.equal(
      await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock('c2')]),
      0,
      'the owner token unlocks',
    );
  });

  it('unlock-1: a stranger cannot release a lock', async () => {
    await app.deps.redis.command('set', ['SET', keys.purchaseLock('c'), 'mine']);
    assert.equal(await scripts().unlock(keys.purchaseLock('c'), 'yours'), false);
    assert.equal(await scripts().unlock(keys.purchaseLock('c'), 'mine'), true);
  });

  it('unlock-1 with a message: publishes it whoever holds the lock; only the owner releases it', async () => {
    const channel = `${env.config.REDIS_PREFIX}:test-sold`;
    const heard: string[] = [];
    const listener = app.deps.redis.client.duplicate();
    await listener.connect();
    try {
      await listener.subscribe(channel, (message) => heard.push(message));
      await app.deps.redis.command('set', ['SET', keys.purchaseLock('c'), 'mine']);
      assert.equal(await scripts().unlock(keys.purchaseLock('c'), 'yours', { channel, message: 'first' }), false);
      assert.equal(await app.deps.redis.command('get', ['GET', keys.purchaseLock('c')]), 'mine', 'a stranger');
      assert.equal(await scripts().unlock(keys.purchaseLock('c'), 'mine', { channel, message: 'second' }), true);
      assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock('c')]), 0, 'the owner');
      await waitFor('both messages', async () => (heard.length === 2 ? true : undefined));
      assert.deepEqual(heard, ['first', 'second']);
    } finally {
      await listener.close();
    }
  });

  it('reclaim-4: never while the code is locked or the value changed; otherwise frees item and slot', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    assert.equal(await scripts().reclaim(keys, 1, 'c1|1|1000'), false, 'locked');
    await scripts().unlock(keys.purchaseLock('c1'), 'tok');
    assert.equal(await scripts().reclaim(keys, 1, 'c1|1|999'), false, 'changed');
    assert.equal(await scripts().reclaim(keys, 1, 'c1|1|1000'), true);
    assert.deepEqual(await hash(keys.sold), []);
    assert.deepEqual(await hash(keys.users), []);
  });

  it('sync-2: writes PostgreSQL truth for an item and a user', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    const holds = await scripts().sync({
      keys,
      index: 7,
      sold: { code: 'c7', slot: 2, at: 5 },
      userId: 'u',
      userLimit: 2,
      holds: [{ slot: 2, index: 7 }],
    });
    assert.equal(holds, 1);
    assert.deepEqual(await hash(keys.sold), ['1', 'c1|1|1000', '7', 'c7|2|5']);
    assert.deepEqual(await hash(keys.users), ['u', '1', 'u|2', '7']);
  });

  it('queue-done-1: a buyer is added once, at their exact place in the order, and the set expires with the room', async () => {
    const q = queueKeys(env.config.REDIS_PREFIX, `${sale}${Math.random().toString(36).slice(2, 8)}`);
    const expireAt = Date.now() + 60_000;
    const done = (userId: string, order: number) => scripts().queueDone({ keys: q, userId, order, expireAt });
    assert.equal(await done('u', 2 ** 48 + 5), true);
    assert.equal(await done('u', 2 ** 48 + 5), false, 'a further purchase by the same person');
    assert.equal(await done('v', 2 ** 48 - 1), true);
    const scores = await app.deps.redis.command<string[]>('zrange', ['ZRANGE', q.done, '0', '-1', 'WITHSCORES']);
    assert.deepEqual(scores, ['v', '281474976710655', 'u', '281474976710661']);
    assert.equal(await app.deps.redis.command('pexpiretime', ['PEXPIRETIME', q.done]), expireAt);
  });

  it('bucket (in checkout-5+2n): a user over the burst is rate_limited with the wait in ms', async () => {
    const limited = () => checkout('r', 1, 'code', { ownRate: 1, ownBurst: 2, ipRate: 0, ipBurst: 1 });
    assert.equal((await limited()).status, 'ok');
    assert.equal((await limited()).status, 'ok');
    const refused = await limited();
    assert.equal(refused.status, 'rate_limited');
    assert.ok('retryMs' in refused && refused.retryMs > 0 && refused.retryMs <= 1000);
  });
});

describe("the scripts' keys (src/redis/keys.ts)", () => {
  it("saleKeys: asked for sales and prefixes in turn, each answer is that sale's (built once, not per request)", () => {
    const asked: [string, string][] = [
      ['a', '2000010100'],
      ['a', '2000010101'],
      ['b', '2000010101'],
      ['a', '2000010100'],
    ];
    for (const [prefix, sale] of asked) {
      const keys = saleKeys(prefix, sale);
      assert.equal(keys.ready, `${prefix}:{${sale}}:ready`);
      assert.equal(keys.purchaseLock('c'), `${prefix}:{${sale}}:lock:code:c`);
    }
  });
});
