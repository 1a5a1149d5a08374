/**
 * Several service processes behind a real HAProxy (Debian's, installed by
 * scripts/install-tools.mjs) configured as docker-compose.yml runs it
 * (deploy/compose/haproxy.cfg). The stats page (CSV) tells which servers
 * HAProxy sees up.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
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
  const stop = async () => {
    await Promise.all(services.map((s) => s.proc.kill()));
    haproxy.kill();
    await exited;
    await rm(dir, { recursive: true, force: true });
  };
  try {
    // Three processes starting at once on a busy 2-core machine can take a while.
    await Promise.all(services.map((s) => serviceReady(s.port, 30_000)));
    await waitFor('HAProxy to see every instance up', async () => ((await up()).length === count ? true : undefined));
  } catch (err) {
    await stop(); // nothing left running to hold the test process open
    throw new Error(`${(err as Error).message}; haproxy said: ${output}`);
  }
  return { url: `http://127.0.0.1:${port}`, services, up, stop };
}

/**
 * deploy/compose/haproxy.cfg (what docker-compose.yml runs), with local
 * addresses: the instances' ports instead of Docker's DNS, free ports for the
 * frontend and the stats page.
 */
function haproxyConfig(port: number, statsPort: number, services: { name: string; port: number }[]) {
  const servers = services.map((s) => `  server ${s.name} 127.0.0.1:${s.port} check`).join('\n');
  const replace = (text: string, from: RegExp, to: string) => {
    if (!from.test(text)) throw new Error(`deploy/compose/haproxy.cfg has no ${String(from)}`);
    return text.replace(from, to);
  };
  let config = readFileSync(new URL('../../deploy/compose/haproxy.cfg', import.meta.url), 'utf8');
  config = replace(config, /^resolvers docker\n(?: {2}.*\n)*/m, '');
  config = replace(config, /^ {2}bind :8080$/m, `  bind 127.0.0.1:${port}`);
  config = replace(config, /^ {2}server-template .*$/m, servers);
  return replace(config, /^ {2}bind 127\.0\.0\.1:8404$/m, `  bind 127.0.0.1:${statsPort}`);
}
