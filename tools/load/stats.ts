/**
 * What a run counts: per endpoint, answers by label and latencies (HDR
 * histograms, µs); and the outages, the spans in which nothing was answered.
 */
import * as hdr from 'hdr-histogram-js';

import type { Answer } from './client.js';

/** `resend`: purchases sent again after the run because their answer was none or a 5xx. */
export const endpoints = ['items', 'checkout', 'purchase', 'resend'] as const;
export type Endpoint = (typeof endpoints)[number];

export interface EndpointStats {
  /** By label, see `label`. */
  statuses: Record<string, number>;
  histogram: hdr.Histogram;
}

export function emptyStats(): Record<Endpoint, EndpointStats> {
  const histogram = () =>
    hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3 });
  return Object.fromEntries(endpoints.map((e) => [e, { statuses: {}, histogram: histogram() }])) as Record<
    Endpoint,
    EndpointStats
  >;
}

/**
 * The report's name for an answer: the status with the service's error code
 * (`409 USER_LIMIT_REACHED`), so a refusal says why; `200 replay` for a 200 to
 * a code this run had already seen confirmed; `no answer <error code>` when
 * none came (`no answer ECONNREFUSED`).
 */
export function label(res: Answer, replay: boolean): string {
  if (res.status === 0) return `no answer ${res.failure ?? 'error'}`;
  if (res.status === 200 && replay) return '200 replay';
  const code = errorCode(res);
  return code ? `${res.status} ${code}` : String(res.status);
}

/** The error code of an error answer in the service's shape; bounded, so a stranger's body cannot flood the report. */
export function errorCode(res: Answer): string | undefined {
  const code = (res.body.error as { code?: unknown } | undefined)?.code;
  return res.status >= 400 && typeof code === 'string' && /^[A-Z_]{1,40}$/.test(code) ? code : undefined;
}

/**
 * The limit a 409 USER_LIMIT_REACHED states ("user has reached the limit of
 * 10 items in this sale"): the service exposes it nowhere else.
 */
export function statedLimit(res: Answer): number | undefined {
  if (errorCode(res) !== 'USER_LIMIT_REACHED') return undefined;
  const match = /limit of (\d+) item/.exec(String((res.body.error as { message?: unknown }).message));
  return match ? Number(match[1]) : undefined;
}

/**
 * The seconds of the run in which requests went unanswered and none was
 * answered: the service was gone. Whole seconds, so a stray timeout among
 * answers is no outage and the list stays as short as the run.
 */
export function outages(started: number) {
  const answered = new Set<number>();
  const missed = new Set<number>();
  return {
    record(ok: boolean, at = Date.now()) {
      (ok ? answered : missed).add(Math.floor((at - started) / 1000));
    },
    /** Consecutive seconds without an answer, merged: where each outage began and how long it lasted. */
    list() {
      const spans: { start_s: number; seconds: number }[] = [];
      for (const second of [...missed].filter((s) => !answered.has(s)).sort((a, b) => a - b)) {
        const last = spans.at(-1);
        if (last && last.start_s + last.seconds === second) last.seconds++;
        else spans.push({ start_s: second, seconds: 1 });
      }
      return spans;
    },
  };
}
