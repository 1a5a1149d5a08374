/**
 * The hot lane's front (src/http/front.ts) reads each connection before Node's
 * HTTP server and answers the lane's requests itself. These stories hold it to
 * Node's server: the same answers with the same headers, in order, and
 * everything it does not read handed to Node's server with not a byte lost,
 * added or framed differently (the request-smuggling cases).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';
import { openSocket, type RawSocket } from './sockets.js';

interface Answer {
  head: string;
  status: number;
  body: string;
}

/** The complete answers in `text` (each framed by its Content-Length), in order. */
function answers(text: string): Answer[] {
  const found: Answer[] = [];
  let at = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) return found;
    const head = text.slice(at, end);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
    if (text.length < end + 4 + length) return found;
    found.push({ head, status: Number(head.split(' ')[1]), body: text.slice(end + 4, end + 4 + length) });
    at = end + 4 + length;
  }
}

/** Waits for `n` complete answers on the socket. */
const answered = (s: RawSocket, n: number) =>
  waitFor(`${n} answers`, async () => {
    const found = answers(s.received());
    return found.length >= n ? found : undefined;
  });

describe('connections the hot lane’s front reads before Node’s HTTP server', () => {
  let env: TestEnv;
  let app: App;
  let port: number;
  let sale: string;
  before(async () => {
    env = await testEnv({ REQUEST_TIMEOUT_MS: '1000', RATE_LIMIT_USER_PER_SEC: '0', RATE_LIMIT_IP_PER_SEC: '0' });
    app = await env.app();
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  const served = async () => {
    const text = (await app.inject('/metrics')).body;
    const line = text.split('\n').find((l) => l.startsWith('http_hot_lane_requests_total{handler="checkout"} '));
    return Number(line?.split(' ')[1] ?? 0);
  };
  const checkout = (user: string, index: number, headers = 'Host: 127.0.0.1\r\n') =>
    `POST /checkout?user_id=${user}&id=${itemId(sale, index)} HTTP/1.1\r\n${headers}\r\n`;

  it('POST /checkout on a kept-alive connection: each answer as Node’s server writes it (Date, Connection, Keep-Alive)', async () => {
    const before = await served();
    const s = await openSocket(port);
    await s.send(checkout('front-a', 1));
    await answered(s, 1);
    await s.send(checkout('front-b', 1));
    const [first, second] = await answered(s, 2);
    s.socket.destroy();
    assert.equal((await served()) - before, 2, 'both answered by the lane');
    for (const answer of [first!, second!]) {
      assert.equal(answer.status, 200);
      assert.match(answer.head, /^HTTP\/1\.1 200 OK\r\n/);
      assert.match(answer.head, /\r\ncontent-type: application\/json; charset=utf-8\r\n/);
      assert.match(answer.head, /\r\nDate: \w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT\r\n/);
      assert.match(answer.head, /\r\nConnection: keep-alive\r\nKeep-Alive: timeout=72$/);
      assert.equal(answer.head.match(/\r\ncontent-length: (\d+)/)![1], String(Buffer.byteLength(answer.body)));
    }
    assert.equal(JSON.parse(second!.body).user_id, 'front-b');
  });

  it('pipelined in one write, a checkout, a route of Fastify’s and a checkout are answered once each, in order', async () => {
    const s = await openSocket(port);
    // The first checkout waits on Redis and PostgreSQL: what follows it must wait too.
    await s.send(
      checkout('front-c', 2) + 'GET /sales/active HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n' + checkout('front-c', 3),
    );
    const found = await answered(s, 3);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(answers(s.received()).length, 3, 'no answer twice');
    s.socket.destroy();
    assert.deepEqual(
      found.map((a) => a.status),
      [200, 200, 200],
    );
    assert.equal(JSON.parse(found[0]!.body).item_id, itemId(sale, 2));
    assert.equal(JSON.parse(found[1]!.body).id, sale);
    assert.equal(JSON.parse(found[2]!.body).item_id, itemId(sale, 3));
  });

  it('a request whose head arrives in two writes is answered (by Node’s server, from its first byte)', async () => {
    const s = await openSocket(port);
    const request = checkout('front-d', 4);
    await s.send(request.slice(0, 20));
    await new Promise((r) => setTimeout(r, 50));
    await s.send(request.slice(20));
    const [answer] = await answered(s, 1);
    s.socket.destroy();
    assert.equal(answer!.status, 200);
    assert.equal(JSON.parse(answer!.body).user_id, 'front-d');
  });

  it('a body it does not read is Node’s to frame: a request smuggled in a Content-Length body is not answered', async () => {
    const before = await served();
    const smuggled = 'GET /sales/active HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n';
    const s = await openSocket(port);
    await s.send(checkout('front-e', 5, `Host: 127.0.0.1\r\nContent-Length: ${smuggled.length}\r\n`) + smuggled);
    const [answer] = await answered(s, 1);
    await new Promise((r) => setTimeout(r, 300));
    const all = answers(s.received());
    s.socket.destroy();
    assert.equal(all.length, 1, 'one request, one answer');
    assert.equal(answer!.status, 200, answer!.body); // the route ignores the body (src/http/body.ts)
    assert.equal((await served()) - before, 0, 'not the lane’s');
  });

  // What Node's server answers each: a 400 where it refuses the head, else the route's answer
  // (100 Continue first for Expect). An answer of the front's would be the lane's 200.
  const head = (headers: string) => `POST /checkout?user_id=front-f&id={item} HTTP/1.1\r\n${headers}\r\n`;
  const notRead: [string, string, number][] = [
    ['bare LF line ends', `POST /checkout?user_id=front-f&id={item} HTTP/1.1\nHost: 127.0.0.1\n\n`, 400],
    ['a folded header', head('Host: 127.0.0.1\r\nX-Folded: a\r\n b\r\n'), 400],
    ['a control character in a value', head('Host: 127.0.0.1\r\nX-Bad: a\x01b\r\n'), 400],
    ['a space before the colon', head('Host : 127.0.0.1\r\n'), 400],
    ['Content-Length twice', head('Host: 127.0.0.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n'), 400],
    ['Host twice', head('Host: 127.0.0.1\r\nHost: other\r\n'), 200],
    ['Transfer-Encoding', head('Host: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n') + '0\r\n\r\n', 200],
    ['Connection: close', head('Host: 127.0.0.1\r\nConnection: close\r\n'), 200],
    ['Expect: 100-continue', head('Host: 127.0.0.1\r\nExpect: 100-continue\r\n'), 100],
    ['HTTP/1.0', `POST /checkout?user_id=front-f&id={item} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n`, 200],
    [
      'an absolute-form target',
      `POST http://127.0.0.1/checkout?user_id=front-f&id={item} HTTP/1.1\r\nHost: x\r\n\r\n`,
      200,
    ],
    ['a header named __proto__', head('Host: 127.0.0.1\r\n__proto__: x\r\n'), 200],
  ];
  for (const [what, template, status] of notRead) {
    it(`a head with ${what} goes to Node’s server, which answers ${status}${status === 400 ? ' INVALID_REQUEST' : ''}`, async () => {
      const before = await served();
      const s = await openSocket(port);
      await s.send(template.replace('{item}', itemId(sale, 6)));
      const [answer] = await answered(s, 1);
      s.socket.destroy();
      assert.equal(answer!.status, status, answer!.body);
      if (status === 400) assert.equal(JSON.parse(answer!.body).error.code, 'INVALID_REQUEST');
      // Node's server may give a request it reads to the lane (its request event), once.
      assert.ok((await served()) - before <= 1);
    });
  }

  it('a connection that sends nothing is answered 408 REQUEST_TIMEOUT after REQUEST_TIMEOUT_MS and closed, as by Node’s server', async () => {
    const t0 = Date.now();
    const s = await openSocket(port);
    await s.closed;
    const [answer] = answers(s.received());
    assert.equal(answer?.status, 408);
    assert.equal(JSON.parse(answer!.body).error.code, 'REQUEST_TIMEOUT');
    assert.ok(Date.now() - t0 >= 900 && Date.now() - t0 < 5000, `after ${Date.now() - t0} ms`);
  });

  it('a client that half-closes after its checkout gets the answer, then the connection closes', async () => {
    const s = await openSocket(port);
    await s.send(checkout('front-g', 7));
    s.socket.end();
    await s.closed;
    const [answer] = answers(s.received());
    assert.equal(answer?.status, 200);
    assert.equal(JSON.parse(answer!.body).user_id, 'front-g');
  });
});
