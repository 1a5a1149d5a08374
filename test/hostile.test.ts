import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';
import type { InjectOptions } from 'fastify';

import type { App } from '../src/app.js';
import { json, testEnv, type TestEnv } from './helpers.js';

type Res = Awaited<ReturnType<App['inject']>>;

function assertClientError(res: Res, what: string) {
  assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${what}: ${res.statusCode} ${res.body}`);
  const body = json<{ error: { code: string; message: string } }>(res);
  assert.equal(typeof body.error.code, 'string', what);
  assert.equal(typeof body.error.message, 'string', what);
  assert.doesNotMatch(res.body, /\bat .+:\d+:\d+|node_modules|SELECT|redis\.call/i, `${what} leaks internals`);
}

describe('hostile input', () => {
  let env: TestEnv;
  let app: App;
  let sale: string;
  const rows = async () =>
    (
      await env.pg.query<{ n: number }>(
        'SELECT (SELECT count(*)::int FROM purchases) + (SELECT count(*)::int FROM checkout_attempts) AS n',
      )
    ).rows[0]!.n;

  before(async () => {
    env = await testEnv({ RATE_LIMIT_USER_PER_SEC: '0', RATE_LIMIT_IP_PER_SEC: '0' });
    app = await env.app();
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  it('a table of hostile requests each gets a 4xx in the error shape and writes nothing', async () => {
    const item = `${sale}-00001`;
    const big = 'x'.repeat(5 * 1024);
    const table: [string, InjectOptions][] = [
      [
        'SQL injection in user_id',
        { method: 'POST', url: `/checkout?user_id=${encodeURIComponent("'; DROP TABLE purchases; --")}&id=${item}` },
      ],
      [
        'SQL injection in id',
        { method: 'POST', url: `/checkout?user_id=u&id=${encodeURIComponent(`${item}' OR 1=1 --`)}` },
      ],
      ['SQL injection in code', { method: 'POST', url: `/purchase?code=${encodeURIComponent("x' OR '1'='1")}` }],
      ['unicode user_id', { method: 'POST', url: `/checkout?user_id=${encodeURIComponent('ユーザー')}&id=${item}` }],
      ['emoji user_id', { method: 'POST', url: `/checkout?user_id=${encodeURIComponent('😀')}&id=${item}` }],
      ['NUL in user_id', { method: 'POST', url: `/checkout?user_id=a%00b&id=${item}` }],
      ['NUL in code', { method: 'POST', url: `/purchase?code=${sale}-%00` }],
      ['duplicated user_id', { method: 'POST', url: `/checkout?user_id=a&user_id=b&id=${item}` }],
      ['array user_id', { method: 'POST', url: `/checkout?user_id[]=a&id=${item}` }],
      ['duplicated code', { method: 'POST', url: `/purchase?code=a&code=b` }],
      ['5 KB user_id', { method: 'POST', url: `/checkout?user_id=${big}&id=${item}` }],
      ['5 KB id', { method: 'POST', url: `/checkout?user_id=u&id=${big}` }],
      ['5 KB code', { method: 'POST', url: `/purchase?code=${big}` }],
      ['5 KB sale id', { method: 'GET', url: `/sales/${big}` }],
      ['5 KB limit', { method: 'GET', url: `/sales/${sale}/items?limit=${'9'.repeat(5000)}` }],
      [
        'hash-tag braces in user_id',
        { method: 'POST', url: `/checkout?user_id=${encodeURIComponent('{x}')}&id=${item}` },
      ],
      [
        'key-space escape in user_id',
        { method: 'POST', url: `/checkout?user_id=${encodeURIComponent('a|1')}&id=${item}` },
      ],
      ['path traversal', { method: 'GET', url: '/items/..%2F..%2Fetc%2Fpasswd/image.svg' }],
      [
        'huge JSON body',
        {
          method: 'POST',
          url: `/checkout?user_id=u&id=${item}`,
          headers: { 'content-type': 'application/json' },
          payload: `{"a":"${'x'.repeat(200_000)}"}`,
        },
      ],
      ['limit as float', { method: 'GET', url: `/sales/${sale}/items?limit=1.5` }],
      ['limit in hex', { method: 'GET', url: `/sales/${sale}/items?limit=0x10` }],
      ['limit in exponent form', { method: 'GET', url: `/sales/${sale}/items?limit=1e3` }],
      ['negative offset', { method: 'GET', url: `/sales/${sale}/items?offset=-1` }],
      ['unknown method', { method: 'PROPFIND' as 'GET', url: '/checkout' }],
      ['very long unknown path', { method: 'GET', url: `/${'a/'.repeat(2000)}` }],
    ];
    const before = await rows();
    for (const [what, request] of table) assertClientError(await app.inject(request), what);
    assert.equal(await rows(), before, 'a hostile request was written to PostgreSQL');
    const { rows: tables } = await env.pg.query(
      `SELECT count(*)::int AS n FROM pg_tables WHERE tablename = 'purchases'`,
    );
    assert.deepEqual(tables, [{ n: 1 }]);
  });

  it('fuzzing: any string as user_id, id, code, offset or limit never gets a 5xx, always the error shape or a success', async () => {
    const ok = (res: Res) => {
      assert.ok(res.statusCode < 500, `${res.statusCode} ${res.body}`);
      const body = json<Record<string, unknown>>(res);
      if (res.statusCode >= 400) assert.equal(typeof (body.error as { code?: unknown }).code, 'string');
    };
    const q = encodeURIComponent;
    await fc.assert(
      fc.asyncProperty(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ maxLength: 40 }), async (a, b) => {
        ok(await app.inject({ method: 'POST', url: `/checkout?user_id=${q(a)}&id=${q(b)}` }));
        ok(await app.inject({ method: 'POST', url: `/checkout?user_id=fuzz&id=${q(`${sale}-${b}`)}` }));
        ok(await app.inject({ method: 'POST', url: `/purchase?code=${q(a)}` }));
        ok(await app.inject({ method: 'GET', url: `/sales/${sale}/items?offset=${q(a)}&limit=${q(b)}` }));
        ok(await app.inject({ method: 'GET', url: `/sales/${q(a)}` }));
      }),
      { numRuns: 150 },
    );
  });
});
