/**
 * AUTH=jwt against a local identity provider (test/idp.ts): the buyer is the
 * token's sub, and every attack the verification exists to stop is refused
 * with 401 UNAUTHENTICATED, a Bearer challenge and a counted reason.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { SignJWT } from 'jose';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { saleKeys } from '../src/redis/keys.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';
import {
  AUDIENCE,
  bearer,
  identityProvider,
  ISSUER,
  jwtEnv,
  newKey,
  sign,
  type IdentityProvider,
  type Key,
} from './idp.js';

const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

async function rejections(app: App, reason: string) {
  const metric = await app.deps.metrics.authRejections.get();
  return metric.values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

describe('POST /checkout and POST /purchase with AUTH=jwt', () => {
  let env: TestEnv;
  let idp: IdentityProvider;
  let k1: Key;
  let app: App;
  let sale: string;
  let next = 0;
  const item = () => itemId(sale, next++);
  const checkout = (headers: Record<string, string>, user?: string) =>
    app.inject({ method: 'POST', url: `/checkout?${user ? `user_id=${user}&` : ''}id=${item()}`, headers });

  before(async () => {
    k1 = await newKey('k1');
    idp = await identityProvider([k1]);
    env = await testEnv({ ...jwtEnv(idp), AUTH_JWKS_COOLDOWN_MS: '0', SALE_DURATION: '3600' });
    app = await env.app();
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(async () => {
    await env.close();
    await idp.close();
  });

  it('a valid token checks out as its sub (user_id optional) and buys', async () => {
    const headers = bearer(await sign(k1, { sub: 'alice' }));
    const res = await checkout(headers);
    assert.equal(res.statusCode, 200, res.body);
    const { code, user_id } = json<{ code: string; user_id: string }>(res);
    assert.equal(user_id, 'alice');
    assert.equal((await checkout(headers, 'alice')).statusCode, 200, 'user_id equal to sub is accepted');
    const bought = await app.inject({ method: 'POST', url: `/purchase?code=${code}`, headers });
    assert.equal(bought.statusCode, 200, bought.body);
    assert.equal(json<{ user_id: string }>(bought).user_id, 'alice');
  });

  it('a user_id other than the token sub answers 403 FORBIDDEN naming user_id, counted', async () => {
    const before = await rejections(app, 'user_mismatch');
    const res = await checkout(bearer(await sign(k1, { sub: 'alice' })), 'mallory');
    assert.equal(res.statusCode, 403);
    assert.deepEqual(json<{ error: { code: string; field: string } }>(res).error.field, 'user_id');
    assert.equal(await rejections(app, 'user_mismatch'), before + 1);
  });

  describe("POST /purchase with another user's code (user B's token, user A's code)", () => {
    const purchase = (code: string, headers: Record<string, string>, on = app) =>
      on.inject({ method: 'POST', url: `/purchase?code=${code}`, headers });
    /** B spends A's code: 403 FORBIDDEN naming `code`, counted once as code_owner. */
    const assertRefused = async (code: string, on = app) => {
      const before = await rejections(on, 'code_owner');
      const res = await purchase(code, bob, on);
      assert.equal(res.statusCode, 403, res.body);
      assert.deepEqual(json<{ error: { code: string; field: string } }>(res).error, {
        code: 'FORBIDDEN',
        message: "the code was checked out by another user than the token's sub",
        field: 'code',
      });
      assert.equal(await rejections(on, 'code_owner'), before + 1);
    };
    const bought = async (code: string) =>
      (await env.pg.query('SELECT 1 FROM purchases WHERE code = $1', [code])).rowCount;
    let alice: Record<string, string>;
    let bob: Record<string, string>;
    before(async () => {
      alice = bearer(await sign(k1, { sub: 'alice' }));
      bob = bearer(await sign(k1, { sub: 'bob' }));
    });

    it('answers 403 FORBIDDEN, counted as code_owner; nothing is bought, and A still buys', async () => {
      const { code } = json<{ code: string }>(await checkout(alice));
      await assertRefused(code);
      assert.equal(await bought(code), 0);
      const keys = saleKeys(env.config.REDIS_PREFIX, sale);
      assert.equal(await app.deps.redis.command('exists', ['EXISTS', keys.purchaseLock(code)]), 0, 'no lock left');
      const res = await purchase(code, alice);
      assert.equal(res.statusCode, 200, res.body);
      assert.equal(json<{ user_id: string }>(res).user_id, 'alice');
    });

    it("answers 403 when A's purchase is already made (no replay of A's purchase to B)", async () => {
      const { code } = json<{ code: string }>(await checkout(alice));
      assert.equal((await purchase(code, alice)).statusCode, 200);
      await assertRefused(code);
    });

    it('answers 403 for a code Redis lost (found in PostgreSQL), without putting it back; A still buys', async () => {
      const { code } = json<{ code: string }>(await checkout(alice));
      const keys = saleKeys(env.config.REDIS_PREFIX, sale);
      await app.deps.redis.command('hdel', ['HDEL', keys.owners, code]);
      await assertRefused(code);
      assert.equal(await app.deps.redis.command('hexists', ['HEXISTS', keys.owners, code]), 0);
      assert.equal(await bought(code), 0);
      assert.equal((await purchase(code, alice)).statusCode, 200);
    });

    it("after the sale ended: 403 for A's bought and unbought codes; A still gets the replay and 410", async () => {
      const clock = offsetClock();
      const later = await env.app({ clock });
      const used = json<{ code: string }>(await checkout(alice)).code;
      const unused = json<{ code: string }>(await checkout(alice)).code;
      const first = await purchase(used, alice);
      assert.equal(first.statusCode, 200, first.body);
      clock.advance(3600 * 1000);
      await assertRefused(used, later);
      await assertRefused(unused, later);
      assert.equal((await purchase(used, alice, later)).body, first.body);
      assert.equal((await purchase(unused, alice, later)).statusCode, 410);
    });
  });

  const attacks: [story: string, reason: string, token: () => Promise<string | undefined>][] = [
    ['no Authorization header', 'missing', async () => undefined],
    ['a token that is not a JWT', 'malformed', async () => 'not-a-jwt'],
    ['an expired token (beyond the clock tolerance)', 'expired', () => sign(k1, { sub: 'a', exp: now() - 120 })],
    ['a token not yet valid (nbf ahead)', 'not_yet_valid', () => sign(k1, { sub: 'a', nbf: now() + 120 })],
    ['a token of another issuer', 'issuer', () => sign(k1, { sub: 'a', iss: 'https://evil.test/' })],
    ['a token for another audience', 'audience', () => sign(k1, { sub: 'a', aud: 'other-service' })],
    ['a token without exp', 'claims', () => sign(k1, { sub: 'a', exp: undefined })],
    ['a token without sub', 'claims', () => sign(k1, {})],
    ['a sub that is not a valid user id', 'subject', () => sign(k1, { sub: 'auth0|1234' })],
    [
      'a token signed by a key the provider never published (unknown kid)',
      'unknown_key',
      async () => sign(await newKey('stranger'), { sub: 'a' }),
    ],
    [
      'a token signed by another key under a published kid',
      'signature',
      async () => sign({ ...(await newKey('k1')) }, { sub: 'a' }),
    ],
    [
      'alg: none',
      'algorithm',
      async () =>
        `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'a', iss: ISSUER, aud: AUDIENCE, exp: now() + 60 })}.`,
    ],
    [
      'HS256 signed with the public key as the secret (algorithm confusion)',
      'algorithm',
      () =>
        new SignJWT({ sub: 'a', iss: ISSUER, aud: AUDIENCE, exp: now() + 60 })
          .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
          .sign(new TextEncoder().encode(k1.pem)),
    ],
    [
      'a tampered payload (sub changed, signature kept)',
      'signature',
      async () => {
        const [header, , signature] = (await sign(k1, { sub: 'alice' })).split('.');
        return `${header}.${b64({ sub: 'mallory', iss: ISSUER, aud: AUDIENCE, exp: now() + 60 })}.${signature}`;
      },
    ],
  ];
  for (const [story, reason, token] of attacks) {
    it(`${story}: 401 UNAUTHENTICATED with a Bearer challenge, counted as ${reason}`, async () => {
      const before = await rejections(app, reason);
      const t = await token();
      const headers = t === undefined ? {} : bearer(t);
      for (const res of [
        await checkout(headers, 'a'),
        await app.inject({ method: 'POST', url: `/purchase?code=${sale}-${'0'.repeat(32)}`, headers }),
      ]) {
        assert.equal(res.statusCode, 401, res.body);
        assert.equal(json<{ error: { code: string } }>(res).error.code, 'UNAUTHENTICATED');
        assert.match(String(res.headers['www-authenticate']), /^Bearer realm="flashsale"/);
        assert.equal(String(res.headers['www-authenticate']).includes('invalid_token'), t !== undefined);
      }
      assert.equal(await rejections(app, reason), before + 2);
    });
  }

  it('the provider rotates its keys: the new kid is fetched on sight, the withdrawn key stops working', async () => {
    const k2 = await newKey('k2');
    const old = await sign(k1, { sub: 'rotated' });
    idp.publish([k2]);
    assert.equal((await checkout(bearer(await sign(k2, { sub: 'rotated' })))).statusCode, 200);
    assert.equal((await checkout(bearer(old))).statusCode, 401, 'k1 is gone from the refetched set');
    idp.publish([k1]);
  });

  it('the provider down: keys already held keep working', async () => {
    const headers = bearer(await sign(k1, { sub: 'steady' }));
    assert.equal((await checkout(headers)).statusCode, 200); // k1 held (again) after this
    idp.setUp(false);
    try {
      assert.equal((await checkout(headers)).statusCode, 200);
    } finally {
      idp.setUp(true);
    }
  });

  it('the provider down and no keys held: 503 UNAVAILABLE with Retry-After, never "let everyone in"', async () => {
    idp.setUp(false);
    try {
      const cold = await env.app({ env: { DEPENDENCY_TIMEOUT_MS: '200' } });
      const headers = bearer(await sign(k1, { sub: 'cold' }));
      const res = await cold.inject({ method: 'POST', url: `/checkout?id=${item()}`, headers });
      assert.equal(res.statusCode, 503, res.body);
      assert.equal(json<{ error: { code: string } }>(res).error.code, 'UNAVAILABLE');
      assert.ok(res.headers['retry-after']);
      assert.equal(await rejections(cold, 'keys_unavailable'), 1);
      idp.setUp(true);
      assert.equal((await cold.inject({ method: 'POST', url: `/checkout?id=${item()}`, headers })).statusCode, 200);
    } finally {
      idp.setUp(true);
    }
  });

  it('AUTH_PUBLIC_KEY instead of a JWKS: its tokens buy, others are refused', async () => {
    const key = await newKey('static', 'ES256');
    const fixed = await env.app({ env: { ...jwtEnv(key), AUTH_ALGORITHMS: 'ES256' } });
    const good = await fixed.inject({
      method: 'POST',
      url: `/checkout?id=${item()}`,
      headers: bearer(await sign(key, { sub: 'fixed' })),
    });
    assert.equal(good.statusCode, 200, good.body);
    const other = await fixed.inject({
      method: 'POST',
      url: `/checkout?id=${item()}`,
      headers: bearer(await sign(k1, { sub: 'fixed' })),
    });
    assert.equal(other.statusCode, 401);
  });
});

