/**
 * The container and the Compose stack, read as files: Docker cannot run on the
 * development machines, so these check what `docker build` and
 * `docker compose up` would be given. What runs inside is tested elsewhere
 * (the service in every other file, the monitoring stack in monitoring*.test.ts).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { format, resolveConfig } from 'prettier';
import { parse, stringify } from 'yaml';

import { loadConfig } from '../src/config.js';

const root = new URL('../../', import.meta.url).pathname;
const read = (p: string) => readFileSync(`${root}${p}`, 'utf8');

type Service = {
  image?: string;
  build?: string;
  restart?: string;
  init?: boolean;
  stop_grace_period?: string;
  ports?: string[];
  volumes?: string[];
  environment?: Record<string, string>;
  deploy?: { replicas?: number };
  networks?: { default?: { ipv4_address?: string } };
};
const compose = () =>
  parse(read('docker-compose.yml')) as {
    services: Record<string, Service>;
    networks: { default: { ipam: { config: { subnet: string }[] } } };
  };

/** The Dockerfile's stages: the FROM image, and the instructions up to the next FROM (continuations joined). */
function stages() {
  const lines = read('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const result: { from: string; lines: string[] }[] = [];
  for (const line of lines) {
    const from = /^FROM\s+(\S+)/i.exec(line);
    if (from) result.push({ from: from[1]!, lines: [] });
    else result.at(-1)?.lines.push(line);
  }
  return result;
}

describe('Dockerfile', () => {
  it('builds on the maintained Node LTS (24) in every stage', () => {
    for (const stage of stages()) assert.match(stage.from, /^node:24\.\d+-/, `${stage.from} is not Node 24, pinned`);
  });

  it('is multi-stage: the final image holds dist/src and production dependencies only', () => {
    const all = stages();
    assert.ok(all.length >= 2, 'a single stage ships the sources, tests and dev tools');
    const final = all.at(-1)!.lines;
    const copies = final.filter((l) => /^COPY\s/i.test(l));
    assert.deepEqual(
      copies.map((l) => l.replace(/\s+/g, ' ')),
      ['COPY package.json package-lock.json ./', 'COPY --from=build /app/dist/src ./dist/src'],
    );
    assert.ok(
      final.some((l) => /^RUN .*npm ci .*--omit=dev/.test(l)),
      'production dependencies are installed with npm ci --omit=dev',
    );
  });

  it('runs the service under tini, so SIGTERM reaches it at any moment and docker stop drains', () => {
    const final = stages().at(-1)!.lines;
    assert.ok(final.some((l) => /apt-get install .*\btini\b/.test(l)));
    assert.ok(final.includes('ENTRYPOINT ["/usr/bin/tini", "--"]'));
    assert.ok(final.includes('CMD ["node", "dist/src/server.js"]'));
    assert.ok(final.includes('USER node'));
  });

  it('.dockerignore keeps the host node_modules, dist and git history out of the build context', () => {
    const ignored = read('.dockerignore').split('\n');
    for (const entry of ['node_modules', 'dist', '.git']) assert.ok(ignored.includes(entry), entry);
  });
});

describe('docker-compose.yml', () => {
  it('restarts the app unless it was stopped, and gives its drain longer than REQUEST_TIMEOUT_MS before a kill', () => {
    const app = compose().services.app!;
    assert.equal(app.restart, 'unless-stopped');
    // The drain is bounded by REQUEST_TIMEOUT_MS (10 s by default, the same
    // as Docker's default grace period): give it that plus the flush.
    const timeoutMs = Number(app.environment?.REQUEST_TIMEOUT_MS ?? 10_000);
    const grace = /^(\d+)s$/.exec(app.stop_grace_period ?? '');
    assert.ok(grace, `stop_grace_period ${app.stop_grace_period} is not in seconds`);
    assert.ok(Number(grace[1]) * 1000 >= timeoutMs + 10_000, `${app.stop_grace_period} for a ${timeoutMs} ms drain`);
  });

  it('publishes only the balancer in front of the app on every interface; every other UI and port on 127.0.0.1 only', () => {
    for (const [name, service] of Object.entries(compose().services)) {
      for (const port of service.ports ?? []) {
        if (name === 'lb') continue;
        assert.match(port, /^127\.0\.0\.1:\d+:\d+$/, `${name} publishes ${port} beyond this host`);
      }
    }
    assert.deepEqual(
      Object.entries(compose().services)
        .filter(([, s]) => (s.ports ?? []).some((p) => p.startsWith('127.0.0.1:')))
        .map(([name]) => name)
        .sort(),
      ['alertmanager', 'grafana', 'prometheus'],
    );
  });

  it('labels every bind mount for SELinux (z), read-only unless the service writes to it', () => {
    for (const [name, service] of Object.entries(compose().services)) {
      for (const volume of service.volumes ?? []) {
        if (!volume.startsWith('./')) continue; // named volumes need no label
        const options = (volume.split(':')[2] ?? '').split(',');
        assert.ok(options.includes('z'), `${name} mounts ${volume} without :z`);
        assert.ok(options.includes('ro'), `${name} mounts ${volume} writable`);
      }
    }
  });
});

describe('npm install', () => {
  it('prints no engine warnings on this Node (npm ci --dry-run, from the lockfile alone)', () => {
    const run = spawnSync('npm', ['ci', '--dry-run', '--offline', '--no-audit', '--no-fund'], {
      cwd: root,
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    assert.doesNotMatch(`${run.stdout}${run.stderr}`, /EBADENGINE/);
  });
});

/**
 * monitoring/prometheus/prometheus.yml for the Compose stack: the flashsale
 * job finds every app replica through Docker's DNS instead of one static
 * target, and each replica keeps its own `instance` (its address).
 */
async function composePrometheus() {
  type Job = { job_name: string; static_configs?: { targets: string[]; labels: Record<string, string> }[] };
  const config = parse(read('monitoring/prometheus/prometheus.yml')) as { scrape_configs: Job[] };
  const job = config.scrape_configs.find((j) => j.job_name === 'flashsale')!;
  const { targets, labels } = job.static_configs![0]!;
  const [host, port] = targets[0]!.split(':');
  delete job.static_configs;
  Object.assign(job, {
    dns_sd_configs: [{ names: [host], type: 'A', port: Number(port), refresh_interval: '5s' }],
    relabel_configs: Object.entries(labels)
      .filter(([name]) => name !== 'instance')
      .map(([name, value]) => ({ target_label: name, replacement: value })),
  });
  const header =
    '# Generated from monitoring/prometheus/prometheus.yml by `npm run compose`: edit that file, never this one.\n';
  const options = await resolveConfig(`${root}deploy/compose/prometheus.yml`);
  return format(header + stringify(config, { lineWidth: 0 }), { ...options, parser: 'yaml' });
}

describe('docker-compose.yml, several app replicas', () => {
  it('runs the app as several replicas behind HAProxy, which sends to every replica on the app port and is the only proxy the app trusts', () => {
    const { services, networks } = compose();
    const app = services.app!;
    assert.ok((app.deploy?.replicas ?? 1) >= 2, 'one app replica');
    assert.equal(app.ports, undefined, 'a published app port clashes between replicas');
    const lb = services.lb!;
    assert.ok(lb.volumes?.includes('./deploy/compose/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro,z'));
    const haproxy = read('deploy/compose/haproxy.cfg');
    const template = /^ {2}server-template app (\d+) (\w+):(\d+) check resolvers docker/m.exec(haproxy);
    assert.ok(template, 'no server-template for the app');
    assert.ok(Number(template[1]) >= app.deploy!.replicas!);
    assert.equal(template[2], 'app');
    assert.equal(template[3], app.environment!.PORT);
    const lbAddress = lb.networks!.default!.ipv4_address!;
    assert.equal(loadConfig(app.environment).TRUST_PROXY, lbAddress);
    assert.ok(lbAddress.startsWith(networks.default.ipam.config[0]!.subnet.split('.').slice(0, 2).join('.')));
  });

  it("Prometheus discovers every replica by DNS: deploy/compose/prometheus.yml is monitoring/'s config so changed (UPDATE_COMPOSE=1 rewrites it), and promtool accepts it", async () => {
    const { services } = compose();
    assert.ok(
      services.prometheus!.volumes!.includes('./deploy/compose/prometheus.yml:/etc/prometheus/prometheus.yml:ro,z'),
    );
    const generated = await composePrometheus();
    if (process.env.UPDATE_COMPOSE === '1') writeFileSync(`${root}deploy/compose/prometheus.yml`, generated);
    assert.equal(read('deploy/compose/prometheus.yml'), generated, 'drifted from monitoring/: run npm run compose');
    const check = spawnSync('promtool', ['check', 'config', `${root}deploy/compose/prometheus.yml`], {
      encoding: 'utf8',
    });
    assert.equal(check.status, 0, check.stderr + check.stdout);
  });
});
