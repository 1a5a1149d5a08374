import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { itemId, testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, waitFor, type Proc } from './process.js';
import { openSocket } from './sockets.js';

describe('the process (npm start)', () => {
  let env: TestEnv;
  const children: Proc[] = [];
  before(async () => {
    env = await testEnv({ LOG_LEVEL: 'info' });
  });
  after(async () => {
    await Promise.all(children.map((c) => c.kill()));
    await env.close();
  });

  it('on SIGTERM finishes the requests in flight (all answered 200 and in PostgreSQL), then exits 0', async () => {
    const port = await freePort();
    const svc = startService({ ...env.env, PORT: String(port), DEPENDENCY_TIMEOUT_MS: '10000' });
    children.push(svc);
    const base = `http://127.0.0.1:${port}`;
    const sale = await serviceReady(port);
    // Hold the requests in flight for sure: their attempts wait on a table lock this test holds.
    const holder = await env.pg.connect();
    try {
      await holder.query('BEGIN');
      await holder.query('LOCK TABLE checkout_attempts IN SHARE ROW EXCLUSIVE MODE');
      const inFlight = Array.from({ length: 30 }, (_, i) =>
        fetch(`${base}/checkout?user_id=drain-${i}&id=${itemId(sale, i)}`, { method: 'POST' }),
      );
      // Every one of them is in the server's hands (the scrape itself is one more).
      await waitFor('the 30 checkouts in flight', async () => {
        const text = await (await fetch(`${base}/metrics`)).text();
        return Number(/^http_requests_in_flight (\d+)/m.exec(text)?.[1]) >= 31 ? true : undefined;
      });
      svc.child.kill('SIGTERM');
      await waitFor('draining', async () => (svc.output().includes('"msg":"draining"') ? true : undefined));
      await holder.query('COMMIT');
      const answers = await Promise.all(inFlight);
      assert.deepEqual(
        answers.map((a) => a.status),
        Array(30).fill(200),
        'every request in flight at SIGTERM is answered',
      );
    } finally {
      holder.release();
    }
    assert.equal(await svc.exited, 0);
    const { rows } = await env.pg.query<{ n: string }>(
      `SELECT count(*) AS n FROM checkout_attempts WHERE user_id LIKE 'drain-%'`,
    );
    assert.equal(Number(rows[0]!.n), 30, 'an answered checkout is missing from PostgreSQL');
    assert.match(svc.output(), /"msg":"stopped"/);
  });

  it('on SIGTERM, clients stuck mid-request, idle or not reading hold the drain no longer than REQUEST_TIMEOUT_MS', async () => {
    const port = await freePort();
    const svc = startService({ ...env.env, PORT: String(port), REQUEST_TIMEOUT_MS: '3000' });
    children.push(svc);
    const sale = await serviceReady(port);
    // Each socket first completes a request, so it is surely accepted and in
    // the server's hands before the signal.
    const served = async (read = true) => {
      const s = await openSocket(port, { read });
      await s.send('GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      if (read) await waitFor('the first answer', async () => (s.received().includes('"uptime"') ? true : undefined));
      return s;
    };
    // Connected, sending nothing: idle, so closed at once, without the deadline's 408.
    const silent = await openSocket(port);
    const silentClosedAt = silent.closed.then(() => Date.now());
    const halfHeaders = await served();
    await halfHeaders.send(`POST /checkout?user_id=slow&id=${sale}-00001 HTTP/1.1\r\nHost: 127.0.0.1\r\n`);
    const halfBody = await served();
    await halfBody.send('POST /purchase?code=x HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nabcd');
    const idle = await served();
    // Pipelined pages it never reads: far more than the socket buffers hold.
    const slowReader = await served(false);
    await slowReader.send(`GET /sales/${sale}/items?limit=1000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`.repeat(500));
    // The same on connections the hot lane's front still has (src/http/front.ts):
    // one idle after its checkout, one sending checkouts it never reads.
    const checkout = (i: number) =>
      `POST /checkout?user_id=front&id=${itemId(sale, i)} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`;
    const idleOnFront = await openSocket(port);
    await idleOnFront.send(checkout(2));
    await waitFor('the checkout answered', async () => (idleOnFront.received().includes('"code"') ? true : undefined));
    const slowOnFront = await openSocket(port, { read: false });
    slowOnFront.socket.write(Array.from({ length: 20_000 }, (_, i) => checkout(i % 1000)).join(''));

    const t0 = Date.now();
    svc.child.kill('SIGTERM');
    const deadline = new Promise((r) => setTimeout(r, 3000 + 2000, 'still draining').unref());
    assert.equal(await Promise.race([svc.exited, deadline]), 0, `after ${Date.now() - t0} ms`);
    const silentAfter = (await silentClosedAt) - t0;
    assert.ok(silentAfter < 1000, `the silent connection closed after ${silentAfter} ms`);
    assert.equal(silent.received(), '');
    await Promise.all([halfHeaders.closed, halfBody.closed, idle.closed, idleOnFront.closed]);
    for (const s of [halfHeaders, halfBody]) {
      const answers = s.received().split(/(?=HTTP\/1\.1 )/);
      assert.match(answers.at(-1)!, /^HTTP\/1\.1 408 [^]*"REQUEST_TIMEOUT"/);
    }
    slowReader.socket.destroy();
    slowOnFront.socket.destroy();
  });

  it('with WORKERS=2 and the port already taken, stops with exit 1 and one line naming why', async () => {
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    const port = (taken.address() as { port: number }).port;
    try {
      const svc = startService({ ...env.env, PORT: String(port), HOST: '127.0.0.1', WORKERS: '2' });
      children.push(svc);
      const deadline = new Promise((r) => setTimeout(r, 15_000, 'still running').unref());
      assert.equal(await Promise.race([svc.exited, deadline]), 1, svc.output());
      const lines = svc.output().trim().split('\n');
      const failed = lines.filter((l) => l.includes('start-up failed'));
      assert.equal(failed.length, 1, svc.output());
      assert.match(failed[0]!, /EADDRINUSE/);
      assert.doesNotMatch(svc.output(), /worker died/);
    } finally {
      taken.close();
    }
  });

  it('with WORKERS=2, a worker that dies after start-up is replaced; five deaths within 30 s stop it with exit 1', async () => {
    const port = await freePort();
    const svc = startService({ ...env.env, PORT: String(port), WORKERS: '2' });
    children.push(svc);
    await serviceReady(port);
    const listening = () =>
      svc
        .output()
        .split('\n')
        .filter((l) => l.includes('"worker listening"'))
        .map((l) => JSON.parse(l) as { worker_pid: number });
    await waitFor('two workers', async () => (listening().length === 2 ? true : undefined));
    const killed = new Set<number>();
    const killOne = async () => {
      const worker = await waitFor('a live worker', async () => listening().find((w) => !killed.has(w.worker_pid)));
      killed.add(worker.worker_pid);
      process.kill(worker.worker_pid, 'SIGKILL');
    };
    await killOne();
    await waitFor('a replacement', async () => (listening().length === 3 ? true : undefined));
    assert.ok(await serviceReady(port), 'the service stopped answering after one worker died');
    const died = svc
      .output()
      .split('\n')
      .find((l) => l.includes('worker died'))!;
    assert.equal(died.match(/"pid":/g)?.length, 1, `two pid keys: ${died}`);
    assert.match(died, /"worker_pid":\d+/);
    for (let i = 1; i < 5; i++) await killOne();
    const deadline = new Promise((r) => setTimeout(r, 15_000, 'still running').unref());
    assert.equal(await Promise.race([svc.exited, deadline]), 1);
    assert.match(svc.output(), /"level":60.*workers keep dying: 5 deaths within 30 s/);
  });

  it('while PostgreSQL is unreachable, names it in a log line and keeps retrying', async () => {
    const deadPort = await freePort();
    const svc = startService({
      ...env.env,
      PORT: String(await freePort()),
      DATABASE_URL: `postgres://postgres@127.0.0.1:${deadPort}/x`,
    });
    children.push(svc);
    await waitFor('the log line', async () =>
      svc.output().includes(`PostgreSQL unreachable at 127.0.0.1:${deadPort}/x, retrying`) ? true : undefined,
    );
    assert.equal(svc.child.exitCode, null, 'start-up gave up instead of retrying');
    await svc.kill();
  });

  it('while Redis is unreachable, names it in a log line, serves /health as 503, and keeps retrying', async () => {
    const deadPort = await freePort();
    const port = await freePort();
    const svc = startService({ ...env.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${deadPort}` });
    children.push(svc);
    const health = await waitFor('health', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      return { status: res.status, body: (await res.json()) as { services_status: Record<string, string> } };
    });
    assert.equal(health.status, 503);
    assert.deepEqual(health.body.services_status, { app: 'UP', database: 'UP', redis: 'DOWN' });
    assert.match(svc.output(), new RegExp(`Redis unreachable at 127.0.0.1:${deadPort}, retrying`));
    await svc.kill();
  });
});
