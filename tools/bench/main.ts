/**
 * npm run bench [-- --duration 15 --connections 64 --workers 2 --rounds 3 --no-write]
 * npm run bench -- --pinned [--duration 10 --rounds 3 --only <load> --no-write]: CPU per request, see pinned.ts.
 * npm run bench -- --ab <another build> [--only checkout-only --windows 12 --duration 3]: two builds' CPU
 *   per request on one load, both services on one core at once (ab.ts)
 * npm run bench -- --streams [--watchers 5000 --rounds 3]: the live event streams (streams.ts)
 * npm run bench -- --retention [--rows 500000 --duration 25 --rounds 3 --rate 1000 --connections 16]: checkout p99
 *   while a retention pass retires a big partition, against windows without (retention.ts)
 * The same command every time: for each load, a fresh database and a fresh
 * service with a 10,000-item sale, loaded by wrk; a bare node:http server in
 * the same run as the yardstick. The yardstick and the stampede alternate for
 * `rounds` rounds and the median round is reported: on a shared machine one
 * pair of 15-second loads can land in a slow spell. Results go into
 * docs/PERFORMANCE.md.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import {
  cpuSeconds,
  family,
  metricSum,
  peakRssMb,
  quantile,
  readings,
  SLOW_COMMIT_S,
  slowerThan,
  slowText,
  wrk,
  wrkAsync,
  type WrkResult,
} from './measure.js';
import { watchPhases, type Phase, type Phases } from './phases.js';
import { writeResults } from './results.js';
import { pinnedBench } from './pinned.js';
import { abBench } from './ab.js';
import { jwtLoad, verificationShares } from './auth.js';
import { instrumentationShare } from './profile.js';
import { machine, root, startHello, startService } from './service.js';
import { queueLines, queueLoads } from './queue.js';

const { values } = parseArgs({
  options: {
    duration: { type: 'string' },
    connections: { type: 'string' },
    workers: { type: 'string', default: '2' },
    rounds: { type: 'string' },
    'no-write': { type: 'boolean', default: false },
    pinned: { type: 'boolean', default: false },
    only: { type: 'string' },
    ab: { type: 'string' },
    windows: { type: 'string', default: '12' },
    streams: { type: 'boolean', default: false },
    watchers: { type: 'string', default: '5000' },
    retention: { type: 'boolean', default: false },
    rows: { type: 'string', default: '500000' },
    rate: { type: 'string', default: '1000' },
  },
});
const seconds = Number(values.duration ?? 15);
const connections = Number(values.connections ?? (values.retention ? 16 : 64));
const here = new URL('../../../tools/bench/', import.meta.url).pathname;
const log = (line: string) => process.stdout.write(`${line}\n`);

if (values.ab) {
  await abBench({
    other: values.ab,
    load: values.only ?? 'checkout-only',
    windows: Number(values.windows),
    seconds: Number(values.duration ?? 3),
    connections,
  });
  process.exit(0);
}

if (values.pinned) {
  await pinnedBench({
    seconds: Number(values.duration ?? 10),
    connections,
    rounds: Number(values.rounds ?? 3),
    write: !values['no-write'],
    only: values.only,
  });
  process.exit(0);
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
  /** The stampede's selling and sold-out phases (phases.ts), when watched. */
  phases?: Phases;
  /** Group commits slower than SLOW_COMMIT_S during the load, and the bucket (s) of the slowest. */
  slowCommits: ReturnType<typeof slowerThan>;
}

