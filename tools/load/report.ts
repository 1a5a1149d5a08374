/** The end-of-run report: what was run, per endpoint counts by status and latency percentiles, and the audit. */
import type { AuditResult } from './audit.js';
import type { RunResult } from './run.js';
import type { Endpoint } from './stats.js';

export interface RunInfo {
  url: string;
  profile: string;
  users: number;
  /** As asked; `seconds` in the report is what ran. */
  duration: number;
  runId: string;
  saleId: string;
  stoppedAtSaleEnd: boolean;
  /** Stopped early by Ctrl-C. */
  interrupted: boolean;
}

export function summary(info: RunInfo, result: RunResult, auditResult: AuditResult) {
  const endpoints = Object.fromEntries(
    (Object.entries(result.stats) as [Endpoint, RunResult['stats'][Endpoint]][]).map(([name, s]) => {
      const ms = (us: number) => Number((us / 1000).toFixed(2));
      // A percentile is its bucket's upper edge, which can pass the exact maximum.
      const at = (p: number) => ms(Math.min(s.histogram.getValueAtPercentile(p), s.histogram.maxValue));
      const count = s.histogram.totalCount;
      return [
        name,
        {
          requests: count,
          per_second: Number((count / result.seconds).toFixed(1)),
          statuses: s.statuses,
          latency_ms: { p50: at(50), p95: at(95), p99: at(99), max: ms(s.histogram.maxValue) },
        },
      ];
    }),
  );
  return {
    url: info.url,
    profile: info.profile,
    users: info.users,
    duration: info.duration,
    run_id: info.runId,
    sale_id: info.saleId,
    seconds: result.seconds,
    stopped_at_sale_end: info.stoppedAtSaleEnd,
    interrupted: info.interrupted,
    user_limit: result.userLimit ?? null,
    users_reached_limit: result.usersAtLimit,
    endpoints,
    outages: result.outages,
    audit: {
      ok: auditResult.ok,
      confirmed_purchases: auditResult.confirmed,
      unknown_outcomes: auditResult.unknown,
      problems: auditResult.problems,
      notes: auditResult.notes,
    },
  };
}

export function print(report: ReturnType<typeof summary>, write: (line: string) => void) {
  const end = report.interrupted
    ? ', interrupted'
    : report.stopped_at_sale_end
      ? ', stopped at the end of the sale'
      : '';
  write(`sale ${report.sale_id}, run ${report.run_id}, ${report.seconds.toFixed(1)} s${end}`);
  const limit = report.user_limit === null ? 'never reached' : String(report.user_limit);
  write(`user limit: ${limit}; ${report.users_reached_limit} users reached it and left, new ones came in their place`);
  write('endpoint   requests     req/s    p50 ms   p95 ms   p99 ms   max ms   statuses');
  for (const [name, e] of Object.entries(report.endpoints)) {
    if (e.requests === 0) continue;
    const l = e.latency_ms;
    const statuses = Object.entries(e.statuses)
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ');
    write(
      `${name.padEnd(10)} ${String(e.requests).padStart(8)} ${e.per_second.toFixed(1).padStart(9)} ${[l.p50, l.p95, l.p99, l.max].map((v) => v.toFixed(2).padStart(8)).join(' ')}   ${statuses}`,
    );
  }
  if (report.outages.length > 0) {
    const seconds = report.outages.reduce((sum, o) => sum + o.seconds, 0);
    const spans = report.outages.map((o) => `${o.seconds} s from second ${o.start_s}`).join(', ');
    write(`outage: ${seconds} s with requests and no answer (${spans})`);
  }
  const a = report.audit;
  const unknown = a.unknown_outcomes > 0 ? `, ${a.unknown_outcomes} purchases with unknown outcome` : '';
  write(`audit: ${a.ok ? 'OK' : 'FAILED'} (${a.confirmed_purchases} confirmed purchases${unknown})`);
  for (const p of a.problems) write(`  - ${p}`);
  for (const n of a.notes) write(`  note: ${n}`);
}
