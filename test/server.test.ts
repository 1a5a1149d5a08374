import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, waitFor, type Proc } from './process.js';

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

  it('on SIGTERM finishes the requests in flight, then exits 0', async () => {
    const port = await freePort();
    const svc = startService({ ...env.env, PORT: String(port) });
    children.push(svc);
    const base = `http://127.0.0.1:${port}`;
    const sale = await serviceReady(port);
    const inFlight = Array.from({ length: 30 }, (_, i) =>
      fetch(`${base}/checkout?user_id=drain-${i}&id=${sale}-${String(i).padStart(5, '0')}`, { method: 'POST' }),
    );
    await new Promise((r) => setTimeout(r, 5)); // let the requests reach the server first
    svc.child.kill('SIGTERM');
    const answers = await Promise.allSettled(inFlight);
    assert.equal(await svc.exited, 0);
    const answered = answers.filter((a) => a.status === 'fulfilled').map((a) => a.value.status);
    for (const status of answered) assert.equal(status, 200);
    const { rows } = await env.pg.query<{ n: string }>(
      `SELECT count(*) AS n FROM checkout_attempts WHERE user_id LIKE 'drain-%'`,
    );
    assert.equal(Number(rows[0]!.n), answered.length, 'an answered checkout is missing from PostgreSQL');
    assert.match(svc.output(), /"msg":"stopped"/);
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
