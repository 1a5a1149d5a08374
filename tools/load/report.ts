/** The end-of-run report: per endpoint, counts by status and latency percentiles. */
import type { AuditResult } from './audit.js';
import type { Endpoint, RunResult } from './run.js';

export function summary(result: RunResult, auditResult: AuditResult) {
  const endpoints = Object.fromEntries(
    (Object.entries(result.stats) as [Endpoint, RunResult['stats'][Endpoint]][]).map(([name, s]) => {
      const ms = (p: number) => Number((s.histogram.getValueAtPercentile(p) / 1000).toFixed(2));
      const count = s.histogram.totalCount;
      return [
        name,
        {
          requests: count,
          per_second: Number((count / result.seconds).toFixed(1)),
          statuses: s.statuses,
          latency_ms: { p50: ms(50), p95: ms(95), p99: ms(99), max: ms(100) },
        },
      ];
    }),
  );
  return {
    sale_id: result.saleId,
    seconds: result.seconds,
    endpoints,
    audit: { ok: auditResult.ok, confirmed_purchases: auditResult.confirmed, problems: auditResult.problems },
  };
}

export function print(report: ReturnType<typeof summary>, write: (line: string) => void) {
  write(`sale ${report.sale_id}, ${report.seconds.toFixed(1)} s`);
  write('endpoint   requests     req/s    p50 ms   p95 ms   p99 ms   max ms   statuses');
  for (const [name, e] of Object.entries(report.endpoints)) {
    const l = e.latency_ms;
    const statuses = Object.entries(e.statuses)
      .map(([s, n]) => `${s === '0' ? 'conn-error' : s}:${n}`)
      .join(' ');
    write(
      `${name.padEnd(10)} ${String(e.requests).padStart(8)} ${e.per_second.toFixed(1).padStart(9)} ${[l.p50, l.p95, l.p99, l.max].map((v) => v.toFixed(2).padStart(8)).join(' ')}   ${statuses}`,
    );
  }
  write(`audit: ${report.audit.ok ? 'OK' : 'FAILED'} (${report.audit.confirmed_purchases} confirmed purchases)`);
  for (const p of report.audit.problems) write(`  - ${p}`);
}
