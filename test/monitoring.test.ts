import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { parse } from 'yaml';

import { dashboard, rows } from '../monitoring/dashboard.js';

const root = new URL('../../', import.meta.url).pathname;
const path = (p: string) => `${root}${p}`;
const promtool = (...args: string[]) => execFileSync('promtool', args, { cwd: root, encoding: 'utf8' });
const amtool = (...args: string[]) => execFileSync('amtool', args, { cwd: root, encoding: 'utf8' });
const yaml = <T>(p: string) => parse(readFileSync(path(p), 'utf8')) as T;

describe('the monitoring stack (monitoring/)', () => {
  it('promtool check config accepts prometheus.yml, with the seed job, path, interval and labels', () => {
    promtool('check', 'config', 'monitoring/prometheus/prometheus.yml');
    const config = yaml<{ scrape_configs: Record<string, unknown>[] }>('monitoring/prometheus/prometheus.yml');
    const job = config.scrape_configs.find((j) => j.job_name === 'flashsale') as {
      metrics_path: string;
      scrape_interval: string;
      static_configs: { labels: Record<string, string> }[];
    };
    assert.equal(job.metrics_path, '/metrics');
    assert.equal(job.scrape_interval, '5s');
    assert.deepEqual(Object.keys(job.static_configs[0]!.labels).sort(), ['environment', 'instance']);
  });

  it('promtool check rules accepts every rule file, and every alert has summary, description, an absolute runbook_url and severity', () => {
    const files = ['monitoring/prometheus/rules/alerts.yml', 'monitoring/prometheus/rules/slo.yml'];
    promtool('check', 'rules', ...files);
    const runbooks = readFileSync(path('docs/runbooks.md'), 'utf8');
    // One configurable base for every link: an external label of prometheus.yml.
    const base = yaml<{ global: { external_labels: Record<string, string> } }>('monitoring/prometheus/prometheus.yml')
      .global.external_labels.runbook_base!;
    assert.match(base, /^https?:\/\/[^/]+\/.*[^/]$/, 'runbook_base is an absolute URL without a trailing /');
    for (const file of files) {
      for (const group of yaml<{ groups: { rules: Record<string, unknown>[] }[] }>(file).groups) {
        for (const rule of group.rules.filter((r) => r.alert)) {
          const annotations = rule.annotations as Record<string, string>;
          assert.deepEqual(
            Object.keys(annotations).sort(),
            ['description', 'runbook_url', 'summary'],
            String(rule.alert),
          );
          // critical pages, warning goes to chat, ticket to the backlog (alertmanager.yml routes each).
          assert.ok(['critical', 'warning', 'ticket'].includes((rule.labels as { severity: string }).severity));
          const anchor = String(rule.alert).toLowerCase();
          assert.equal(annotations.runbook_url, `{{ $externalLabels.runbook_base }}/docs/runbooks.md#${anchor}`);
          const link = new URL(annotations.runbook_url!.replace('{{ $externalLabels.runbook_base }}', base));
          assert.equal(link.hash, `#${anchor}`);
          assert.match(runbooks, new RegExp(`^## ${rule.alert}$`, 'm'), `no runbook section for ${rule.alert}`);
        }
      }
    }
  });

  it('promtool test rules: every alert fires when it should and stays quiet when it should', () => {
    const out = promtool('test', 'rules', 'monitoring/prometheus/tests/alerts.test.yml');
    assert.match(out, /SUCCESS/);
    const tested = yaml<{ tests: { alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[] }>(
      'monitoring/prometheus/tests/alerts.test.yml',
    ).tests.flatMap((t) => t.alert_rule_test ?? []); // some cases test recording rules only
    const alerts = ['alerts.yml', 'slo.yml'].flatMap((f) =>
      yaml<{ groups: { rules: { alert?: string }[] }[] }>(`monitoring/prometheus/rules/${f}`).groups.flatMap((g) =>
        g.rules.filter((r) => r.alert).map((r) => r.alert!),
      ),
    );
    for (const alert of alerts) {
      assert.ok(
        tested.some((t) => t.alertname === alert && t.exp_alerts.length > 0),
        `${alert} is never seen firing`,
      );
      assert.ok(
        tested.some((t) => t.alertname === alert && t.exp_alerts.length === 0),
        `${alert} is never seen quiet`,
      );
    }
  });

  it('amtool check-config accepts alertmanager.yml, and so it does with its email, Slack and PagerDuty examples uncommented', () => {
    amtool('check-config', 'monitoring/alertmanager/alertmanager.yml');
    // Examples are the lines commented with a single '#'; '##' lines explain.
    const text = readFileSync(path('monitoring/alertmanager/alertmanager.yml'), 'utf8');
    const uncommented = text.replace(/^(\s*)# /gm, '$1');
    const dir = mkdtempSync(join(tmpdir(), 'fs-am-'));
    try {
      writeFileSync(join(dir, 'alertmanager.yml'), uncommented);
      amtool('check-config', join(dir, 'alertmanager.yml'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const receivers = (parse(uncommented) as { receivers: Record<string, unknown>[] }).receivers;
    for (const kind of ['email_configs', 'slack_configs', 'pagerduty_configs']) {
      assert.ok(
        receivers.some((r) => r[kind]),
        `no ${kind} example`,
      );
    }
  });

  it('alertmanager.yml: every receiver delivers somewhere a person sees, by default the alert-logger of the Compose stack', () => {
    type Route = { receiver: string; routes?: Route[] };
    const config = yaml<{ route: Route; receivers: { name: string; webhook_configs?: { url: string }[] }[] }>(
      'monitoring/alertmanager/alertmanager.yml',
    );
    const named = (route: Route): string[] => [route.receiver, ...(route.routes ?? []).flatMap(named)];
    const compose = yaml<{ services: Record<string, { environment?: Record<string, string> }> }>('docker-compose.yml');
    for (const name of new Set(named(config.route))) {
      const receiver = config.receivers.find((r) => r.name === name);
      assert.ok(receiver, `route names missing receiver ${name}`);
      const urls = (receiver.webhook_configs ?? []).map((w) => new URL(w.url));
      assert.ok(urls.length > 0, `receiver ${name} sends nowhere`);
      for (const url of urls) {
        const service = compose.services[url.hostname];
        assert.ok(service, `${url} names no Compose service`);
        assert.equal(service.environment?.PORT, url.port, `${url}: the service listens elsewhere`);
      }
    }
  });

  it('the committed dashboard JSON is what monitoring/dashboard.ts generates (UPDATE_DASHBOARD=1 rewrites it)', () => {
    const file = path('monitoring/grafana/dashboards/flashsale.json');
    const generated = `${JSON.stringify(dashboard(), null, 2)}\n`;
    if (process.env.UPDATE_DASHBOARD === '1') writeFileSync(file, generated);
    assert.equal(readFileSync(file, 'utf8'), generated, 'stale dashboard: run npm run dashboard');
    const rows = (dashboard().panels as { type: string; title: string }[])
      .filter((p) => p.type === 'row')
      .map((p) => p.title);
    // The seed's four rows, then the waiting room's (docs/waiting-room.md).
    assert.deepEqual(rows, [
      'Four Golden Signals',
      'Flash Sale Specific',
      'Database & Cache',
      'System Resources',
      'Waiting room',
    ]);
  });

  it('the dashboard selects an environment and instances (several, or All), and every panel query filters on both', () => {
    const list = (dashboard().templating as { list: Record<string, unknown>[] }).list;
    const byName = Object.fromEntries(list.map((v) => [v.name, v]));
    assert.deepEqual(Object.keys(byName), ['environment', 'instance']);
    assert.equal(byName.instance!.multi, true);
    for (const v of list) assert.equal(v.includeAll, true, String(v.name));
    assert.match(String(byName.instance!.definition), /environment=~"\$environment"/);
    const unfiltered: string[] = [];
    for (const row of rows) {
      for (const panel of row.panels) {
        for (const { expr } of panel.targets) {
          // Each selector of a raw series; the SLO recording rules are per job.
          for (const [, metric, labels] of expr.matchAll(/([\w:]+)\{([^}]*)\}/g)) {
            if (metric!.startsWith('flashsale:')) continue;
            if (!labels!.includes('environment=~"$environment"') || !labels!.includes('instance=~"$instance"')) {
              unfiltered.push(`${panel.title}: ${metric}`);
            }
          }
        }
      }
    }
    assert.deepEqual(unfiltered, []);
  });

  it('docker-compose.yml mounts only files that exist, pins every image, and agrees with the Prometheus and Grafana config', () => {
    type Service = {
      image?: string;
      build?: string;
      volumes?: string[];
      ports?: string[];
      healthcheck?: object;
      environment?: Record<string, string>;
    };
    const compose = yaml<{ services: Record<string, Service> }>('docker-compose.yml');
    for (const [name, service] of Object.entries(compose.services)) {
      assert.ok(service.healthcheck, `${name} has no health check`);
      if (service.image) assert.match(service.image, /:v?\d+\.\d+/, `${name} image is not pinned to a version`);
      for (const volume of service.volumes ?? []) {
        const source = volume.split(':')[0]!;
        if (source.startsWith('./')) assert.ok(existsSync(path(source.slice(2))), `${name} mounts missing ${source}`);
      }
    }
    assert.ok(existsSync(path('Dockerfile')));
    const target = (scrape: string) => {
      const [host, port] = scrape.split(':');
      assert.ok(compose.services[host!], `${scrape} names no Compose service`);
      return { host: host!, port: port! };
    };
    const prom = yaml<{
      scrape_configs: { static_configs: { targets: string[] }[] }[];
      alerting: { alertmanagers: { static_configs: { targets: string[] }[] }[] };
    }>('monitoring/prometheus/prometheus.yml');
    const app = target(prom.scrape_configs[0]!.static_configs[0]!.targets[0]!);
    assert.equal(compose.services[app.host]!.environment!.PORT, app.port);
    const am = target(prom.alerting.alertmanagers[0]!.static_configs[0]!.targets[0]!);
    assert.ok(compose.services[am.host]!.ports!.some((p) => p.endsWith(`:${am.port}`)));
    const grafana = yaml<{ datasources: { url: string }[] }>(
      'monitoring/grafana/provisioning/datasources/prometheus.yml',
    );
    const url = new URL(grafana.datasources[0]!.url);
    assert.ok(compose.services[url.hostname]!.ports!.some((p) => p.endsWith(`:${url.port}`)));
    const redis = compose.services.redis!;
    assert.ok(JSON.stringify(redis).includes('noeviction') && JSON.stringify(redis).includes('appendonly'));
  });
});
