/**
 * Several service processes behind a real HAProxy (Debian's, installed by
 * scripts/install-tools.mjs) that health-checks them, as a deployment would
 * run them. The stats page (CSV) tells which servers HAProxy sees up.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { freePort, serviceReady, startService, waitFor, type Proc } from './process.js';

export interface Balanced {
  /** The balancer's address, http://127.0.0.1:port. */
  url: string;
  services: { name: string; port: number; proc: Proc }[];
  /** The servers HAProxy currently sends requests to. */
  up(): Promise<string[]>;
  stop(): Promise<void>;
}

/** HAProxy in front of `count` instances of the service started with `env`. */
export async function startBalanced(count: number, env: Record<string, string>): Promise<Balanced> {
  const services = await Promise.all(
    Array.from({ length: count }, async (_, i) => {
      const port = await freePort();
      return { name: `app${i + 1}`, port, proc: startService({ ...env, PORT: String(port), HOST: '127.0.0.1' }) };
    }),
  );
  const [port, statsPort] = [await freePort(), await freePort()];
  const dir = await mkdtemp(join(tmpdir(), 'fs-haproxy-'));
  const config = join(dir, 'haproxy.cfg');
  await writeFile(config, haproxyConfig(port, statsPort, services));
  const haproxy = spawn('haproxy', ['-f', config, '-db']);
  let output = '';
  haproxy.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise((r) => haproxy.once('exit', r));
  const stats = `http://127.0.0.1:${statsPort}/stats;csv`;
  const up = async () =>
    (await (await fetch(stats)).text())
      .split('\n')
      .map((l) => l.split(','))
      .filter((f) => f[0] === 'app' && f[1]?.startsWith('app') && f[17] === 'UP')
      .map((f) => f[1]!);
  try {
    await Promise.all(services.map((s) => serviceReady(s.port)));
    await waitFor('HAProxy to see every instance up', async () => ((await up()).length === count ? true : undefined));
  } catch (err) {
    throw new Error(`${(err as Error).message}; haproxy said: ${output}`);
  }
  return {
    url: `http://127.0.0.1:${port}`,
    services,
    up,
    async stop() {
      await Promise.all(services.map((s) => s.proc.kill()));
      haproxy.kill();
      await exited;
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Round robin with health checks every 200 ms (down after 2 failures, up after
 * 2 successes). The check asks the instance itself (GET /openapi.json: served
 * from memory), not /health: a shared dependency's outage would fail every
 * instance's /health at once and leave HAProxy nothing to send requests to,
 * when each instance would have answered a fast 503 in the error shape. One
 * request per backend connection (http-server-close): an instance that stops
 * listening (SIGTERM) or died (SIGKILL) refuses the connection, and the
 * request is redispatched to another instance before anything was sent.
 */
function haproxyConfig(port: number, statsPort: number, services: { name: string; port: number }[]) {
  return `global
  maxconn 4096

defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
  option http-server-close
  option forwardfor

frontend fe
  bind 127.0.0.1:${port}
  default_backend app

backend app
  balance roundrobin
  option httpchk GET /openapi.json
  http-check expect status 200
  default-server inter 200ms fall 2 rise 2
${services.map((s) => `  server ${s.name} 127.0.0.1:${s.port} check`).join('\n')}

listen stats
  bind 127.0.0.1:${statsPort}
  stats enable
  stats uri /stats
`;
}
