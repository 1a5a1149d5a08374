/**
 * npm run bench [-- --duration 15 --connections 64 --workers 2 --rounds 3 --no-write]
 * The same command every time: for each load, a fresh database and a fresh
 * service with a 10,000-item sale, loaded by wrk; a bare node:http server in
 * the same run as the yardstick. The yardstick and the stampede alternate for
 * `rounds` rounds and the median round is reported: on a shared machine one
 * pair of 15-second loads can land in a slow spell. Results go into
 * docs/PERFORMANCE.md.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import pg from 'pg';

import { cpuSeconds, family, latencyBuckets, metricSum, peakRssMb, quantile, wrk, type WrkResult } from './measure.js';
import { instrumentationShare } from './profile.js';
import { queueLines, queueLoads } from './queue.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '15' },
    connections: { type: 'string', default: '64' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '3' },
    'no-write': { type: 'boolean', default: false },
  },
});
const seconds = Number(values.duration);
const connections = Number(values.connections);
const root = new URL('../../../', import.meta.url).pathname;
const here = new URL('../../../tools/bench/', import.meta.url).pathname;
const PG = 'postgres://postgres@127.0.0.1:5432';
const log = (line: string) => process.stdout.write(`${line}\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  const { createServer } = await import('node:net');
  const probe = createServer();
  await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
  const { port } = probe.address() as { port: number };
  await new Promise((r) => probe.close(r));
  return port;
}

async function until(probe: () => Promise<boolean>, ms: number) {
  const deadline = Date.now() + ms;
  while (!(await probe().catch(() => false))) {
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}

interface Row {
  name: string;
  workers: number;
  wrk: WrkResult;
  serverP50: number;
  serverP99: number;
  cpuCores: number;
  peakRssMb: number;
  saleCreationMs: number;
  coldStartMs: number;
}

/** One load against a fresh database and a fresh service. */
async function scenario(name: string, script: string, workers: number, profileDir?: string): Promise<Row> {
  const db = `fs_bench_${randomBytes(4).toString('hex')}`;
  const port = await freePort();
  const started = Date.now();
  const flags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const child = spawn(process.execPath, [...flags, `${root}dist/src/server.js`], {
    env: {
      ...process.env,
      PORT: String(port),
      DATABASE_URL: `${PG}/${db}`,
      REDIS_PREFIX: db,
      SALE_ITEMS: '10000',
      WORKERS: String(workers),
      LOG_LEVEL: 'warn',
      // The bench measures the service, not its abuse protection.
      RATE_LIMIT_USER_PER_SEC: '0',
      RATE_LIMIT_IP_PER_SEC: '0',
    },
    stdio: 'ignore',
  });
  const base = `http://127.0.0.1:${port}`;
  try {
    await until(async () => (await fetch(`${base}/health`)).ok, 30_000);
    const coldStartMs = Date.now() - started;
    const sale = ((await (await fetch(`${base}/sales/active`)).json()) as { id: string }).id;
    const creation =
      (await metricSum(base, 'sale_creation_duration_seconds_sum')) /
      Math.max(1, await metricSum(base, 'sale_creation_duration_seconds_count'));
    const pids = family(child.pid!);
    const cpuBefore = cpuSeconds(pids);
    const before = await latencyBuckets(base);
    const t0 = Date.now();
    const result = wrk(base, seconds, connections, `${here}${script}`, { SALE: sale, ITEMS: '10000' });
    const elapsed = (Date.now() - t0) / 1000;
    const cpuCores = (cpuSeconds(pids) - cpuBefore) / elapsed;
    // With several workers each scrape reaches one of them: the server-side
    // figures are then a sample of one worker's requests.
    const after = await latencyBuckets(base);
    const row = {
      name,
      workers,
      wrk: result,
      serverP50: quantile(0.5, before, after),
      serverP99: quantile(0.99, before, after),
      cpuCores,
      peakRssMb: peakRssMb(pids),
      saleCreationMs: creation * 1000,
      coldStartMs,
    };
    log(`${name} (${workers} process${workers > 1 ? 'es' : ''}): ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms`);
    return row;
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const admin = new pg.Client({ connectionString: `${PG}/postgres` });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${db} WITH (FORCE)`);
    await admin.end();
  }
}

async function baseline(): Promise<WrkResult> {
  const port = await freePort();
  const child = spawn(process.execPath, [`${root}dist/tools/bench/hello.js`], {
    env: { ...process.env, PORT: String(port) },
    stdio: 'ignore',
  });
  try {
    await until(async () => (await fetch(`http://127.0.0.1:${port}/`)).ok, 10_000);
    const result = wrk(`http://127.0.0.1:${port}/`, seconds, connections);
    log(`bare node:http: ${result.rps.toFixed(0)} req/s`);
    return result;
  } finally {
    child.kill();
  }
}

function machine() {
  const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { encoding: 'utf8' }).trim();
  return [
    `CPU: ${cpus()[0]!.model}, ${cpus().length} cores (shared by the service, PostgreSQL, Redis and wrk)`,
    `Memory: ${(totalmem() / 2 ** 30).toFixed(0)} GiB`,
    `Node ${process.version}; PostgreSQL ${sh('psql', ['-h', '127.0.0.1', '-U', 'postgres', '-tAc', 'show server_version'])}; Redis ${/redis_version:(\S+)/.exec(sh('redis-cli', ['INFO', 'server']))![1]}; ${spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split(' [')[0]}`,
  ];
}

