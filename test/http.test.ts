import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { Counter } from 'prom-client';

import type { App } from '../src/app.js';
import { json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';
import { openSocket, raw } from './sockets.js';

/** A counter's value, summed over the series matching these labels. */
async function counterValue(metric: Counter, labels: Record<string, string> = {}) {
  return (await metric.get()).values
    .filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))
    .reduce((sum, v) => sum + v.value, 0);
}

describe("requests Node's HTTP server handles before any route", () => {
  let env: TestEnv;
  let app: App;
  let port: number;
  before(async () => {
    env = await testEnv({ REQUEST_TIMEOUT_MS: '1000' });
    app = await env.app();
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => env.close());

  it('a URL or headers over 16 KiB answer 431 HEADERS_TOO_LARGE in the error shape', async () => {
    const answer = await raw(port, `GET /sales/active?x=${'a'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(answer, /^HTTP\/1\.1 431 /);
    assert.match(answer, /content-type: application\/json/i);
    assert.deepEqual(JSON.parse(answer.split('\r\n\r\n')[1]!), {
      error: { code: 'HEADERS_TOO_LARGE', message: 'request line or headers are too large' },
    });
  });

  it('a malformed request line answers 400 INVALID_REQUEST in the error shape', async () => {
    const answer = await raw(port, 'GARBAGE\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'INVALID_REQUEST');
  });

  it('a request still incomplete after REQUEST_TIMEOUT_MS answers 408 REQUEST_TIMEOUT in the error shape', async () => {
    const t0 = Date.now();
    // Four bytes of a ten-byte body, then nothing.
    const answer = await raw(port, 'POST /purchase?code=x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabcd');
    assert.match(answer, /^HTTP\/1\.1 408 /);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'REQUEST_TIMEOUT');
    assert.ok(Date.now() - t0 < 5000, `answered after ${Date.now() - t0} ms`);
  });

  const requests = (labels: Record<string, string>) => counterValue(app.deps.metrics.httpRequestsTotal, labels);
  /** Waits until http_requests_total{labels} has moved since `before`, and checks it moved by exactly one. */
  const countedOnce = async (labels: Record<string, string>, before: number) => {
    await waitFor('the request counted', async () => ((await requests(labels)) > before ? true : undefined), 3000);
    assert.equal((await requests(labels)) - before, 1);
  };

  it('CONNECT /health answers 405 METHOD_NOT_ALLOWED with Allow, and is counted as method_not_allowed', async () => {
    const labels = { handler: 'method_not_allowed', method: 'OTHER', status_code: '405' };
    const before = await requests(labels);
    const answer = await raw(port, 'CONNECT /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 405 /);
    assert.match(answer, /\r\nallow: GET, HEAD\r\n/i);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'METHOD_NOT_ALLOWED');
    await countedOnce(labels, before);
  });

  it('CONNECT to an authority (a proxy tunnel) answers 404 NOT_FOUND, and is counted as unmatched', async () => {
    const labels = { handler: 'unmatched', method: 'OTHER', status_code: '404' };
    const before = await requests(labels);
    const answer = await raw(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 404 /);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'NOT_FOUND');
    await countedOnce(labels, before);
  });

  for (const method of ['GET', 'HEAD']) {
    for (const framing of ['Content-Length', 'chunked']) {
      it(`${method} /sales/active with a 2 MB body (${framing}) answers 413 PAYLOAD_TOO_LARGE`, async () => {
        const body = 'x'.repeat(2 * 1024 * 1024);
        const s = await openSocket(port);
        const head = `${method} /sales/active HTTP/1.1\r\nHost: x\r\n`;
        // The server may answer and close before the whole body is sent.
        const sent =
          framing === 'chunked'
            ? s.send(`${head}Transfer-Encoding: chunked\r\n\r\n${(64 * 1024).toString(16)}\r\n`).then(async () => {
                for (let i = 0; i < 32; i++)
                  await s.send(`${body.slice(0, 64 * 1024)}\r\n${i < 31 ? '10000' : '0'}\r\n`);
                await s.send('\r\n');
              })
            : s.send(`${head}Content-Length: ${body.length}\r\n\r\n${body}`);
        sent.catch(() => {});
        const answer = await waitFor('an answer', async () =>
          s.received().includes('\r\n\r\n') ? s.received() : undefined,
        );
        assert.match(answer, /^HTTP\/1\.1 413 /);
        if (method === 'GET') {
          await waitFor('the body', async () => (s.received().endsWith('}') ? true : undefined));
          assert.equal(JSON.parse(s.received().split('\r\n\r\n')[1]!).error.code, 'PAYLOAD_TOO_LARGE');
        }
        s.socket.destroy();
      });
    }
  }

  it('an HTTP/1.1 request without Host answers 400 INVALID_REQUEST naming host, in the error shape', async () => {
    const answer = await raw(port, 'GET /health HTTP/1.1\r\nConnection: close\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.deepEqual(JSON.parse(answer.split('\r\n\r\n')[1]!).error, {
      code: 'INVALID_REQUEST',
      message: 'the Host header is required',
      field: 'host',
    });
  });
});

describe('requests whose client leaves before the answer', () => {
  let env: TestEnv;
  let app: App;
  let port: number;
  let sale: string;
  before(async () => {
    env = await testEnv({ RATE_LIMIT_USER_PER_SEC: '0', RATE_LIMIT_IP_PER_SEC: '0' });
    app = await env.app();
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  const item = (i: number) => `${sale}-${String(i).padStart(5, '0')}`;
  /** Sends each request on its own socket and closes it at once, without waiting for an answer. */
  const abandon = (requests: string[]) =>
    Promise.all(
      requests.map(async (request) => {
        const s = await openSocket(port);
        await s.send(`${request} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        s.socket.destroy();
      }),
    );
  const rows = async (sql: string) => (await env.pg.query<{ n: number }>(sql)).rows[0]!.n;

  it('POST /purchase, when the client disconnects at once, is still counted once with the status the service chose', async () => {
    const { metrics } = app.deps;
    const codes: string[] = [];
    for (let i = 1; i <= 5; i++) {
      const res = await app.inject({ method: 'POST', url: `/checkout?user_id=leaver-p&id=${item(i)}` });
      codes.push(json<{ code: string }>(res).code);
    }
    const http200 = { handler: 'purchase', method: 'POST', status_code: '200' };
    const [attempts, success, answered] = await Promise.all([
      counterValue(metrics.purchaseAttempts),
      counterValue(metrics.purchaseSuccess),
      counterValue(metrics.httpRequestsTotal, http200),
    ]);
    await abandon(codes.map((code) => `POST /purchase?code=${code}`));
    await waitFor('the purchases in PostgreSQL', async () =>
      (await rows(`SELECT count(*)::int AS n FROM purchases WHERE user_id = 'leaver-p'`)) === 5 ? true : undefined,
    );
    await waitFor(
      'the attempts counted',
      async () => ((await counterValue(metrics.purchaseAttempts)) - attempts >= 5 ? true : undefined),
      3000,
    );
    assert.equal((await counterValue(metrics.purchaseAttempts)) - attempts, 5);
    assert.equal((await counterValue(metrics.purchaseSuccess)) - success, 5);
    assert.equal((await counterValue(metrics.httpRequestsTotal, http200)) - answered, 5);
  });

  it('POST /checkout, when the client disconnects at once, is still counted once with the status the service chose', async () => {
    const { metrics } = app.deps;
    const http200 = { handler: 'checkout', method: 'POST', status_code: '200' };
    const [attempts, success, answered] = await Promise.all([
      counterValue(metrics.checkoutAttempts),
      counterValue(metrics.checkoutSuccess),
      counterValue(metrics.httpRequestsTotal, http200),
    ]);
    await abandon([1, 2, 3, 4, 5].map((i) => `POST /checkout?user_id=leaver-c&id=${item(10 + i)}`));
    await waitFor('the attempts in PostgreSQL', async () =>
      (await rows(`SELECT count(*)::int AS n FROM checkout_attempts WHERE user_id = 'leaver-c'`)) === 5
        ? true
        : undefined,
    );
    await waitFor(
      'the attempts counted',
      async () => ((await counterValue(metrics.checkoutAttempts)) - attempts >= 5 ? true : undefined),
      3000,
    );
    assert.equal((await counterValue(metrics.checkoutAttempts)) - attempts, 5);
    assert.equal((await counterValue(metrics.checkoutSuccess)) - success, 5);
    assert.equal((await counterValue(metrics.httpRequestsTotal, http200)) - answered, 5);
  });
});

describe('TRUST_PROXY and the per-IP rate limit (RATE_LIMIT_IP_PER_SEC=1, RATE_LIMIT_IP_BURST=2)', () => {
  let env: TestEnv;
  let sale: string;
  before(async () => {
    env = await testEnv({ RATE_LIMIT_IP_PER_SEC: '1', RATE_LIMIT_IP_BURST: '2' });
  });
  after(() => env.close());

  /** Five checkouts by five users from one proxy (`remoteAddress`, its own bucket), each forwarded for its own client. */
  const fiveForwarded = async (app: App, prefix: string, remoteAddress: string) => {
    sale ??= json<{ id: string }>(await app.inject('/sales/active')).id;
    const statuses: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const res = await app.inject({
        method: 'POST',
        url: `/checkout?user_id=${prefix}-${i}&id=${sale}-0000${i}`,
        remoteAddress,
        headers: { 'x-forwarded-for': `10.0.${prefix.length}.${i}` },
      });
      statuses.push(res.statusCode);
    }
    return statuses;
  };

  it('POST /checkout, with TRUST_PROXY off (the default), ignores X-Forwarded-For: one address, limited', async () => {
    const app = await env.app();
    assert.deepEqual(await fiveForwarded(app, 'off', '127.0.0.2'), [200, 200, 429, 429, 429]);
  });

  it('POST /checkout, with TRUST_PROXY listing only other proxies, ignores X-Forwarded-For from this one', async () => {
    const app = await env.app({ env: { TRUST_PROXY: '10.9.9.9' } });
    assert.deepEqual(await fiveForwarded(app, 'other', '127.0.0.3'), [200, 200, 429, 429, 429]);
  });

  it('POST /checkout, with TRUST_PROXY listing the proxy, limits each forwarded address on its own', async () => {
    const app = await env.app({ env: { TRUST_PROXY: '10.9.9.9, 127.0.0.0/8' } });
    assert.deepEqual(await fiveForwarded(app, 'list', '127.0.0.4'), [200, 200, 200, 200, 200]);
  });
});
