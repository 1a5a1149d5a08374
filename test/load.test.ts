import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { audit } from '../tools/load/audit.js';
import { profiles } from '../tools/load/profiles.js';
import { summary } from '../tools/load/report.js';
import { run, saleState } from '../tools/load/run.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, type Proc } from './process.js';

describe('npm run load (tools/load)', () => {
  let env: TestEnv;
  let svc: Proc;
  let url: string;
  before(async () => {
    env = await testEnv({ SALE_ITEMS: '200', USER_LIMIT: '3', RATE_LIMIT_IP_PER_SEC: '0', LOG_LEVEL: 'silent' });
    const port = await freePort();
    svc = startService({ ...env.env, PORT: String(port) });
    await serviceReady(port);
    url = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await svc.kill();
    await env.close();
  });

  it('rehearses a realistic sale against a real service, and the audit passes', async () => {
    const result = await run({ url, profile: profiles.realistic!, users: 10, duration: 3 });
    const state = await saleState(url, result.saleId, result.totalItems);
    const report = summary(result, audit(result.bought, state, 3, true));
    assert.deepEqual(report.audit.problems, []);
    assert.ok(report.audit.ok);
    assert.ok(report.audit.confirmed_purchases > 0, 'nobody bought anything');
    assert.equal(report.audit.confirmed_purchases, state.itemsSold);
    for (const name of ['items', 'checkout', 'purchase']) {
      const e = report.endpoints[name]!;
      assert.ok(e.requests > 0, name);
      assert.ok(e.latency_ms.p50 <= e.latency_ms.p99 && e.latency_ms.p99 <= e.latency_ms.max, name);
      assert.equal(
        Object.values(e.statuses).reduce((a, b) => a + b, 0),
        e.requests,
      );
    }
  });

  it('the audit fails when the same item was confirmed to two codes, a user passed the limit, or a count disagrees', () => {
    const sale = { itemsSold: 2, soldItems: new Set(['s-1', 's-2']) };
    const fine = [
      { code: 'a', userId: 'u', itemId: 's-1' },
      { code: 'b', userId: 'u', itemId: 's-2' },
    ];
    assert.ok(audit(fine, sale, 2, true).ok);
    assert.match(
      audit([...fine, { code: 'c', userId: 'v', itemId: 's-1' }], sale, 2, true).problems.join(),
      /two codes/,
    );
    assert.match(audit(fine, sale, 1, true).problems.join(), /limit 1/);
    assert.match(audit(fine.slice(0, 1), sale, 2, true).problems.join(), /counts 2 items sold, the tool saw 1/);
    assert.ok(audit(fine.slice(0, 1), sale, 2, false).ok, 'with other buyers, more sold items is fine');
    assert.match(
      audit(fine, { itemsSold: 2, soldItems: new Set(['s-1']) }, 2, true).problems.join(),
      /lists it unsold/,
    );
  });
});
