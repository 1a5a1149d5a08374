/**
 * The waiting room's loads for `npm run bench`: `queue-status` (polls of valid
 * tickets, answered from the instance's counters without I/O) and
 * `queue-join` (new places, one Redis script each), against a fresh service
 * with WAITING_ROOM=on. The goals: status polls ≥ 50% of the bare node:http
 * yardstick of the same run, joins ≥ the checkout rate.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { cpuSeconds, family, wrk, type WrkResult } from './measure.js';
import { startHello, startService } from './service.js';

/** Tickets the status load polls: enough that no one ticket is hot. */
const TICKETS = 2000;

/**
 * The bare node:http yardstick again, right before the status load: on a busy
 * shared machine, a yardstick measured minutes earlier is no fair comparison.
 */
async function yardstick(seconds: number, connections: number): Promise<WrkResult> {
  const hello = await startHello();
  try {
    return wrk(hello.url, seconds, connections);
  } finally {
    await hello.stop();
  }
}

export interface QueueRow {
  name: string;
  wrk: WrkResult;
  cpuCores: number;
}

export async function queueLoads(options: { here: string; seconds: number; connections: number }) {
  const service = await startService({
    env: {
      WAITING_ROOM: 'on',
      WAITING_ROOM_SECRET: randomBytes(32).toString('hex'),
      PREQUEUE_SECONDS: '0',
    },
  });
  const { base } = service;
  const dir = mkdtempSync(join(tmpdir(), 'fs-bench-queue-'));
  try {
    const tickets: string[] = [];
    for (let i = 0; i < TICKETS; i += 50) {
      const batch = Array.from({ length: 50 }, (_, j) =>
        fetch(`${base}/queue/join?user_id=b${i + j}`, { method: 'POST' }).then(
          async (r) => ((await r.json()) as { ticket: string }).ticket,
        ),
      );
      tickets.push(...(await Promise.all(batch)));
    }
    const file = join(dir, 'tickets');
    writeFileSync(file, `${tickets.join('\n')}\n`);
    const pids = family(service.pid);
    const rows: QueueRow[] = [];
    const adjacent = await yardstick(options.seconds, options.connections);
    process.stdout.write(`bare node:http (again, before queue-status): ${adjacent.rps.toFixed(0)} req/s\n`);
    for (const [name, script, env] of [
      ['queue-status', 'queue-status.lua', { TICKETS: file }],
      ['queue-join', 'queue-join.lua', {}],
    ] as const) {
      const cpuBefore = cpuSeconds(pids);
      const t0 = Date.now();
      const result = wrk(`${base}/`, options.seconds, options.connections, `${options.here}${script}`, env);
      rows.push({ name, wrk: result, cpuCores: (cpuSeconds(pids) - cpuBefore) / ((Date.now() - t0) / 1000) });
      process.stdout.write(`${name}: ${result.rps.toFixed(0)} req/s, p99 ${result.p99} ms\n`);
    }
    return { rows, adjacent };
  } finally {
    rmSync(dir, { recursive: true, force: true });
    await service.stop();
  }
}

/** The report's lines for the queue loads, as ratios to the same run's yardstick and checkout. */
export function queueLines(
  { rows, adjacent }: { rows: QueueRow[]; adjacent: WrkResult },
  hello: WrkResult,
  checkout: WrkResult,
) {
  const f = (n: number, d = 1) => (Number.isFinite(n) ? n.toFixed(d) : 'n/a');
  const [status, joins] = rows as [QueueRow, QueueRow];
  const verdict = (ok: boolean) => (ok ? 'met' : '**missed**');
  return [
    '',
    "Waiting room (`WAITING_ROOM=on`, a fresh service; status polls 2,000 valid tickets at random). The table compares with the run's first yardstick; the status goal with a yardstick measured right before the status load:",
    '',
    '| load | req/s | vs bare node:http | non-2xx | client p50 / p99 ms | server CPU (cores) |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.name} | ${f(r.wrk.rps, 0)} | ${f((r.wrk.rps / hello.rps) * 100, 0)}% | ${r.wrk.non2xx} of ${r.wrk.requests} | ${f(r.wrk.p50, 2)} / ${f(r.wrk.p99, 2)} | ${f(r.cpuCores, 2)} |`,
    ),
    '',
    '| target | measured | |',
    '|---|---|---|',
    `| queue-status ≥ 50% of bare node:http (measured just before it: ${f(adjacent.rps, 0)} req/s) | ${f((status.wrk.rps / adjacent.rps) * 100, 0)}% | ${verdict(status.wrk.rps / adjacent.rps >= 0.5)} |`,
    `| queue-join ≥ checkout-only | ${f(joins.wrk.rps, 0)} vs ${f(checkout.rps, 0)} req/s | ${verdict(joins.wrk.rps >= checkout.rps)} |`,
  ];
}
