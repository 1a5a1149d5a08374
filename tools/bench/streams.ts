/**
 * npm run bench -- --streams [--watchers 5000 --duration 15 --rounds 3]: the
 * stampede on one instance, alone and then with N live event streams open
 * (watchers.ts, in its own process), each against a fresh database and
 * service, alternating for a number of rounds. Prints the event latency
 * from a purchase to every stream (p50/p99), the service's memory per stream
 * and its CPU per event written to one stream, and the stampede's rate with
 * watchers as a share of its rate without, measured in the same run. Results
 * go into docs/PERFORMANCE.md.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

import { cpuSeconds, median, metricSum, usage, usageSince, wrk, type WrkResult } from './measure.js';
import { writeResults } from './results.js';
import { sleep, startService } from './service.js';

/** The stampede picks items below this index; the watchers' probes buy the ones above. */
const STAMPEDE_ITEMS = 9000;

interface Latency {
  p50: number;
  p99: number;
  max: number;
  received: number;
  expected: number;
  ended: number;
}

/** Seconds of probes alone, before the stampede: what one event written to one stream costs the service. */
const IDLE_SECONDS = 5;

/** Events the service has written to streams so far, every kind. */
const eventsSent = (base: string) => metricSum(base, 'sse_events_sent_total');

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** One stampede against a fresh service, with `watchers` streams open throughout (0: none). */
async function run(opts: { root: string; seconds: number; connections: number; watchers: number }) {
  const service = await startService({ env: { MAX_STREAMS: '20000' } });
  const { base, sale } = service;
  let watchers: ChildProcess | undefined;
  try {
    const rssBefore = rssKb(service.pid);
    let perStreamKb = NaN;
    let perWrite: { user: number; system: number } | undefined;
    if (opts.watchers > 0) {
      watchers = fork(
        `${opts.root}dist/tools/bench/watchers.js`,
        [base, sale, String(opts.watchers), String(STAMPEDE_ITEMS)],
        { stdio: 'ignore' },
      );
      await new Promise((ready) => watchers!.once('message', ready));
      await sleep(1000); // let the service's heap settle after the burst of connections
      perStreamKb = (rssKb(service.pid) - rssBefore) / opts.watchers;
      watchers.send('probe');
      // The probes alone: every event the service writes now is a stream's, with nothing else to pay for.
      const [before, sentBefore] = [usage(service.pid), await eventsSent(base)];
      await sleep(IDLE_SECONDS * 1000);
      const spent = usageSince(before, usage(service.pid));
      const writes = (await eventsSent(base)) - sentBefore;
      perWrite = { user: (spent.user * 1e6) / writes, system: (spent.system * 1e6) / writes };
    }
    const script = `${opts.root}tools/bench/stampede.lua`;
    // Where the 2 cores went: the service's share, and the watchers' own.
    const pids = { service: [service.pid], watchers: watchers ? [watchers.pid!] : [] };
    const cpu0 = { service: cpuSeconds(pids.service), watchers: cpuSeconds(pids.watchers) };
    const t0 = Date.now();
    const result = wrk(base, opts.seconds, opts.connections, script, { SALE: sale, ITEMS: String(STAMPEDE_ITEMS) });
    const elapsed = (Date.now() - t0) / 1000;
    const cores = {
      service: (cpuSeconds(pids.service) - cpu0.service) / elapsed,
      watchers: (cpuSeconds(pids.watchers) - cpu0.watchers) / elapsed,
    };
    let latency: Latency | undefined;
    if (watchers) {
      const answer = new Promise<{ result: Latency }>((r) =>
        watchers!.on('message', (m) => r(m as { result: Latency })),
      );
      watchers.send('stop');
      latency = (await answer).result;
    }
    return { result, perStreamKb, perWrite, latency, cores };
  } finally {
    watchers?.kill();
    await service.stop();
  }
}

