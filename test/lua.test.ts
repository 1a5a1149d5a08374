import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { saleKeys, type SaleKeys } from '../src/redis/keys.js';
import type { ScriptName } from '../src/redis/redis.js';
import { testEnv, type TestEnv } from './helpers.js';

describe('Lua scripts, run directly against Redis', () => {
  let env: TestEnv;
  let app: App;
  let keys: SaleKeys;
  const sale = '2000010100';
  const run = <T>(name: ScriptName, k: string[], args: (string | number)[]) => app.deps.redis.script<T>(name, k, args);
  const hash = (key: string) => app.deps.redis.command<string[]>('hgetall', ['HGETALL', key]);
  const checkout = (user: string, index: number, code = `${sale}-${user}${index}`, limit = 2) =>
    run<[number, string?]>(
      'checkout',
      [keys.ready, keys.sold, keys.users, keys.codes, keys.owners, keys.userBucket(user), keys.ipBucket('ip')],
      [user, index, code, limit, Date.now(), 0, 1, 0, 1],
    );
  const purchase = (code: string, token = 'tok', limit = 2, bucket = { rate: 0, charge: 1 }) =>
    run<(number | string)[]>(
      'purchase',
      [
        keys.ready,
        keys.owners,
        keys.sold,
        keys.users,
        keys.purchaseLock(code),
        keys.codeBucket(code),
        keys.ipBucket('ip'),
      ],
      [code, limit, token, 3000, 1000, bucket.rate, 1, 0, 1, bucket.charge],
    );

  before(async () => {
    env = await testEnv();
    app = await env.app();
  });
  beforeEach(async () => {
    keys = saleKeys(env.config.REDIS_PREFIX, `${sale}${Math.random().toString(36).slice(2, 8)}`);
    await app.deps.redis.command('set', ['SET', keys.ready, '1']);
  });
  after(() => env.close());

  it('checkout-7: answers not ready (-1) while the sale is not loaded', async () => {
    await app.deps.redis.command('del', ['DEL', keys.ready]);
    assert.deepEqual(await checkout('u', 1), [-1]);
  });

  it('checkout-7: creates a code once, then returns the same one', async () => {
    assert.deepEqual(await checkout('u', 1, 'first'), [0, 'first']);
    assert.deepEqual(await checkout('u', 1, 'second'), [0, 'first']);
    assert.deepEqual(await hash(keys.owners), ['first', 'u|1']);
  });

  it('purchase-7: reserves the lowest free slot, holds the lock, and a second call for the code is refused (2) while locked', async () => {
    await checkout('u', 1, 'c1');
    const reply = await purchase('c1');
    assert.deepEqual(reply.slice(0, 4), [0, 'u', '1', 1]);
    assert.equal(reply[5], 1, 'a fresh reservation');
    assert.deepEqual(await purchase('c1', 'other'), [2]);
    assert.equal(await app.deps.redis.command('get', ['GET', keys.purchaseLock('c1')]), 'tok');
  });

  it('purchase-7: a request calling again (waiting for the lock) spends no token; a new request does', async () => {
    await checkout('u', 1, 'c1');
    const limited = { rate: 1, charge: 1 }; // burst 1: one token
    assert.equal((await purchase('c1', 'tok', 2, limited))[0], 0);
    assert.deepEqual(await purchase('c1', 'waiter', 2, { ...limited, charge: 0 }), [2]);
    assert.deepEqual(await purchase('c1', 'waiter', 2, { ...limited, charge: 0 }), [2]);
    assert.equal((await purchase('c1', 'another', 2, limited))[0], 5, 'a new request is RATE_LIMITED (5)');
  });

  it('checkout-7 and purchase-7: a sold item is ITEM_SOLD for others, but its buyer gets the code back', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    assert.deepEqual(await checkout('v', 1), [1]);
    assert.deepEqual(await checkout('u', 1, 'new'), [0, 'c1']);
    await checkout('v', 1, 'cv'); // refused: no code is created for v
    assert.deepEqual(await hash(keys.owners), ['c1', 'u|1']);
  });

  it('purchase-7: a user at the limit gets USER_LIMIT_REACHED (4) and the lock is not kept', async () => {
    for (const i of [1, 2]) {
      await checkout('u', i, `c${i}`);
      await purchase(`c${i}`, `t${i}`);
    }
    assert.deepEqual(await checkout('u', 3), [2]);
    await app.deps.redis.command('hset', ['HSET', keys.owners, 'c3', 'u|3']);
    assert.deepEqual(await purchase('c3'), [4]);
    assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock('c3')]), 0);
  });

  it('purchase-7: replaying a held reservation returns it unchanged, not fresh', async () => {
    await checkout('u', 1, 'c1');
    const first = await purchase('c1');
    await run('unlock', [keys.purchaseLock('c1')], ['tok']);
    const again = await purchase('c1', 'tok2');
    assert.deepEqual(again.slice(0, 5), first.slice(0, 5));
    assert.equal(again[5], 0);
  });

  it('release-3: gives back only its own reservation, and unlocks only with the owner token', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    assert.equal(await run('release', [keys.sold, keys.users, keys.purchaseLock('c1')], ['c2', 'u', 1, 1, 'tok']), 0);
    assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock('c1')]), 0, 'owner token unlocks');
    assert.deepEqual(await hash(keys.sold), ['1', 'c1|1|1000']);
    assert.equal(await run('release', [keys.sold, keys.users, keys.purchaseLock('c1')], ['c1', 'u', 1, 1, 'x']), 1);
    assert.deepEqual(await hash(keys.sold), []);
    assert.deepEqual(await hash(keys.users), []);
  });

  it('unlock-1: a stranger cannot release a lock', async () => {
    await app.deps.redis.command('set', ['SET', keys.purchaseLock('c'), 'mine']);
    assert.equal(await run('unlock', [keys.purchaseLock('c')], ['yours']), 0);
    assert.equal(await run('unlock', [keys.purchaseLock('c')], ['mine']), 1);
  });

  it('reclaim-4: never while the code is locked or the value changed; otherwise frees item and slot', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    const reclaim = (value: string) =>
      run<number>('reclaim', [keys.sold, keys.users, keys.owners, keys.purchaseLock('c1')], [1, value]);
    assert.equal(await reclaim('c1|1|1000'), 0, 'locked');
    await run('unlock', [keys.purchaseLock('c1')], ['tok']);
    assert.equal(await reclaim('c1|1|999'), 0, 'changed');
    assert.equal(await reclaim('c1|1|1000'), 1);
    assert.deepEqual(await hash(keys.sold), []);
    assert.deepEqual(await hash(keys.users), []);
  });

  it('sync-2: writes PostgreSQL truth for an item and a user', async () => {
    await checkout('u', 1, 'c1');
    await purchase('c1');
    const held = await run<number>('sync', [keys.sold, keys.users], [7, 'c7|2|5', 'u', 2, 2, 7]);
    assert.equal(held, 1);
    assert.deepEqual(await hash(keys.sold), ['1', 'c1|1|1000', '7', 'c7|2|5']);
    assert.deepEqual(await hash(keys.users), ['u', '1', 'u|2', '7']);
  });

  it('bucket (in checkout-7): a user over the burst is RATE_LIMITED (3) with the wait in ms', async () => {
    const limited = () =>
      run<number[]>(
        'checkout',
        [keys.ready, keys.sold, keys.users, keys.codes, keys.owners, keys.userBucket('r'), keys.ipBucket('ip')],
        ['r', 1, 'code', 10, 1_000_000, 1, 2, 0, 1],
      );
    assert.equal((await limited())[0], 0);
    assert.equal((await limited())[0], 0);
    const refused = await limited();
    assert.equal(refused[0], 3);
    assert.ok(refused[1]! > 0 && refused[1]! <= 1000);
  });
});
