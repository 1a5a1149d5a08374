/** Starting what the bench loads: the service against a fresh database, or the bare node:http yardstick. */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';

import pg from 'pg';

import { freePort } from '../ports.js';
import { unlinkKeys } from '../redis-keys.js';

export const PG = 'postgres://postgres@127.0.0.1:5432';
/** The service's default Redis, which the bench's services use. */
const REDIS = 'redis://127.0.0.1:6379';
export const root = new URL('../../../', import.meta.url).pathname;
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function until(probe: () => Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}

/** `cpu`: pin the process to that CPU (taskset execs node, so the pid is node's). */
function launch(args: string[], env: NodeJS.ProcessEnv, cpu?: number): ChildProcess {
  const [cmd, argv] =
    cpu === undefined ? [process.execPath, args] : ['taskset', ['-c', String(cpu), process.execPath, ...args]];
  return spawn(cmd, argv as string[], { env: { ...process.env, ...env }, stdio: 'ignore' });
}

const stop = async (child: ChildProcess) => {
  if (child.exitCode !== null) return;
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
};

/** The service with a fresh sale (10,000 items unless `items`) in a fresh database (dropped by `stop`). */
export async function startService(
  opts: {
    workers?: number;
    cpu?: number;
    nodeFlags?: string[];
    items?: number;
    /** More environment (AUTH=jwt: tools/bench/auth.ts). */
    env?: Record<string, string>;
    /** Another build's checkout (with its dist/ built) instead of this one (tools/bench/ab.ts). */
    build?: string;
  } = {},
) {
  const db = `fs_bench_${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  const started = Date.now();
  const child = launch(
    [...(opts.nodeFlags ?? []), join(opts.build ?? root, 'dist/src/server.js')],
    {
      PORT: String(port),
      DATABASE_URL: `${PG}/${db}`,
      REDIS_PREFIX: db,
      SALE_ITEMS: String(opts.items ?? 10_000),
      WORKERS: String(opts.workers ?? 1),
      LOG_LEVEL: 'warn',
      // The bench measures the service, not its abuse protection.
      RATE_LIMIT_USER_PER_SEC: '0',
      RATE_LIMIT_IP_PER_SEC: '0',
      ...opts.env,
    },
    opts.cpu,
  );
  const base = `http://127.0.0.1:${port}`;
  // A service that dies under a load (or is killed by someone else on this shared machine) says so here,
  // rather than as a refused connection somewhere later.
  let stopping = false;
  child.once('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`bench: the service exited during the run (code ${code}, signal ${signal})\n`);
  });
  const cleanUp = async () => {
    stopping = true;
    await stop(child);
    const admin = new pg.Client({ connectionString: `${PG}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
    // The sale's Redis state goes too: left behind, a load's hashes of hundreds of thousands of
    // codes expired together an hour later, and freeing them blocked the shared Redis for seconds,
    // failing the tests that ran then.
    await unlinkKeys(`${db}:*`, REDIS);
  };
  try {
    await until(async () => (await fetch(`${base}/health`)).ok, 30_000);
  } catch (err) {
    await cleanUp();
    throw err;
  }
  const coldStartMs = Date.now() - started;
  const sale = ((await (await fetch(`${base}/sales/active`)).json()) as { id: string }).id;
  return { base, pid: child.pid!, sale, coldStartMs, databaseUrl: `${PG}/${db}`, stop: cleanUp };
}

/** The bare node:http server: the least a Node HTTP server can do. */
export async function startHello(cpu?: number) {
  const port = await freePort();
  const child = launch([`${root}dist/tools/bench/hello.js`], { PORT: String(port) }, cpu);
  const url = `http://127.0.0.1:${port}/`;
  try {
    await until(async () => (await fetch(url)).ok, 10_000);
  } catch (err) {
    await stop(child);
    throw err;
  }
  return { url, pid: child.pid!, stop: () => stop(child) };
}

/** The machine and versions, for the results; `cores` says who shares the CPUs. */
export function machine(cores: string) {
  const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  return [
    `CPU: ${cpus()[0]!.model}, ${cpus().length} cores (${cores})`,
    `Memory: ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `Node ${process.version}; PostgreSQL ${sh('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-tAc', 'show server_version'])}; Redis ${/redis_version:(\S+)/.exec(sh('redis-cli', ['INFO', 'server']))![1]}; ${spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split(' [')[0]}`,
  ];
}
