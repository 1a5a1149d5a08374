import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { saleKeys } from '../src/redis/keys.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';

describe('when Redis is wrong, PostgreSQL constraints decide and Redis is repaired', () => {
  let env: TestEnv;
  let app: App;
  let sale: string;
  const post = (url: string) => app.inject({ method: 'POST', url });
  const buy = async (user: string, index: number) => {
    const item = itemId(sale, index);
    const co = await post(`/checkout?user_id=${user}&id=${item}`);
    assert.equal(co.statusCode, 200, co.body);
    return post(`/purchase?code=${json<{ code: string }>(co).code}`);
  };

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '50', USER_LIMIT: '2' });
    app = await env.app();
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  it('POST /purchase, when Redis forgot the item was sold, answers 409 ITEM_SOLD and puts the sale back into Redis', async () => {
    // The loser checks out before the item is bought: a checkout of an item PostgreSQL
    // confirmed sold is answered from memory, without asking Redis.
    const co = await post(`/checkout?user_id=second&id=${itemId(sale, 5)}`);
    assert.equal((await buy('first', 5)).statusCode, 200);
    const keys = saleKeys(env.config.REDIS_PREFIX, sale);
    const truth = await app.deps.redis.command<string>('hget', ['HGET', keys.sold, '5']);
    await app.deps.redis.command('hdel', ['HDEL', keys.sold, '5']);

    const second = await post(`/purchase?code=${json<{ code: string }>(co).code}`);
    assert.equal(second.statusCode, 409);
    assert.equal(json<{ error: { code: string } }>(second).error.code, 'ITEM_SOLD');
    assert.equal(await app.deps.redis.command('hget', ['HGET', keys.sold, '5']), truth);
    const { rows } = await env.pg.query(`SELECT user_id FROM purchases WHERE item_id = $1`, [itemId(sale, 5)]);
    assert.deepEqual(rows, [{ user_id: 'first' }]);
    // The loser's slot was given back: they can still buy two other items.
    assert.equal((await buy('second', 6)).statusCode, 200);
    assert.equal((await buy('second', 7)).statusCode, 200);
  });

  it('POST /purchase, when Redis forgot a user is at the limit, answers 409 USER_LIMIT_REACHED', async () => {
    assert.equal((await buy('full', 10)).statusCode, 200);
    assert.equal((await buy('full', 11)).statusCode, 200);
    const keys = saleKeys(env.config.REDIS_PREFIX, sale);
    await app.deps.redis.command('hdel', ['HDEL', keys.users, 'full', 'full|1', 'full|2']);

    const third = await buy('full', 12);
    assert.equal(third.statusCode, 409);
    assert.equal(json<{ error: { code: string } }>(third).error.code, 'USER_LIMIT_REACHED');
    const { rows } = await env.pg.query(`SELECT count(*)::int AS n FROM purchases WHERE user_id = 'full'`);
    assert.deepEqual(rows, [{ n: 2 }]);
    assert.equal(await app.deps.redis.command('hget', ['HGET', keys.users, 'full']), '2');
    // Item 12 was given back and sells to someone else.
    assert.equal((await buy('other', 12)).statusCode, 200);
  });

  it('POST /checkout, after Redis lost the whole sale (restart or flush), rebuilds it from PostgreSQL before the next write', async () => {
    assert.equal((await buy('owner', 30)).statusCode, 200);
    assert.equal((await buy('maxed', 31)).statusCode, 200);
    assert.equal((await buy('maxed', 32)).statusCode, 200);
    const keys = saleKeys(env.config.REDIS_PREFIX, sale);
    await app.deps.redis.command('del', ['DEL', keys.ready, keys.sold, keys.users, keys.codes, keys.owners]);
    const again = await post(`/checkout?user_id=third&id=${itemId(sale, 30)}`);
    assert.equal(json<{ error: { code: string } }>(again).error.code, 'ITEM_SOLD');
    const limit = await post(`/checkout?user_id=maxed&id=${itemId(sale, 33)}`);
    assert.equal(json<{ error: { code: string } }>(limit).error.code, 'USER_LIMIT_REACHED');
    assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.ready]), 1);
  });
});
