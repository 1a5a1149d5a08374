/**
 * The OpenAPI document against the service: every documented answer (route,
 * status) is provoked by a real request here, or excused below with why; every
 * real answer is documented; bodies validate against the documented schema and
 * documented headers are present. So the document cannot drift from the code.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import { Ajv } from 'ajv';
import formats from 'ajv-formats';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { json, testEnv, type TestEnv } from './helpers.js';
import { bearer, jwtEnv, newKey, sign } from './idp.js';

const committed = new URL('../../docs/openapi.json', import.meta.url);

interface Answer {
  description: string;
  headers?: Record<string, { schema: { type: string } }>;
  content?: Record<string, { schema: object }>;
}
interface Operation {
  parameters?: { in: string; name: string; required: boolean; schema: Record<string, number | string> }[];
  responses: Record<string, Answer>;
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components: { responses: Record<string, Answer> };
}
interface Res {
  statusCode: number;
  headers: Record<string, string | string[] | number | undefined>;
  body: string;
}

const ajv = new Ajv({ strict: true });
(formats as unknown as { default: (a: Ajv) => void }).default(ajv);

/** Documented statuses no request here provokes, each with why. */
const excused: Record<string, string> = {};

/** Whether a response matches what the document says of it; returns "METHOD path status". */
function check(documented: Answer | undefined, res: Res, what: string) {
  assert.ok(documented, `${what}: status ${res.statusCode} is not documented (${res.body.slice(0, 200)})`);
  for (const [name, header] of Object.entries(documented.headers ?? {})) {
    const value = res.headers[name.toLowerCase()];
    assert.ok(value !== undefined, `${what}: documented header ${name} is missing`);
    const typed = header.schema.type === 'integer' ? Number(value) : value;
    assert.ok(ajv.validate(header.schema, typed), `${what}: header ${name}: ${value}: ${ajv.errorsText()}`);
  }
  const contentType = String(res.headers['content-type']);
  const media = Object.keys(documented.content ?? {}).find(
    (type) => type === contentType || type === contentType.split(';')[0],
  );
  assert.ok(media, `${what}: content type ${contentType} is not documented`);
  const body = media.includes('json') ? (JSON.parse(res.body) as unknown) : res.body;
  assert.ok(ajv.validate(documented.content![media]!.schema, body), `${what}: ${ajv.errorsText()}: ${res.body}`);
}

