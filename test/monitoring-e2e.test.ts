/**
 * The monitoring stack against real processes: the service, a real
 * Prometheus loading the repo's rules (1 s scrape and evaluation), a real
 * Alertmanager with the repo's routes and the alert-logger behind it; real
 * traffic, every dashboard query, and the Redis alert going pending, then
 * firing, then printed by the alert-logger with its absolute runbook link,
 * when Redis dies.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parse, stringify } from 'yaml';

import { rows, variables } from '../monitoring/dashboard.js';
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
  let logger: Proc; // its stdout: one JSON line per alert
  let runbookBase: string;

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

    dir = mkdtempSync(join(tmpdir(), 'fs-prom-'));
    const run = (command: string, args: string[], env: Record<string, string> = {}) => {
      const child = spawn(command, args, { env: { ...process.env, ...env } });
      let output = '';
      child.stdout.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', r));
      const proc = { child, exited, output: () => output, kill: async () => (child.kill('SIGKILL'), exited) };
      procs.push(proc);
      return proc;
    };

    // The alert-logger, and Alertmanager with the repo's routes and receivers
    // pointed at it; group_wait shortened from 10 s to this test's pace.
    const loggerPort = await freePort();
    logger = run(process.execPath, [`${root}monitoring/alert-logger/alert-logger.mjs`], { PORT: String(loggerPort) });
    const am = readFileSync(`${root}monitoring/alertmanager/alertmanager.yml`, 'utf8')
      .replaceAll('http://alert-logger:9095/', `http://127.0.0.1:${loggerPort}/`)
      .replaceAll(/group_wait: \S+/g, 'group_wait: 1s');
    writeFileSync(join(dir, 'alertmanager.yml'), am);
    const amPort = await freePort();
    run('prometheus-alertmanager', [
      `--config.file=${join(dir, 'alertmanager.yml')}`,
      `--storage.path=${join(dir, 'am')}`,
      `--web.listen-address=127.0.0.1:${amPort}`,
      '--cluster.listen-address=', // a single Alertmanager: no gossip port
    ]);

    // The repo's Prometheus config with the targets and intervals of this test.
    const config = parse(readFileSync(`${root}monitoring/prometheus/prometheus.yml`, 'utf8')) as {
      global: Record<string, unknown> & { external_labels: Record<string, string> };
      rule_files: string[];
      scrape_configs: { scrape_interval: string; static_configs: { targets: string[] }[] }[];
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    };
    runbookBase = config.global.external_labels.runbook_base!;
    config.global = { ...config.global, scrape_interval: '1s', evaluation_interval: '1s' };
    config.rule_files = [`${root}monitoring/prometheus/rules/*.yml`];
    config.scrape_configs[0]!.scrape_interval = '1s';
    config.scrape_configs[0]!.static_configs[0]!.targets = [`127.0.0.1:${port}`];
    config.alerting.alertmanagers[0]!.static_configs[0]!.targets = [`127.0.0.1:${amPort}`];
    writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
    const promPort = await freePort();
    promUrl = `http://127.0.0.1:${promPort}`;
    run('prometheus', [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ]);
    await waitFor('Prometheus', async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined), 20_000);
    const amUrl = `http://127.0.0.1:${amPort}`;
    await waitFor('Alertmanager', async () => ((await fetch(`${amUrl}/-/ready`)).ok ? true : undefined), 20_000);
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
    await fetch(`${base}/admin/sales`); // no operator token: 401, counted in admin_requests_total
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

    // The dashboard's variables find this service's environment and instance
    // (label_values(<selector>, <label>) is what Prometheus's series API answers)...
    for (const v of variables) {
      const [, selector, label] = /^label_values\((.*), (\w+)\)$/.exec(v.definition)!;
      const match = selector!.replaceAll('$environment', 'development');
      const res = await fetch(`${promUrl}/api/v1/label/${label}/values?match[]=${encodeURIComponent(match)}`);
      assert.deepEqual(((await res.json()) as { data: string[] }).data, [up[0]!.metric[label!]], v.name);
    }
    // ... and every panel query, narrowed to them, returns data.
    const empty: string[] = [];
    for (const row of rows) {
      for (const panel of row.panels) {
        for (const target of panel.targets) {
          const expr = target.expr
            .replaceAll('$__rate_interval', '30s')
            .replaceAll('$__range', '5m')
            .replaceAll('$environment', 'development')
            .replaceAll('$instance', 'flashsale-service');
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

  it('when Redis dies, FlashsaleRedisDown goes pending, then firing, and the alert-logger prints it with an absolute runbook link', async () => {
    await redis.kill();
    const alertState = async () => (await alerts()).find((a) => a.labels.alertname === 'FlashsaleRedisDown')?.state;
    await waitFor('pending', async () => ((await alertState()) === 'pending' ? true : undefined), 15_000);
    await waitFor('firing', async () => ((await alertState()) === 'firing' ? true : undefined), 30_000);
    const printed = await waitFor(
      'the alert-logger to print FlashsaleRedisDown',
      async () =>
        logger
          .output()
          .split('\n')
          .filter(Boolean)
          .map((line) => JSON.parse(line) as Record<string, string>)
          .find((a) => a.alertname === 'FlashsaleRedisDown'),
      15_000,
    );
    assert.equal(printed.receiver, 'critical');
    assert.equal(printed.status, 'firing');
    assert.equal(printed.instance, 'flashsale-service');
    assert.equal(printed.summary, 'Redis is unreachable from flashsale');
    assert.equal(printed.runbook_url, `${runbookBase}/docs/runbooks.md#flashsaleredisdown`);
  });
});
