import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { testEnv, type TestEnv } from './helpers.js';
import { raw } from './sockets.js';

describe("requests Node's HTTP server handles before any route", () => {
  let env: TestEnv;
  let port: number;
  before(async () => {
    env = await testEnv({ REQUEST_TIMEOUT_MS: '1000' });
    const app = await env.app();
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

  it('CONNECT answers 405 METHOD_NOT_ALLOWED in the error shape instead of a dropped connection', async () => {
    const answer = await raw(port, 'CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\n\r\n');
    assert.match(answer, /^HTTP\/1\.1 405 /);
    assert.equal(JSON.parse(answer.split('\r\n\r\n')[1]!).error.code, 'METHOD_NOT_ALLOWED');
  });

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