describe('AUTH configuration', () => {
  for (const [story, env, name] of [
    ['AUTH=jwt without keys', { AUTH: 'jwt', AUTH_ISSUER: 'i', AUTH_AUDIENCE: 'a' }, 'AUTH_JWKS_URL'],
    ['AUTH=jwt without an issuer', { AUTH: 'jwt', AUTH_JWKS_URL: 'https://x/j', AUTH_AUDIENCE: 'a' }, 'AUTH_ISSUER'],
    ['AUTH=jwt without an audience', { AUTH: 'jwt', AUTH_JWKS_URL: 'https://x/j', AUTH_ISSUER: 'i' }, 'AUTH_AUDIENCE'],
    ['an HS256 or none algorithm', { AUTH_ALGORITHMS: 'RS256,HS256' }, 'AUTH_ALGORITHMS'],
    ['a public key that is not PEM', { AUTH_PUBLIC_KEY: 'abc' }, 'AUTH_PUBLIC_KEY'],
    ['an admin token under 32 characters', { ADMIN_TOKENS: 'short' }, 'ADMIN_TOKENS'],
    ['a sale state refresh over 500 ms', { SALE_STATE_REFRESH_MS: '1000' }, 'SALE_STATE_REFRESH_MS'],
  ] as const) {
    it(`${story} stops start-up with one line naming ${name}`, () => {
      assert.throws(
        () => loadConfig(env),
        (err: Error) => err instanceof ConfigError && err.message.startsWith(name),
      );
    });
  }

  it('AUTH defaults to off; ADMIN_TOKENS keeps hashes only, named by a hash prefix', () => {
    assert.equal(loadConfig({}).AUTH, 'off');
    const hash = 'a'.repeat(64);
    const [hashed, clear] = loadConfig({ ADMIN_TOKENS: `sha256:${hash}, ${'t'.repeat(32)}` }).ADMIN_TOKENS!;
    assert.equal(hashed!.id, 'token:aaaaaaaa');
    assert.equal(hashed!.hash.toString('hex'), hash);
    assert.equal(clear!.hash.length, 32);
    assert.ok(!JSON.stringify(clear).includes('t'.repeat(32)));
  });
});
