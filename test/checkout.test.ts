import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

describe('POST /checkout', () => {
  let env: TestEnv;
  let app: App;
  let sale: string;

  before(async () => {
    env = await testEnv();
    app = await env.app();
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  const checkout = (user: string, id: string) =>
    app.inject({ method: 'POST', url: `/checkout?user_id=${encodeURIComponent(user)}&id=${encodeURIComponent(id)}` });

  it('for an item of the active sale, answers 200 with a code bound to the user, item and sale', async () => {
    const res = await checkout('alice', `${sale}-00001`);
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'] as string, /^application\/json/);
    const body = json(res);
    assert.deepEqual(Object.keys(body).sort(), ['code', 'expires_at', 'item_id', 'sale_id', 'user_id']);
    assert.equal(body.sale_id, sale);
    assert.equal(body.item_id, `${sale}-00001`);
    assert.equal(body.user_id, 'alice');
    assert.match(body.code as string, new RegExp(`^${sale}-[0-9a-f]{32}$`));
    assert.equal(body.expires_at, new Date(app.deps.ids.windowOfSale(sale)!.endsAt).toISOString());
  });

  it('again for the same user and item, returns the same code (a refresh burns nothing)', async () => {
    const first = json(await checkout('bob', `${sale}-00002`));
    const second = json(await checkout('bob', `${sale}-00002`));
    assert.equal(second.code, first.code);
    const other = json(await checkout('carol', `${sale}-00002`));
    assert.notEqual(other.code, first.code);
  });

  it('persists every validated attempt with its outcome before answering', async () => {
    await checkout('dave', `${sale}-00003`);
    await checkout('dave', `${sale}-99999`);
    const { rows } = await env.pg.query(
      `SELECT item_id, outcome, code IS NOT NULL AS has_code FROM checkout_attempts WHERE user_id = 'dave' ORDER BY id`,
    );
    assert.deepEqual(rows, [
      { item_id: `${sale}-00003`, outcome: 'OK', has_code: true },
      { item_id: `${sale}-99999`, outcome: 'ITEM_NOT_FOUND', has_code: false },
    ]);
  });
});

describe('POST /checkout of an item PostgreSQL confirmed sold (answered from memory)', () => {
  let env: TestEnv;
  let first: App;
  let sale: string;

  before(async () => {
    env = await testEnv();
    first = await env.app();
    sale = json<{ id: string }>(await first.inject('/sales/active')).id;
  });
  after(() => env.close());

  const post = (app: App, url: string) => app.inject({ method: 'POST', url });
  const checkout = (app: App, user: string, index: number) =>
    post(app, `/checkout?user_id=${user}&id=${itemId(sale, index)}`);
  /** Checks an item out and buys it; returns the code. */
  async function buy(app: App, user: string, index: number) {
    const { code } = json<{ code: string }>(await checkout(app, user, index));
    assert.equal((await post(app, `/purchase?code=${code}`)).statusCode, 200);
    return code;
  }
  const scriptRuns = async (app: App) => {
    const text = (await app.inject('/metrics')).body;
    return Number(/^redis_command_duration_seconds_count\{command="checkout"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  };
  const outcomes = async (user: string) =>
    (await env.pg.query(`SELECT outcome, code FROM checkout_attempts WHERE user_id = $1 ORDER BY id`, [user])).rows;

  it('answers 409 ITEM_SOLD to anyone else and the buyer their code, without the script, and records the attempts', async () => {
    const code = await buy(first, 'buyer1', 1);
    const runs = await scriptRuns(first);
    const refused = await checkout(first, 'late1', 1);
    assert.equal(refused.statusCode, 409);
    assert.deepEqual(json(refused), {
      error: { code: 'ITEM_SOLD', message: `item ${itemId(sale, 1)} is already sold` },
    });
    const again = await checkout(first, 'buyer1', 1);
    assert.equal(again.statusCode, 200);
    assert.equal(json(again).code, code);
    assert.equal(await scriptRuns(first), runs);
    assert.deepEqual(await outcomes('late1'), [{ outcome: 'ITEM_SOLD', code: null }]);
    assert.deepEqual(await outcomes('buyer1'), [
      { outcome: 'OK', code },
      { outcome: 'OK', code },
    ]);
  });

  it('POST /purchase again with a code that bought replays the purchase from memory: no script, no PostgreSQL lookup', async () => {
    const second = await env.app();
    await checkout(second, 'warm4', 5); // the second instance now holds the active sale
    const code = await buy(first, 'buyer4', 4);
    const receipt = (await post(first, `/purchase?code=${code}`)).body;
    await waitFor('the purchase to reach the second instance', async () =>
      second.deps.soldCache.purchaseOf(sale, code) ? true : undefined,
    );
    const text = async (app: App) => (await app.inject('/metrics')).body;
    const io = async (app: App) => {
      const metrics = await text(app);
      const count = (pattern: RegExp) => Number(pattern.exec(metrics)?.[1] ?? 0);
      return [
        count(/^redis_command_duration_seconds_count\{command="purchase"\} (\d+)$/m),
        count(/^db_query_duration_seconds_count\{query_type="select",table="purchases"\} (\d+)$/m),
      ];
    };
    for (const app of [first, second]) {
      const before = await io(app);
      const replay = await post(app, `/purchase?code=${code}`);
      assert.equal(replay.statusCode, 200);
      assert.equal(replay.body, receipt);
      assert.deepEqual(await io(app), before);
    }
    assert.match(await text(second), /^purchase_replays_total 1$/m);
  });

  it('learns a purchase another instance committed from its message, and one made before it started from PostgreSQL', async () => {
    const second = await env.app();
    await checkout(second, 'warm2', 3); // the second instance now holds the active sale
    const code = await buy(first, 'buyer2', 2);
    await waitFor('the purchase to reach the second instance', async () =>
      second.deps.soldCache.lookup(sale, 2)?.code === code ? true : undefined,
    );
    const runs = await scriptRuns(second);
    assert.equal((await checkout(second, 'late2', 2)).statusCode, 409);
    assert.equal(await scriptRuns(second), runs);

    const third = await env.app();
    await waitFor('the third instance to load the sold items', async () =>
      third.deps.soldCache.lookup(sale, 2)?.userId === 'buyer2' ? true : undefined,
    );
    assert.equal((await checkout(third, 'late3', 2)).statusCode, 409);
    assert.equal(await scriptRuns(third), 0);
  });
});

describe('POST /checkout and POST /purchase: the group commit writes through named prepared statements', () => {
  let env: TestEnv;
  let app: App;

  before(async () => {
    // One connection: the statements this test lists are on the connection the inserts used.
    env = await testEnv({ DB_POOL_SIZE: '1' });
    app = await env.app();
  });
  after(() => env.close());

  it('prepares each insert once on its connection and runs it for every batch', async () => {
    const sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    const codes: string[] = [];
    for (const user of ['erin', 'frank', 'grace']) {
      const res = await app.inject({ method: 'POST', url: `/checkout?user_id=${user}&id=${sale}-00010` });
      assert.equal(res.statusCode, 200, res.body);
      codes.push(json<{ code: string }>(res).code);
    }
    assert.equal((await app.inject({ method: 'POST', url: `/purchase?code=${codes[0]}` })).statusCode, 200);

    const { rows } = await app.deps.db.query<{ name: string; runs: number }>(
      'select',
      'none',
      'SELECT name, (generic_plans + custom_plans)::int AS runs FROM pg_prepared_statements ORDER BY name',
    );
    // Three checkouts one after the other: three batches of one attempt; one purchase: one batch.
    assert.deepEqual(rows, [
      { name: 'checkout_attempts_insert', runs: 3 },
      { name: 'purchases_insert', runs: 1 },
    ]);
  });
});
