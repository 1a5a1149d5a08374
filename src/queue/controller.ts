/**
 * Adaptive admission (ADMISSION_MODE=adaptive): the admission rate follows
 * what the service can take, AIMD-style as TCP's congestion window does. Once
 * a window (WINDOW_MS), the controller looks at its inputs: if any request was
 * shed, or checkout's p99 latency is over ADMISSION_P99_TARGET_MS, it halves
 * the rate (multiplicative decrease: backs off fast when the origin hurts);
 * otherwise, while people are waiting, it adds a tenth of ADMIT_PER_SEC
 * (additive increase: probes for room slowly). The rate stays within
 * [ADMIT_PER_SEC / 10, 10 × ADMIT_PER_SEC]. The inputs come from this
 * instance's own metrics: the leader steers by what it sees itself.
 */
import type { Metrics } from '../metrics/metrics.js';

/** How often the controller decides: long enough for a p99 over a few hundred checkouts. */
export const WINDOW_MS = 1000;
const DECREASE = 0.5;

export interface ControllerInputs {
  /** Share of this instance's requests shed in the window (0..1). */
  shedRatio: number;
  /** Checkout latency p99 in the window, seconds (0 when there was none). */
  checkoutP99: number;
  /** People waiting for admission. */
  waiting: number;
}

export function createController(options: { base: number; p99TargetSeconds: number }) {
  const { base, p99TargetSeconds } = options;
  const min = base / 10;
  const max = base * 10;
  let rate = base;
  let last: ControllerInputs = { shedRatio: 0, checkoutP99: 0, waiting: 0 };
  const clamp = (r: number) => Math.min(max, Math.max(min, r));

  return {
    rate: () => rate,
    inputs: () => last,
    /** One decision on one window's inputs; returns the new rate. */
    decide(inputs: ControllerInputs): number {
      last = inputs;
      if (inputs.shedRatio > 0 || inputs.checkoutP99 > p99TargetSeconds) rate = clamp(rate * DECREASE);
      else if (inputs.waiting > 0) rate = clamp(rate + base / 10);
      return rate;
    },
    /**
     * While another instance leads, follow the rate it published, so whoever
     * takes the lease over starts from where the room was, not from the base.
     */
    follow(shared: number) {
      if (shared > 0) rate = clamp(shared);
    },
  };
}

export type Controller = ReturnType<typeof createController>;

/**
 * The controller's inputs from this instance's metrics, as differences since
 * the last read: requests shed over requests answered, and the p99 of
 * checkout's latency histogram over the window (the upper bound of the bucket
 * it falls in, as histogram_quantile would place it at most).
 */
export function createSignals(metrics: Pick<Metrics, 'shedTotal' | 'httpRequestsTotal' | 'httpRequestDuration'>) {
  let previous = { shed: 0, requests: 0, buckets: new Map<number, number>() };

  const sum = async (metric: { get(): Promise<{ values: { value: number }[] }> }) =>
    (await metric.get()).values.reduce((total, v) => total + v.value, 0);

  return async function read(): Promise<Omit<ControllerInputs, 'waiting'>> {
    const shed = await sum(metrics.shedTotal);
    const requests = await sum(metrics.httpRequestsTotal);
    const buckets = new Map<number, number>();
    for (const v of (await metrics.httpRequestDuration.get()).values) {
      const labels = v.labels as { handler?: string; le?: string | number };
      if (labels.handler !== 'checkout' || labels.le === undefined) continue;
      const le = labels.le === '+Inf' ? Infinity : Number(labels.le);
      buckets.set(le, (buckets.get(le) ?? 0) + v.value);
    }
    const bounds = [...buckets.keys()].sort((a, b) => a - b);
    const delta = (le: number) => (buckets.get(le) ?? 0) - (previous.buckets.get(le) ?? 0);
    const count = bounds.length ? delta(Infinity) : 0;
    let checkoutP99 = 0;
    if (count > 0) {
      const bound = bounds.find((le) => delta(le) >= 0.99 * count)!;
      // Beyond the last bucket: say "the last bound", which is over any sane target.
      checkoutP99 = Number.isFinite(bound) ? bound : (bounds.at(-2) ?? 0);
    }
    const answered = requests - previous.requests;
    const shedRatio = answered > 0 ? Math.min(1, (shed - previous.shed) / answered) : 0;
    previous = { shed, requests, buckets };
    return { shedRatio, checkoutP99 };
  };
}