export async function streamsBench(opts: {
  root: string;
  seconds: number;
  connections: number;
  watchers: number;
  rounds: number;
  write: boolean;
  log: (line: string) => void;
}) {
  const { log, watchers } = opts;
  const common = { root: opts.root, seconds: opts.seconds, connections: opts.connections };
  // Alone and watched alternate, round after round, and each round's ratio
  // counts: on shared cores one stampede can be a third slower than the next.
  const rounds: { solo: Awaited<ReturnType<typeof run>>; watched: Awaited<ReturnType<typeof run>>; ratio: number }[] =
    [];
  for (let i = 0; i < opts.rounds; i++) {
    const solo = await run({ ...common, watchers: 0 });
    const watched = await run({ ...common, watchers });
    const ratio = watched.result.rps / solo.result.rps;
    log(
      `round ${i + 1}: stampede alone ${solo.result.rps.toFixed(0)} req/s, with ${watchers} streams ${watched.result.rps.toFixed(0)} req/s (${(ratio * 100).toFixed(0)}%)`,
    );
    rounds.push({ solo, watched, ratio });
  }
  const ratio = median(rounds.map((r) => r.ratio));
  // The round the tables show: the median one, or of an even number the lower of the two in the middle.
  const { solo, watched } = [...rounds].sort((a, b) => a.ratio - b.ratio)[Math.floor((rounds.length - 1) / 2)]!;
  const alone: WrkResult = solo.result;
  const l = watched.latency!;
  const f = (n: number, d = 0) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  const lines = [
    `Run on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC with \`npm run bench -- --streams --watchers ${watchers}\` (wrk stampede, ${opts.connections} connections, ${opts.seconds} s; a fresh database and service per load; the watchers in their own Node process on the same 2 cores; ${opts.rounds} rounds, alone and watched alternating).`,
    '',
    `Each round's rate with the streams as a share of its rate alone: ${rounds.map((r) => `${f(r.ratio * 100)}%`).join(', ')}. The tables show the median round${rounds.length % 2 === 0 ? ' (of an even number, the lower of the two in the middle)' : ''}.`,
    '',
    '| load | req/s | client p50 / p99 ms | service CPU (cores) | watchers CPU (cores) |',
    '|---|---|---|---|---|',
    `| stampede alone | ${f(alone.rps)} | ${f(alone.p50, 2)} / ${f(alone.p99, 2)} | ${f(solo.cores.service, 2)} | |`,
    `| stampede with ${watchers} streams open | ${f(watched.result.rps)} | ${f(watched.result.p50, 2)} / ${f(watched.result.p99, 2)} | ${f(watched.cores.service, 2)} | ${f(watched.cores.watchers, 2)} |`,
    '',
    `Events: a probe purchase every 200 ms (items the stampede never picks); ${l.received} of ${l.expected} (stream, probe) pairs arrived; ${l.ended} streams ended early.`,
    '',
    `One event written to one stream costs the service ${f(watched.perWrite!.user, 1)} µs of user and ${f(watched.perWrite!.system, 1)} µs of system CPU (the probes alone, for ${IDLE_SECONDS} s before the stampede).`,
    '',
    '| target | measured | |',
    '|---|---|---|',
    `| event latency p99 ≤ 1 s, a purchase to every stream | p50 ${f(l.p50)} ms, p99 ${f(l.p99)} ms, max ${f(l.max)} ms | ${verdict(l.p99 <= 1000)} |`,
    `| memory per stream ≤ 8 KB (the service's RSS growth / streams) | ${f(watched.perStreamKb, 1)} KB | ${verdict(watched.perStreamKb <= 8)} |`,
    `| stampede rate with streams within 10% of without (median of the rounds) | ${f(ratio * 100)}% | ${verdict(ratio >= 0.9)} |`,
  ];
  for (const line of lines) log(line);
  if (opts.write) {
    writeResults(
      opts.root,
      lines,
      '<!-- stream results: written by npm run bench -- --streams -->',
      '<!-- end of stream results -->',
    );
    log('written to docs/PERFORMANCE.md');
  }
}