const pairs: { hello: WrkResult; stampede: Row }[] = [];
for (let round = 0; round < Number(values.rounds); round++) {
  pairs.push({ hello: await baseline(), stampede: await scenario('stampede', 'stampede.lua', 1) });
}
const ratioOf = (p: (typeof pairs)[number]) => p.stampede.wrk.rps / p.hello.rps;
const byRatio = [...pairs].sort((a, b) => ratioOf(a) - ratioOf(b));
const { hello, stampede } = byRatio[Math.floor((byRatio.length - 1) / 2)]!;
const workers = Number(values.workers);
const rows: Row[] = [
  stampede,
  await scenario('checkout-only', 'checkout.lua', 1),
  await scenario('purchase-heavy', 'purchase-heavy.lua', 1),
  ...(workers > 1 ? [await scenario('stampede', 'stampede.lua', workers)] : []),
];

// A shorter stampede under the V8 profiler, only to see what the metrics cost.
const profileDir = mkdtempSync(join(tmpdir(), 'fs-bench-prof-'));
await scenario('stampede (profiled)', 'stampede.lua', 1, profileDir);
const instrumentation = instrumentationShare(join(profileDir, readdirSync(profileDir)[0]!));
rmSync(profileDir, { recursive: true, force: true });
log(`instrumentation: ${(instrumentation * 100).toFixed(1)}% of the service's busy CPU`);

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const lines = [
  `Run on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\` (wrk, 2 threads, ${connections} connections, ${seconds} s per load; a fresh database and service per load).`,
  '',
  ...machine().map((m) => `- ${m}`),
  '',
  '| load | processes | req/s | vs bare node:http | non-2xx | client p50 / p99 ms | server p50 / p99 ms | server CPU (cores) | peak RSS MB |',
  '|---|---|---|---|---|---|---|---|---|',
  `| bare node:http hello-world | 1 | ${f(hello.rps, 0)} | 100% | ${hello.non2xx} | ${f(hello.p50, 2)} / ${f(hello.p99, 2)} | | | |`,
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.workers} | ${f(r.wrk.rps, 0)} | ${f((r.wrk.rps / hello.rps) * 100, 0)}% | ${r.wrk.non2xx} of ${r.wrk.requests} | ${f(r.wrk.p50, 2)} / ${f(r.wrk.p99, 2)} | ${f(r.serverP50, 2)} / ${f(r.serverP99, 2)} | ${f(r.cpuCores, 2)} | ${f(r.peakRssMb, 0)} |`,
  ),
  '',
  `The yardstick and the stampede alternated ${pairs.length} times: ${pairs.map((p) => `${f(p.stampede.wrk.rps, 0)} / ${f(p.hello.rps, 0)} req/s (${f(ratioOf(p) * 100, 0)}%)`).join(', ')}. The table shows the median round; the other loads are compared with its yardstick.`,
  '',
  `Creating a 10,000-item sale: ${f(stampede.saleCreationMs, 0)} ms. Cold start to healthy: ${f(stampede.coldStartMs, 0)} ms.`,
  '',
  `Instrumentation (prom-client and the service's metrics code, in a CPU profile of a stampede): ${f(instrumentation * 100)}% of the service's busy CPU (aim: under 10%).`,
  '',
  '| target | measured | |',
  '|---|---|---|',
  `| stampede, one instance, ${connections} connections ≥ 15,000 req/s | ${f(stampede.wrk.rps, 0)} | ${verdict(stampede.wrk.rps >= 15_000)} |`,
  `| stampede p99 ≤ 25 ms | ${f(stampede.wrk.p99, 2)} ms | ${verdict(stampede.wrk.p99 <= 25)} |`,
  `| stampede ≥ 30% of bare node:http | ${f((stampede.wrk.rps / hello.rps) * 100, 0)}% | ${verdict(stampede.wrk.rps / hello.rps >= 0.3)} |`,
  `| 10,000-item sale created ≤ 0.5 s | ${f(stampede.saleCreationMs / 1000, 3)} s | ${verdict(stampede.saleCreationMs <= 500)} |`,
  `| peak RSS under load ≤ 250 MB | ${f(Math.max(...rows.filter((r) => r.workers === 1).map((r) => r.peakRssMb)), 0)} MB | ${verdict(Math.max(...rows.filter((r) => r.workers === 1).map((r) => r.peakRssMb)) <= 250)} |`,
];
// The waiting room's loads (tools/bench/queue.ts), compared with this run's yardstick and checkout.
lines.push(
  ...queueLines(
    await queueLoads({ root, here, seconds, connections }),
    hello,
    rows.find((r) => r.name === 'checkout-only')!.wrk,
  ),
);
for (const line of lines) log(line);
if (!values['no-write']) {
  const file = `${root}docs/PERFORMANCE.md`;
  const marker = '<!-- results: written by npm run bench -->';
  const doc = readFileSync(file, 'utf8');
  writeFileSync(file, `${doc.slice(0, doc.indexOf(marker) + marker.length)}\n\n${lines.join('\n')}\n`);
  log('written to docs/PERFORMANCE.md');
}
