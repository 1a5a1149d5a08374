/**
 * The monitoring stack against real processes: the service and a real
 * Prometheus loading the repo's rules (1 s scrape and evaluation), real
 * traffic, every dashboard query, and the Redis alert going pending, then
 * firing, when Redis dies.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parse, stringify } from 'yaml';

import { rows } from '../monitoring/dashboard.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startRedis, startService, waitFor, type Proc } from './process.js';

const root = new URL('../../', import.meta.url).pathname;

describe('the monitoring stack against a real Prometheus', () => {
  let env: TestEnv;
  let redis: Proc;
  const procs: Proc[] = [];
  let promUrl: string;
  let base: string;
  let sale: string;
  let dir: string;

  const query = async (expr: string) => {
    const res = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; error?: string; data: { result: unknown[] } };
    assert.equal(body.status, 'success', `${expr}: ${body.error}`);
    return body.data.result;
  };
  const alerts = async () => {
    const res = await fetch(`${promUrl}/api/v1/alerts`);
    const body = (await res.json()) as { data: { alerts: { labels: { alertname: string }; state: string }[] } };
    return body.data.alerts;
  };

  before(async () => {
    env = await testEnv({ RECONCILE_INTERVAL_MS: '1000', LOG_LEVEL: 'silent' });
    const redisPort = await freePort();
    redis = await startRedis(redisPort);
    const port = await freePort();
    procs.push(startService({ ...env.env, PORT: String(port), REDIS_URL: `redis://127.0.0.1:${redisPort}` }));
    sale = await serviceReady(port);
    base = `http://127.0.0.1:${port}`;

    // The repo's Prometheus config with the target and intervals of this test.
    dir = mkdtempSync(join(tmpdir(), 'fs-prom-'));
    const config = parse(readFileSync(`${root}monitoring/prometheus/prometheus.yml`, 'utf8')) as {
      global: Record<string, string>;
      rule_files: string[];
      scrape_configs: { scrape_interval: string; static_configs: { targets: string[] }[] }[];
    };
    config.global = { scrape_interval: '1s', evaluation_interval: '1s' };
    config.rule_files = [`${root}monitoring/prometheus/rules/*.yml`];
    config.scrape_configs[0]!.scrape_interval = '1s';
    config.scrape_configs[0]!.static_configs[0]!.targets = [`127.0.0.1:${port}`];
    writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    const prom = spawn('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ]);
    const exited = new Promise<number | null>((r) => prom.once('exit', r));
    procs.push({ child: prom, exited, output: () => '', kill: async () => (prom.kill('SIGKILL'), exited) });
    await waitFor('Prometheus', async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined), 20_000);
  });
  after(async () => {
    await Promise.all([...procs, redis].map((p) => p.kill()));
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('scrapes the service with the seed labels, and every dashboard panel query returns data after real traffic', async () => {
    const post = (url: string) =>
      fetch(`${base}${url}`, { method: 'POST' }).then(async (r) => (await r.json()) as { code?: string });
    for (let i = 0; i < 20; i++) {
      const item = `${sale}-${String(i).padStart(5, '0')}`;
      const { code } = await post(`/checkout?user_id=e2e${i % 5}&id=${item}`);
      if (code) await post(`/purchase?code=${code}`); // some users reach the limit: 409s
      await post(`/checkout?user_id=rival&id=${item}`); // conflicts: ITEM_SOLD
      await post('/checkout?user_id=bad%20user'); // bad requests
      await fetch(`${base}/no/such/path`);
    }
    const up = await waitFor(
      'two scrapes',
      async () => {
        const result = (await query('up{job="flashsale"}')) as { metric: Record<string, string> }[];
        return result.length > 0 && (await query('count_over_time(up{job="flashsale"}[1m]) >= 5')).length > 0
          ? result
          : undefined;
      },
      20_000,
    );
    assert.equal(up[0]!.metric.instance, 'flashsale-service');
    assert.equal(up[0]!.metric.environment, 'development');

    const empty: string[] = [];
    for (const row of rows) {
      for (const panel of row.panels) {
        for (const target of panel.targets) {
          const expr = target.expr.replaceAll('$__rate_interval', '30s').replaceAll('$__range', '5m');
          if ((await query(expr)).length === 0) empty.push(`${panel.title}: ${expr}`);
        }
      }
    }
    assert.deepEqual(empty, [], 'panel queries without data');
  });

  it('the rules agree with the real metrics: the reconciler gauge is Unix seconds, and a healthy service raises none of the alerts built on it', async () => {
    // FlashsaleRedisDrift and FlashsaleReconcilerStalled compare the gauge with time().
    const age = (await query('time() - max by (job) (sale_reconcile_last_run_timestamp_seconds{job="flashsale"})')) as {
      value: [number, string];
    }[];
    assert.equal(age.length, 1);
    assert.ok(Math.abs(Number(age[0]!.value[1])) < 30, `last pass ${age[0]!.value[1]} s ago`);
    // Recording rules evaluate with real label sets (job only). The error rate
    // is there before any 5xx (this traffic has none), the error ratio is not.
    for (const rule of [
      'flashsale:slo_slow:ratio_rate5m',
      'flashsale:slo_requests:rate5m',
      'flashsale:slo_errors:rate5m',
    ]) {
      const result = (await query(rule)) as { metric: Record<string, string> }[];
      assert.deepEqual(
        result.map((r) => r.metric),
        [{ __name__: rule, job: 'flashsale' }],
        rule,
      );
    }
    const quiet = [
      'FlashsaleHighErrorRate',
      'FlashsaleDatabasePoolExhausted',
      'FlashsaleLockContention',
      'FlashsaleSaleShortOfItems',
      'FlashsaleOversold',
      'FlashsaleRedisDrift',
      'FlashsaleReconcilerStalled',
      'FlashsaleNoActiveSale',
    ];
    const raised = (await alerts()).filter((a) => quiet.includes(a.labels.alertname));
    assert.deepEqual(raised, []);
  });

  it('when Redis dies, FlashsaleRedisDown goes pending, then firing', async () => {
    await redis.kill();
    const alertState = async () => (await alerts()).find((a) => a.labels.alertname === 'FlashsaleRedisDown')?.state;
    await waitFor('pending', async () => ((await alertState()) === 'pending' ? true : undefined), 15_000);
    await waitFor('firing', async () => ((await alertState()) === 'firing' ? true : undefined), 30_000);
  });
});
