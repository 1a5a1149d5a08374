/** Readings from the outside: wrk's output, /proc, and the service's /metrics. */
import { execFile, execFileSync, execSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { promisify } from 'node:util';

export interface WrkResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
}

/** The middle value, or the mean of the two middle values of an even count. */
export const median = (xs: number[]) => {
  const sorted = [...xs].sort((a, b) => a - b);
  const mid = sorted.length / 2;
  return Number.isInteger(mid) ? (sorted[mid - 1]! + sorted[mid]!) / 2 : sorted[Math.floor(mid)]!;
};

const ms = (v: string, unit: string) => Number(v) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[unit]!;

function wrkCommand(url: string, seconds: number, connections: number, script?: string, cpu?: number) {
  const threads = cpu === undefined ? '-t2' : '-t1';
  const args = [threads, `-c${connections}`, `-d${seconds}s`, '--latency', ...(script ? ['-s', script] : []), url];
  return cpu === undefined ? { cmd: 'wrk', argv: args } : { cmd: 'taskset', argv: ['-c', String(cpu), 'wrk', ...args] };
}

function parseWrk(out: string): WrkResult {
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+([\\d.]+)(us|ms|s)$`, 'm').exec(out);
    return m ? ms(m[1]!, m[2]!) : NaN;
  };
  return {
    rps: Number(/Requests\/sec:\s+([\d.]+)/.exec(out)![1]),
    p50: pct('50'),
    p99: pct('99'),
    requests: Number(/(\d+) requests in/.exec(out)![1]),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(out)?.[1] ?? 0),
  };
}

/** `cpu`: run wrk pinned to that CPU (taskset), with one thread (the pinned bench). */
export function wrk(
  url: string,
  seconds: number,
  connections: number,
  script?: string,
  env: Record<string, string> = {},
  cpu?: number,
): WrkResult {
  const { cmd, argv } = wrkCommand(url, seconds, connections, script, cpu);
  return parseWrk(execFileSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env } }));
}

/** wrk without blocking this process, for a bench that acts while the load runs (retention.ts). */
export async function wrkAsync(
  url: string,
  seconds: number,
  connections: number,
  script?: string,
  env: Record<string, string> = {},
): Promise<WrkResult> {
  const { cmd, argv } = wrkCommand(url, seconds, connections, script);
  const { stdout } = await promisify(execFile)(cmd, argv, { encoding: 'utf8', env: { ...process.env, ...env } });
  return parseWrk(stdout);
}

/** The process and its children (cluster workers). */
export function family(pid: number): number[] {
  let children: number[] = [];
  try {
    children = execSync(`pgrep -P ${pid}`, { encoding: 'utf8' }).trim().split('\n').filter(Boolean).map(Number);
  } catch {
    // pgrep exits 1 when there are none
  }
  return [pid, ...children];
}

/** CPU seconds used so far (user + system) by these processes. */
export function cpuSeconds(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return sum + (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (100 Hz)
  }, 0);
}

/**
 * What a process has spent so far, for per-request figures: CPU (user and
 * system, in seconds, from /proc/<pid>/stat), read- and write-family system
 * calls (syscr + syscw from /proc/<pid>/io: read/readv/write/writev and the
 * like, not epoll_wait or the others), and context switches summed over its
 * threads (/proc/<pid>/task/<tid>/status: the process's own line counts only
 * the main thread).
 */
export interface Usage {
  user: number;
  system: number;
  syscalls: number;
  voluntary: number;
  involuntary: number;
}
export function usage(pid: number): Usage {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  let voluntary = 0;
  let involuntary = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const status = readFileSync(`/proc/${pid}/task/${tid}/status`, 'utf8');
      voluntary += field(status, 'voluntary_ctxt_switches');
      involuntary += field(status, 'nonvoluntary_ctxt_switches');
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return {
    user: Number(stat[11]) / 100, // clock ticks (100 Hz)
    system: Number(stat[12]) / 100,
    syscalls: field(io, 'syscr') + field(io, 'syscw'),
    voluntary,
    involuntary,
  };
}
export const usageSince = (before: Usage, after: Usage): Usage => ({
  user: after.user - before.user,
  system: after.system - before.system,
  syscalls: after.syscalls - before.syscalls,
  voluntary: after.voluntary - before.voluntary,
  involuntary: after.involuntary - before.involuntary,
});

/** Peak resident memory (VmHWM) of these processes, in MB. */
export function peakRssMb(pids: number[]): number {
  return pids.reduce((sum, pid) => {
    const kb = Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
    return sum + kb / 1024;
  }, 0);
}

/**
 * One scrape, read twice: the cumulative bucket counts (by `le`) of http_request_duration_seconds
 * for checkout and purchase, and of the group commits' inserts (commitsOf).
 */
export async function readings(base: string) {
  const text = await (await fetch(`${base}/metrics`)).text();
  return { latency: bucketsOf(text, /handler="(checkout|purchase)"/), commits: commitsOf(text) };
}

/**
 * The group commits' inserts (db_query_duration_seconds of checkout_attempts and purchases)
 * in a scrape's text: every checkout and purchase waits for one.
 */
export const commitsOf = (text: string) =>
  bucketsOf(text, /query_type="insert",table="(checkout_attempts|purchases)"/, 'db_query_duration_seconds');

/** Cumulative bucket counts, by `le`, of the series (of http_request_duration_seconds unless named) matching `labels`. */
export function bucketsOf(text: string, labels: RegExp, metric = 'http_request_duration_seconds'): Map<number, number> {
  const buckets = new Map<number, number>();
  for (const m of text.matchAll(new RegExp(`^${metric}_bucket\\{([^}]*)\\} (\\d+)$`, 'gm'))) {
    if (!labels.test(m[1]!)) continue;
    const raw = /le="([^"]+)"/.exec(m[1]!)![1]!;
    const le = raw === '+Inf' ? Infinity : Number(raw);
    buckets.set(le, (buckets.get(le) ?? 0) + Number(m[2]));
  }
  return buckets;
}

/**
 * A group commit slower than this holds back every request waiting for it, and wrk
 * counts what it held back (coordinated omission): one is enough to set a load's p99.
 */
export const SLOW_COMMIT_S = 0.1;

/** The commits over SLOW_COMMIT_S as the results say it: "0", or "2 (slowest 0.25–0.5 s)". */
export const slowText = ({ count, slowest }: ReturnType<typeof slowerThan>) =>
  count > 0 ? `${count} (slowest ${slowest[0]}–${slowest[1]} s)` : '0';

/**
 * The observations between two readings slower than `seconds` (a bucket bound), and
 * the bounds (s) of the bucket the slowest fell in.
 */
export function slowerThan(seconds: number, before: Map<number, number>, after: Map<number, number>) {
  const les = [...after.keys()].sort((a, b) => a - b);
  const count = (le: number) => (after.get(le) ?? 0) - (before.get(le) ?? 0);
  const total = count(Infinity);
  const top = les.findIndex((le) => count(le) === total);
  return { count: total - count(seconds), slowest: [top > 0 ? les[top - 1]! : 0, les[top]!] as const };
}

/** A quantile (ms) of the requests observed between two readings, interpolated as Prometheus does. */
export function quantile(q: number, before: Map<number, number>, after: Map<number, number>): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (after.get(le) ?? 0) - (before.get(le) ?? 0));
  const total = counts.at(-1)!;
  const rank = q * total;
  for (let i = 0; i < les.length; i++) {
    if (counts[i]! >= rank) {
      const lower = i === 0 ? 0 : les[i - 1]!;
      const upper = les[i]!;
      if (upper === Infinity) return lower * 1000;
      const below = i === 0 ? 0 : counts[i - 1]!;
      return (lower + ((upper - lower) * (rank - below)) / Math.max(1, counts[i]! - below)) * 1000;
    }
  }
  return NaN;
}

/** A metric's value summed over its series, from a scrape's text. */
export const seriesSum = (text: string, name: string): number =>
  [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? ([\\d.e+-]+)$`, 'gm'))].reduce((s, m) => s + Number(m[1]), 0);

/** A metric's value summed over its series, from the service's /metrics. */
export async function metricSum(base: string, name: string): Promise<number> {
  return seriesSum(await (await fetch(`${base}/metrics`)).text(), name);
}
