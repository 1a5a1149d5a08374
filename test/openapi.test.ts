import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';

import { testEnv, type TestEnv } from './helpers.js';

const committed = new URL('../../docs/openapi.json', import.meta.url);

describe('GET /openapi.json', () => {
  let env: TestEnv;
  before(async () => {
    // The documented copy describes the default hourly sale of 10,000 items.
    env = await testEnv({ SALE_ITEMS: '10000', SALE_DURATION: '3600' });
  });
  after(() => env.close());

  it('serves the OpenAPI document, and docs/openapi.json is that document (UPDATE_OPENAPI=1 rewrites it)', async () => {
    const app = await env.app();
    const res = await app.inject('/openapi.json');
    assert.equal(res.statusCode, 200);
    const served = `${JSON.stringify(res.json(), null, 2)}\n`;
    assert.ok(Object.keys(res.json<{ paths: object }>().paths).includes('/checkout'));
    if (process.env.UPDATE_OPENAPI === '1') await writeFile(committed, served);
    assert.equal(await readFile(committed, 'utf8'), served, 'docs/openapi.json is stale: run npm run openapi');
  });
});
