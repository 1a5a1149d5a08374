import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { auditSale, sweep, type Confirmed } from './audit.js';
import { testEnv, type TestEnv } from './helpers.js';

const ITEMS = 400;
const USER_LIMIT = 3;
const BUYERS = 250;
const HOT_ITEMS = 5;

/** Sums one counter across instances, read from their registries. */
async function counter(apps: App[], name: string): Promise<number> {
  let total = 0;
  for (const app of apps) {
    const metric = await app.deps.metrics.registry.getSingleMetric(name)!.get();
    total += metric.values.reduce((sum, v) => sum + v.value, 0);
  }
  return total;
}

describe('POST /checkout and POST /purchase, a stampede over two instances sharing PostgreSQL and Redis', () => {
  let env: TestEnv;
  let apps: App[];
  let bases: string[];

  before(async () => {
    env = await testEnv({
      SALE_ITEMS: String(ITEMS),
      USER_LIMIT: String(USER_LIMIT),
      RATE_LIMIT_IP_PER_SEC: '0',
      // This story is about invariants, and asserts that every request is
      // answered (no 503). On a shared 2-core machine a double click's waiter
      // or a group commit can wait past the 1 s default, which answers 503 by
      // design (test/recovery.test.ts pins that bound): give them room.
      DEPENDENCY_TIMEOUT_MS: '5000',
    });
    apps = [await env.app(), await env.app()];
    bases = await Promise.all(apps.map((a) => a.listen({ port: 0, host: '127.0.0.1' })));
  });
  after(() => env.close());

  it('sells no item twice, lets no user pass the limit, loses no confirmed purchase, and leaves the rest sellable', async () => {
    const saleId = apps[0]!.deps.ids.windowContaining(Date.now()).id;
    const itemId = (i: number) => apps[0]!.deps.ids.itemId(saleId, i);
    const pick = <T>(xs: T[]) => xs[Math.floor(Math.random() * xs.length)]!;
    // By code: a re-checkout of a bought item returns its code, whose purchase replays.
    const confirmed = new Map<string, Confirmed>();
    let checkouts = 0;

    await Promise.all(
      Array.from({ length: BUYERS }, async (_, b) => {
        const userId = `buyer-${b}`;
        for (let attempt = 0; attempt < 6; attempt++) {
          // Half the wishes go to a few hot items, so buyers really collide.
          const item = itemId(
            Math.random() < 0.5 ? Math.floor(Math.random() * HOT_ITEMS) : Math.floor(Math.random() * ITEMS),
          );
          const co = await fetch(`${pick(bases)}/checkout?user_id=${userId}&id=${item}`, { method: 'POST' });
          checkouts++;
          const text = await co.text();
          if (co.status === 409) continue;
          assert.equal(co.status, 200, `checkout answered ${co.status}: ${text}`);
          const { code } = JSON.parse(text) as { code: string };
          // Some buyers double-click: two purchases of one code at once, on both instances.
          const tries = attempt % 3 === 0 ? bases : [pick(bases)];
          const answers = await Promise.all(
            tries.map((base) => fetch(`${base}/purchase?code=${code}`, { method: 'POST' })),
          );
          const bodies = await Promise.all(answers.map((r) => r.text()));
          answers.forEach((r, i) =>
            assert.ok([200, 409].includes(r.status), `purchase answered ${r.status}: ${bodies[i]}`),
          );
          const ok = answers.filter((r) => r.status === 200);
          if (ok.length === 0) continue;
          assert.equal(new Set(bodies.filter((_, i) => answers[i]!.status === 200)).size, 1, 'a replay differed');
          confirmed.set(code, { code, userId, itemId: item });
        }
      }),
    );

    const { sold, byItem } = await auditSale(env.pg, saleId, USER_LIMIT, [...confirmed.values()]);
    assert.equal(sold, confirmed.size, 'PostgreSQL holds a purchase nobody was told about');
    assert.ok(
      sold > HOT_ITEMS && sold < ITEMS,
      `the stampede sold ${sold} of ${ITEMS}: no contention, or nothing left to sweep`,
    );

    // The API's counters agree with PostgreSQL's rows.
    assert.equal(await counter(apps, 'purchase_success_total'), sold);
    const attempts = await env.pg.query<{ n: string; ok: string }>(
      `SELECT count(*) AS n, count(*) FILTER (WHERE outcome = 'OK') AS ok FROM checkout_attempts WHERE sale_id = $1`,
      [saleId],
    );
    assert.equal(await counter(apps, 'checkout_attempts_total'), checkouts);
    assert.equal(Number(attempts.rows[0]!.n), checkouts);
    assert.equal(await counter(apps, 'checkout_success_total'), Number(attempts.rows[0]!.ok));

    await sweep(bases[0]!, saleId, ITEMS, new Set(byItem.keys()));
    const final = await env.pg.query<{ n: string }>('SELECT count(*) AS n FROM purchases WHERE sale_id = $1', [saleId]);
    assert.equal(Number(final.rows[0]!.n), ITEMS);
  });
});