/** One load against a fresh database and a fresh service. */
async function scenario(
  name: string,
  script: string,
  workers: number,
  {
    profileDir,
    env = {},
    phased = false,
  }: {
    /** Run under `--cpu-prof`, its profile written here. */
    profileDir?: string;
    /** More environment, for the service and wrk alike (AUTH=jwt: tools/bench/auth.ts). */
    env?: Record<string, string>;
    /** Watch the sale sell out (phases.ts). */
    phased?: boolean;
  } = {},
): Promise<Row> {
  const flags = profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : [];
  const service = await startService({ workers, nodeFlags: flags, env });
  const { base, sale, coldStartMs } = service;
  try {
    const creation =
      (await metricSum(base, 'sale_creation_duration_seconds_sum')) /
      Math.max(1, await metricSum(base, 'sale_creation_duration_seconds_count'));
    const pids = family(service.pid);
    const cpuBefore = cpuSeconds(pids);
    const before = await readings(base);
    const t0 = Date.now();
    const load = wrkAsync(base, seconds, connections, `${here}${script}`, { SALE: sale, ITEMS: '10000', ...env });
    const phases = phased ? await watchPhases(base, pids, 10_000, load) : undefined;
    const result = await load;
    const elapsed = (Date.now() - t0) / 1000;
    const cpuCores = (cpuSeconds(pids) - cpuBefore) / elapsed;
    // With several workers each scrape reaches one of them: the server-side
    // figures are then a sample of one worker's requests.
    const after = await readings(base);
    const row = {
      name,
      workers,
      wrk: result,
      serverP50: quantile(0.5, before.latency, after.latency),
      serverP99: quantile(0.99, before.latency, after.latency),
      cpuCores,
      peakRssMb: peakRssMb(pids),
      saleCreationMs: creation * 1000,
      coldStartMs,
      phases,
      slowCommits: slowerThan(SLOW_COMMIT_S, before.commits, after.commits),
    };
    log(`${name} (${workers} process${workers > 1 ? 'es' : ''}): ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms`);
    return row;
  } finally {
    await service.stop();
  }
}

async function baseline(): Promise<WrkResult> {
  const hello = await startHello();
  try {
    const result = wrk(hello.url, seconds, connections);
    log(`bare node:http: ${result.rps.toFixed(0)} req/s`);
    return result;
  } finally {
    await hello.stop();
  }
}

if (values.retention) {
  const { retentionBench } = await import('./retention.js');
  await retentionBench({
    root,
    seconds: Number(values.duration ?? 25),
    rounds: Number(values.rounds ?? 3),
    rows: Number(values.rows),
    rate: Number(values.rate),
    connections,
    write: !values['no-write'],
    log,
  });
  process.exit(0);
}

if (values.streams) {
  const { streamsBench } = await import('./streams.js');
  await streamsBench({
    root,
    seconds,
    connections,
    watchers: Number(values.watchers),
    rounds: Number(values.rounds ?? 3),
    write: !values['no-write'],
    log,
  });
  process.exit(0);
}

