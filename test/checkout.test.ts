import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { json, testEnv, type TestEnv } from './helpers.js';

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
    assert.equal(body.expires_at, new Date(app.deps.ids.windowOf(sale)!.endsAt).toISOString());
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