describe('GET /openapi.json', () => {
  let env: TestEnv;
  let app: App;
  let doc: Doc;
  let sale: string;
  const provoked = new Set<string>();
  const item = (i: number) => `${sale}-${String(i).padStart(5, '0')}`;

  /** Sends a request and checks the answer against the operation `path` documents. */
  async function probe(target: App, method: string, url: string, path: string, expected: number) {
    const res = await target.inject({ method, url });
    return expect(res, method, path, expected);
  }
  function expect(res: Res, method: string, path: string, expected: number) {
    const what = `${method} ${path} ${res.statusCode}`;
    assert.equal(res.statusCode, expected, `${method} ${path}: ${res.body.slice(0, 300)}`);
    const operation = doc.paths[path]?.[method.toLowerCase()];
    assert.ok(operation, `${method} ${path} is not documented`);
    check(operation.responses[String(res.statusCode)], res, what);
    provoked.add(what);
    return res;
  }

  before(async () => {
    // The documented copy describes the default hourly sale of 10,000 items.
    env = await testEnv({
      SALE_ITEMS: '10000',
      SALE_DURATION: '3600',
      USER_LIMIT: '2',
      RATE_LIMIT_USER_PER_SEC: '1',
      RATE_LIMIT_USER_BURST: '3',
    });
    app = await env.app();
    doc = json<Doc>(await app.inject('/openapi.json'));
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(() => env.close());

  it('serves the OpenAPI document, and docs/openapi.json is that document (UPDATE_OPENAPI=1 rewrites it)', async () => {
    const served = `${JSON.stringify(doc, null, 2)}\n`;
    if (process.env.UPDATE_OPENAPI === '1') await writeFile(committed, served);
    assert.equal(await readFile(committed, 'utf8'), served, 'docs/openapi.json is stale: run npm run openapi');
  });

  it('describes each answer with a description of its own, never "Default Response"', () => {
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        for (const [status, answer] of Object.entries(operation.responses)) {
          assert.notEqual(answer.description, 'Default Response', `${method} ${path} ${status}`);
        }
      }
    }
  });

  it('POST /checkout and POST /purchase: each answer is the documented one', async () => {
    const code = json<{ code: string }>(
      await probe(app, 'POST', `/checkout?user_id=a&id=${item(1)}`, '/checkout', 200),
    ).code;
    const rival = json<{ code: string }>(
      await probe(app, 'POST', `/checkout?user_id=b&id=${item(1)}`, '/checkout', 200),
    ).code;
    await probe(app, 'POST', `/purchase?code=${code}`, '/purchase', 200);
    await probe(app, 'POST', `/purchase?code=${rival}`, '/purchase', 409); // ITEM_SOLD
    await probe(app, 'POST', `/checkout?user_id=c&id=${item(1)}`, '/checkout', 409); // ITEM_SOLD
    await probe(app, 'POST', '/checkout?user_id=a&id=nope', '/checkout', 400);
    await probe(app, 'POST', `/checkout?user_id=a&id=2001010100-00001`, '/checkout', 404);
    await probe(app, 'POST', '/purchase?code=nope', '/purchase', 400);
    await probe(app, 'POST', `/purchase?code=${sale}-${'0'.repeat(32)}`, '/purchase', 404);
    for (let i = 2; ; i++) {
      // The user's bucket holds 3 checkouts: one of these is refused.
      const res = await app.inject({ method: 'POST', url: `/checkout?user_id=d&id=${item(i)}` });
      if (res.statusCode !== 200) {
        expect(res, 'POST', '/checkout', 429);
        break;
      }
    }
    // A code is limited like a user: retrying a purchase that lost runs out too.
    // (A confirmed purchase's replay is answered from memory and spends nothing.)
    for (let i = 0; ; i++) {
      assert.ok(i < 100, 'the code never ran out');
      const res = await app.inject({ method: 'POST', url: `/purchase?code=${rival}` });
      if (res.statusCode !== 409) {
        expect(res, 'POST', '/purchase', 429);
        break;
      }
    }
    for (const [url, path] of [
      [`/checkout?user_id=a&id=${item(9)}`, '/checkout'],
      [`/purchase?code=${code}`, '/purchase'],
    ] as const) {
      const res = await app.inject({ method: 'POST', url, payload: 'x'.repeat(17 * 1024) });
      expect(res, 'POST', path, 413);
    }
  });

  it('every GET route: a body over 16 KiB answers the documented 413', async () => {
    for (const path of Object.keys(doc.paths).filter((p) => doc.paths[p]!.get)) {
      const url = path.replace('{sale_id}', sale).replace('{id}', item(1));
      const res = await app.inject({ method: 'GET', url, payload: 'x'.repeat(17 * 1024) });
      expect(res, 'GET', path, 413);
    }
  });

  it('POST /checkout and POST /purchase: the user limit and an ended sale answer as documented', async () => {
    const clock = offsetClock();
    const other = await env.app({ clock, env: { RATE_LIMIT_USER_PER_SEC: '0' } });
    const codes: string[] = [];
    for (let i = 20; i < 23; i++) {
      const res = await other.inject({ method: 'POST', url: `/checkout?user_id=e&id=${item(i)}` });
      if (res.statusCode === 200) codes.push(json<{ code: string }>(res).code);
    }
    await probe(other, 'POST', `/purchase?code=${codes[0]}`, '/purchase', 200);
    await probe(other, 'POST', `/purchase?code=${codes[1]}`, '/purchase', 200);
    await probe(other, 'POST', `/purchase?code=${codes[2]}`, '/purchase', 409); // USER_LIMIT_REACHED
    await probe(other, 'POST', `/checkout?user_id=e&id=${item(30)}`, '/checkout', 409); // USER_LIMIT_REACHED
    const unused = json<{ code: string }>(
      await probe(other, 'POST', `/checkout?user_id=f&id=${item(31)}`, '/checkout', 200),
    ).code;
    clock.advance(3600 * 1000);
    await probe(other, 'POST', `/purchase?code=${unused}`, '/purchase', 410);
  });

  it('the GET routes: each answer is the documented one', async () => {
    const past = app.deps.ids.windowContaining(Date.now() - 3600 * 1000).id;
    await probe(app, 'GET', '/sales/active', '/sales/active', 200);
    await probe(app, 'GET', `/sales/${sale}`, '/sales/{sale_id}', 200);
    await probe(app, 'GET', `/sales/${past}`, '/sales/{sale_id}', 404);
    await probe(app, 'GET', `/sales/${'1'.repeat(33)}`, '/sales/{sale_id}', 400);
    await probe(app, 'GET', `/sales/${sale}/items`, '/sales/{sale_id}/items', 200);
    await probe(app, 'GET', `/sales/${sale}/items?limit=0`, '/sales/{sale_id}/items', 400);
    await probe(app, 'GET', `/sales/${past}/items`, '/sales/{sale_id}/items', 404);
    await probe(app, 'GET', `/items/${item(9999)}/image.svg`, '/items/{id}/image.svg', 200);
    await probe(app, 'GET', `/items/${item(10000)}/image.svg`, '/items/{id}/image.svg', 404);
    await probe(app, 'GET', '/items/nope/image.svg', '/items/{id}/image.svg', 400);
    await probe(app, 'GET', '/health', '/health', 200);
    await probe(app, 'GET', '/metrics', '/metrics', 200);
    await probe(app, 'GET', '/openapi.json', '/openapi.json', 200);
  });

  it('every route answers a request without Host with the documented 400', async () => {
    await app.listen({ port: 0, host: '127.0.0.1' });
    const { port } = app.server.address() as AddressInfo;
    const hostless = (method: string, path: string) =>
      new Promise<Res>((resolve, reject) => {
        const req = httpRequest({ port, host: '127.0.0.1', method, path, setHost: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
          res.on('end', () => resolve({ statusCode: res.statusCode!, headers: res.headers, body }));
        });
        req.on('error', reject).end();
      });
    for (const [path, operations] of Object.entries(doc.paths)) {
      const url = path.replace('{sale_id}', sale).replace('{id}', item(1));
      for (const method of Object.keys(operations)) {
        expect(await hostless(method.toUpperCase(), url), method.toUpperCase(), path, 400);
      }
    }
  });

  it('every route answers with the documented 503 when the service is overloaded', async () => {
    const busy = await env.app({ env: { MAX_IN_FLIGHT: '1' } });
    // A request whose body never ends stays in flight: everything else is shed.
    const body = new PassThrough();
    const held = busy
      .inject({ method: 'POST', url: '/purchase?code=x', payload: body, headers: { 'content-length': '9' } })
      .then((res) => res);
    const inFlight = async () =>
      (await busy.deps.metrics.registry.getSingleMetric('http_requests_in_flight')!.get()).values[0]?.value;
    while ((await inFlight()) !== 1) await new Promise((resolve) => setImmediate(resolve));
    for (const [path, operations] of Object.entries(doc.paths)) {
      const url = path.replace('{sale_id}', sale).replace('{id}', item(1));
      for (const method of Object.keys(operations)) await probe(busy, method.toUpperCase(), url, path, 503);
    }
    body.end('123456789');
    await held;
  });

  it('GET /health and POST /checkout answer the documented 503 when Redis is down', async () => {
    const down = await env.app({ env: { REDIS_URL: 'redis://127.0.0.1:1', DEPENDENCY_TIMEOUT_MS: '100' } });
    const health = await probe(down, 'GET', '/health', '/health', 503);
    assert.equal(json<{ services_status: { redis: string } }>(health).services_status.redis, 'DOWN');
    await probe(down, 'POST', `/checkout?user_id=g&id=${item(40)}`, '/checkout', 503);
  });

  it('any other method on a documented path answers the documented 405 with Allow; an unknown path 404', async () => {
    const { MethodNotAllowed, NotFound } = doc.components.responses;
    const standard = ['get', 'put', 'post', 'delete', 'options', 'patch', 'trace'];
    for (const [path, operations] of Object.entries(doc.paths)) {
      const url = path.replace('{sale_id}', sale).replace('{id}', item(1));
      const methods = Object.keys(operations).flatMap((m) => (m === 'get' ? ['GET', 'HEAD'] : [m.toUpperCase()]));
      for (const method of standard.filter((m) => !operations[m])) {
        const res = await app.inject({ method: method.toUpperCase(), url });
        assert.equal(res.statusCode, 405, `${method} ${path}`);
        check(MethodNotAllowed, res, `${method} ${path}`);
        assert.deepEqual(String(res.headers.allow).split(', ').sort(), methods.sort(), `${method} ${path}`);
      }
    }
    const res = await app.inject('/nowhere');
    assert.equal(res.statusCode, 404);
    check(NotFound, res, 'GET /nowhere');
  });

  it('the integer query parameters take what the document says: bounds and defaults', async () => {
    const path = '/sales/{sale_id}/items';
    const integers = doc.paths[path]!.get!.parameters!.filter((p) => p.schema.type === 'integer');
    assert.deepEqual(
      integers.map((p) => p.name),
      ['offset', 'limit'],
    );
    for (const param of integers) {
      const { minimum, maximum } = param.schema as { minimum: number; maximum: number };
      assert.equal(param.required, false, param.name);
      for (const [value, status] of [
        [minimum, 200],
        [maximum, 200],
        [minimum - 1, 400],
        [maximum + 1, 400],
      ] as const) {
        await probe(app, 'GET', `/sales/${sale}/items?${param.name}=${value}`, path, status);
      }
      const page = json<Record<string, unknown>>(await app.inject(`/sales/${sale}/items`));
      assert.equal(page[param.name], param.schema.default, `${param.name} defaults to what the document says`);
    }
  });

  it('POST /queue/join, GET /queue/status, and the guard of POST /checkout and POST /purchase: each answer is the documented one', async () => {
    // Room off (the documented copy's app): the routes answer as an unknown path.
    await probe(app, 'POST', '/queue/join?user_id=a', '/queue/join', 404);
    await probe(app, 'GET', '/queue/status?ticket=x', '/queue/status', 404);
    const big = await app.inject({ method: 'POST', url: '/queue/join?user_id=a', payload: 'x'.repeat(17 * 1024) });
    expect(big, 'POST', '/queue/join', 413);

    // Room on, in a sale of 2 items, so it sells out; the clock moves only here.
    const small = await testEnv({ SALE_ITEMS: '2', USER_LIMIT: '2' });
    try {
      let now = Math.floor(Date.now() / 3_600_000) * 3_600_000 + 10_000;
      const clock = { now: () => now };
      const room = {
        WAITING_ROOM: 'on',
        WAITING_ROOM_SECRET: 'a-secret-of-at-least-32-bytes-000',
        PREQUEUE_SECONDS: '0',
        ADMIT_PER_SEC: '100',
        ADMISSION_TTL: '5',
      };
      const on = await small.app({ clock, env: room });
      const queue = on.deps.queue!;
      while (queue.admission.age() > 1000) await new Promise((resolve) => setTimeout(resolve, 20));
      queue.admission.stop(); // from here, admission steps only when the test says
      const sale = on.deps.ids.windowContaining(now).id;
      const join = async (user: string, expected = 200) =>
        json<{ ticket: string }>(await probe(on, 'POST', `/queue/join?user_id=${user}`, '/queue/join', expected));
      const tickets: string[] = [];
      for (let i = 1; i <= 5; i++) tickets.push((await join(`u${i}`)).ticket);
      await join('bad%20user', 400);
      await queue.admission.tick(); // admits 4: twice the 2 items remaining
      const t = (i: number) => encodeURIComponent(tickets[i - 1]!);
      await probe(on, 'GET', `/queue/status?ticket=${t(1)}`, '/queue/status', 200);
      await probe(on, 'GET', '/queue/status?ticket=nope', '/queue/status', 400);
      const forged = tickets[0]!.slice(0, -1) + (tickets[0]!.endsWith('A') ? 'B' : 'A');
      await probe(on, 'GET', `/queue/status?ticket=${forged}`, '/queue/status', 403);
      await probe(on, 'POST', `/checkout?user_id=u5&id=${sale}-00001&ticket=${t(5)}`, '/checkout', 403); // NOT_ADMITTED
      await probe(on, 'POST', `/checkout?user_id=u1&id=${sale}-00001`, '/checkout', 403); // TICKET_INVALID
      await probe(on, 'POST', `/purchase?code=${sale}-${'0'.repeat(32)}`, '/purchase', 403); // TICKET_INVALID

      now += 6000; // past ADMISSION_TTL: u1-u4's admission expired, u5 comes in
      await queue.admission.tick();
      await join('u3', 403); // TICKET_INVALID: the user's admission expired
      for (const item of ['00000', '00001']) {
        const res = await on.inject({
          method: 'POST',
          url: `/checkout?user_id=u5&id=${sale}-${item}`,
          headers: { 'x-queue-ticket': tickets[4]! },
        });
        assert.equal(res.statusCode, 200, res.body);
        const code = json<{ code: string }>(res).code;
        const bought = await on.inject({ method: 'POST', url: `/purchase?code=${code}&ticket=${t(5)}` });
        assert.equal(bought.statusCode, 200, bought.body);
      }
      await queue.admission.tick();
      await join('u6', 410); // SOLD_OUT

      const limited = await small.app({
        clock,
        env: { ...room, RATE_LIMIT_IP_PER_SEC: '1', RATE_LIMIT_IP_BURST: '1' },
      });
      limited.deps.queue!.admission.stop();
      await limited.inject({ method: 'POST', url: '/queue/join?user_id=u7' });
      await probe(limited, 'POST', '/queue/join?user_id=u7', '/queue/join', 429);

      const down = await small.app({
        env: { ...room, REDIS_URL: 'redis://127.0.0.1:1', DEPENDENCY_TIMEOUT_MS: '100' },
      });
      await probe(down, 'POST', '/queue/join?user_id=u8', '/queue/join', 503);
      await probe(down, 'GET', `/queue/status?ticket=${t(1)}`, '/queue/status', 503);
    } finally {
      await small.close();
    }
  });

  // Last but one: it pauses and ends the sale the tests above share.
  it('the operator API, and AUTH=jwt and the kill switch on checkout and purchase: each answer is the documented one', async () => {
    const token = 'openapi-operator-token-0123456789abcdef';
    const key = await newKey('k1');
    const ops = await env.app({ env: { ...jwtEnv(key), ADMIN_TOKENS: token, RATE_LIMIT_USER_PER_SEC: '0' } });
    const as = (headers: Record<string, string>) => async (method: string, url: string, path: string, status: number) =>
      expect(await ops.inject({ method, url, headers }), method, path, status);
    const admin = as(bearer(token));
    const buyerToken = bearer(await sign(key, { sub: 'buyer' }));
    const buyer = as(buyerToken);
    const nobody = as({});
    const none = '2001010100';
    const paths = {
      list: '/admin/sales',
      sale: '/admin/sales/{sale_id}',
      user: '/admin/sales/{sale_id}/users/{user_id}',
    };
    await admin('GET', '/admin/sales', paths.list, 200);
    await admin('GET', '/admin/sales?limit=0', paths.list, 400);
    await admin('GET', `/admin/sales/${sale}`, paths.sale, 200);
    await admin('GET', `/admin/sales/${'1'.repeat(33)}`, paths.sale, 400);
    await admin('GET', `/admin/sales/${none}`, paths.sale, 404);
    await admin('GET', `/admin/sales/${sale}/users/a`, paths.user, 200);
    await admin('GET', `/admin/sales/${sale}/users/${encodeURIComponent("a'b")}`, paths.user, 400);
    await admin('GET', `/admin/sales/${none}/users/a`, paths.user, 404);
    for (const [url, path] of [
      ['/admin/sales', paths.list],
      [`/admin/sales/${sale}`, paths.sale],
      [`/admin/sales/${sale}/users/a`, paths.user],
    ] as const) {
      await nobody('GET', url, path, 401);
      await buyer('GET', url, path, 403);
    }
    await buyer('POST', `/checkout?user_id=other&id=${item(50)}`, '/checkout', 403);
    await nobody('POST', `/checkout?id=${item(50)}`, '/checkout', 401);
    await nobody('POST', `/purchase?code=${sale}-${'0'.repeat(32)}`, '/purchase', 401);
    const code = json<{ code: string }>(await buyer('POST', `/checkout?id=${item(51)}`, '/checkout', 200)).code;
    const stranger = as(bearer(await sign(key, { sub: 'stranger' })));
    await stranger('POST', `/purchase?code=${code}`, '/purchase', 403); // the buyer's code, another user's token

    const later = offsetClock();
    const afterWindow = await env.app({ clock: later, env: { ADMIN_TOKENS: token } });
    later.advance(3600 * 1000);
    for (const action of ['pause', 'resume', 'end']) {
      const path = `/admin/sales/{sale_id}/${action}`;
      await nobody('POST', `/admin/sales/${sale}/${action}`, path, 401);
      await buyer('POST', `/admin/sales/${sale}/${action}`, path, 403);
      await admin('POST', `/admin/sales/${'1'.repeat(33)}/${action}`, path, 400);
      await admin('POST', `/admin/sales/${none}/${action}`, path, 404);
      const big = { method: 'POST' as const, url: `/admin/sales/${sale}/${action}`, headers: bearer(token) };
      expect(await ops.inject({ ...big, payload: 'x'.repeat(17 * 1024) }), 'POST', path, 413);
      const ended = await afterWindow.inject({
        method: 'POST',
        url: `/admin/sales/${sale}/${action}`,
        headers: bearer(token),
      });
      expect(ended, 'POST', path, 410);
    }
    await admin('POST', `/admin/sales/${sale}/pause`, '/admin/sales/{sale_id}/pause', 200);
    const paused = await buyer('POST', `/purchase?code=${code}`, '/purchase', 503);
    assert.equal(json<{ error: { code: string } }>(paused).error.code, 'SALE_PAUSED');
    await admin('POST', `/admin/sales/${sale}/resume`, '/admin/sales/{sale_id}/resume', 200);
    await admin('POST', `/admin/sales/${sale}/end`, '/admin/sales/{sale_id}/end', 200);
    await buyer('POST', `/checkout?id=${item(52)}`, '/checkout', 410);
  });

  it('every documented answer was provoked above or is excused with why', () => {
    const documented = Object.entries(doc.paths).flatMap(([path, operations]) =>
      Object.entries(operations).flatMap(([method, operation]) =>
        Object.keys(operation.responses).map((status) => `${method.toUpperCase()} ${path} ${status}`),
      ),
    );
    const missed = documented.filter((answer) => !provoked.has(answer) && !excused[answer]);
    assert.deepEqual(missed, [], 'documented answers no test provokes');
    const stale = Object.keys(excused).filter((answer) => !documented.includes(answer) || provoked.has(answer));
    assert.deepEqual(stale, [], 'excuses for answers that are not documented, or that are provoked after all');
  });
});