const pairs: { hello: WrkResult; stampede: Row }[] = [];
for (let round = 0; round < Number(values.rounds ?? 3); round++) {
  pairs.push({ hello: await baseline(), stampede: await scenario('stampede', 'stampede.lua', 1, { phased: true }) });
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
await scenario('stampede (profiled)', 'stampede.lua', 1, { profileDir });
const instrumentation = instrumentationShare(join(profileDir, readdirSync(profileDir)[0]!));
rmSync(profileDir, { recursive: true, force: true });
log(`instrumentation: ${(instrumentation * 100).toFixed(1)}% of the service's busy CPU`);

// AUTH=jwt: the same requests (stampede-jwt.lua) without and with verification,
// then a shorter profiled run to see what verifying, and importing keys, costs.
const jwtDir = mkdtempSync(join(tmpdir(), 'fs-bench-jwt-'));
const jwt = await jwtLoad(jwtDir);
const jwtOff = await scenario('stampede-jwt, AUTH=off', 'stampede-jwt.lua', 1, { env: jwt.wrkEnv });
const jwtOn = await scenario('stampede-jwt, AUTH=jwt', 'stampede-jwt.lua', 1, {
  env: { ...jwt.wrkEnv, ...jwt.service },
});
await scenario('stampede-jwt (profiled)', 'stampede-jwt.lua', 1, {
  profileDir: jwtDir,
  env: { ...jwt.wrkEnv, ...jwt.service },
});
const verification = verificationShares(
  join(
    jwtDir,
    readdirSync(jwtDir).find((f) => f.endsWith('.cpuprofile'))!,
  ),
);
rmSync(jwtDir, { recursive: true, force: true });
rows.push(jwtOff, jwtOn);
/** The service's CPU time per answered request, in µs. */
const cpuPerRequest = (r: Row) => (r.cpuCores * seconds * 1e6) / r.wrk.requests;
const verifyUs = cpuPerRequest(jwtOn) - cpuPerRequest(jwtOff);
log(`AUTH=jwt: ${verifyUs.toFixed(0)} µs of CPU per request`);

const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
/** A phase's length, rate and the service's CPU per request. */
const phase = (p: Phase) =>
  `${f(p.seconds)} s at ${f(p.requests / p.seconds, 0)} req/s, ${f((p.cpu * 1e6) / p.requests, 0)} µs of CPU a request`;
const phasesOf = (r: Row) =>
  r.phases!.soldOut.requests > 0
    ? `selling ${phase(r.phases!.selling)}; sold out ${phase(r.phases!.soldOut)}`
    : `selling ${phase(r.phases!.selling)}; not sold out within the load`;
const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
const lines = [
  `Run on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench\` (wrk, 2 threads, ${connections} connections, ${seconds} s per load; a fresh database and service per load).`,
  '',
  ...machine('shared by the service, PostgreSQL, Redis and wrk').map((m) => `- ${m}`),
  '',
  `| load | processes | req/s | vs bare node:http | non-2xx | client p50 / p99 ms | server p50 / p99 ms | server CPU (cores) | peak RSS MB | commits over ${SLOW_COMMIT_S * 1000} ms |`,
  '|---|---|---|---|---|---|---|---|---|---|',
  `| bare node:http hello-world | 1 | ${f(hello.rps, 0)} | 100% | ${hello.non2xx} | ${f(hello.p50, 2)} / ${f(hello.p99, 2)} | | | | |`,
  ...rows.map(
    (r) =>
      `| ${r.name} | ${r.workers} | ${f(r.wrk.rps, 0)} | ${f((r.wrk.rps / hello.rps) * 100, 0)}% | ${r.wrk.non2xx} of ${r.wrk.requests} | ${f(r.wrk.p50, 2)} / ${f(r.wrk.p99, 2)} | ${f(r.serverP50, 2)} / ${f(r.serverP99, 2)} | ${f(r.cpuCores, 2)} | ${f(r.peakRssMb, 0)} | ${slowText(r.slowCommits)} |`,
  ),
  '',
  `The yardstick and the stampede alternated ${pairs.length} times: ${pairs.map((p) => `${f(p.stampede.wrk.rps, 0)} / ${f(p.hello.rps, 0)} req/s (${f(ratioOf(p) * 100, 0)}%, p99 ${f(p.stampede.wrk.p99, 2)} ms, commits over ${SLOW_COMMIT_S * 1000} ms: ${slowText(p.stampede.slowCommits)})`).join(', ')}. The table shows the median round; the other loads are compared with its yardstick. A commit over ${SLOW_COMMIT_S * 1000} ms is PostgreSQL waiting for the disk to flush its WAL (docs/PERFORMANCE.md, "The stampede's p99 and the disk").`,
  '',
  `The stampede in its two phases (tools/bench/phases.ts: until its 10,000 items are sold, then checkouts of sold items answered from memory), round by round: ${pairs.map((p) => phasesOf(p.stampede)).join(' | ')}.`,
  '',
  `Creating a 10,000-item sale: ${f(stampede.saleCreationMs, 0)} ms. Cold start to healthy: ${f(stampede.coldStartMs, 0)} ms.`,
  '',
  `Instrumentation (prom-client and the service's metrics code, in a CPU profile of a stampede): ${f(instrumentation * 100)}% of the service's busy CPU (aim: under 10%).`,
  '',
  `AUTH=jwt (RS256, AUTH_PUBLIC_KEY; stampede-jwt.lua sends the same requests, bearer token included, to both): the service spends ${f(cpuPerRequest(jwtOn), 0)} µs of CPU per request with verification and ${f(cpuPerRequest(jwtOff), 0)} µs without, so verifying costs ${f(verifyUs, 0)} µs per request; ${f((jwtOn.wrk.rps / jwtOff.wrk.rps) * 100, 0)}% of the requests per second of AUTH=off. In a CPU profile of it, jose's verification takes ${f(verification.verify * 100)}% of the service's busy CPU, of which importing keys ${f(verification.importing * 100)}% (to be paid once per key and algorithm, not per token).`,
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
    await queueLoads({ here, seconds, connections }),
    hello,
    rows.find((r) => r.name === 'checkout-only')!.wrk,
  ),
);
for (const line of lines) log(line);
if (!values['no-write']) {
  writeResults(root, lines, '<!-- results: written by npm run bench -->');
  log('written to docs/PERFORMANCE.md');
}