describe('GET /docs', () => {
  let env: TestEnv;
  before(async () => {
    env = await testEnv();
  });
  after(() => env.close());

  it('serves Swagger UI: the page, every asset it loads and the document it shows; one metrics label; not in the document', async () => {
    const app = await env.app();
    const page = await app.inject('/docs');
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    const assets = [...page.body.matchAll(/(?:src|href)="([^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css')), page.body);
    for (const asset of assets) {
      const res = await app.inject(new URL(asset, 'http://localhost/docs/').pathname);
      assert.equal(res.statusCode, 200, asset);
      assert.ok(res.body.length > 0, asset);
    }
    const initializer = await app.inject('/docs/static/swagger-initializer.js');
    const specUrl = /url: resolveUrl\('([^']+)'\)/.exec(initializer.body)?.[1];
    assert.ok(specUrl, initializer.body);
    const shown = await app.inject(new URL(specUrl, 'http://localhost/docs/').pathname);
    assert.deepEqual(shown.json(), (await app.inject('/openapi.json')).json());

    const metrics = (await app.inject('/metrics')).body;
    const handlers = new Set([...metrics.matchAll(/^http_requests_total\{handler="([^"]+)"/gm)].map((m) => m[1]));
    assert.ok(handlers.has('docs'), metrics);
    for (const handler of handlers) assert.doesNotMatch(handler!, /\//, 'no path becomes a label');
    const paths = Object.keys(json<Doc>(await app.inject('/openapi.json')).paths);
    assert.deepEqual(
      paths.filter((p) => p.startsWith('/docs')),
      [],
    );
  });
});
