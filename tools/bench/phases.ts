/**
 * A stampede has two phases with different work per request: while the sale
 * sells, checkouts run the Redis script and every code is bought (a script,
 * a purchase row, the unlock); once it has sold out, nearly every request is a
 * checkout of a sold item, answered from memory. The rate over the whole load
 * mixes the two in proportions set by its length, so the bench reports each.
 */
import { cpuSeconds, seriesSum } from './measure.js';
import { sleep } from './service.js';

export interface Phase {
  seconds: number;
  requests: number;
  /** The service's CPU seconds (user + system). */
  cpu: number;
}

export interface Phases {
  selling: Phase;
  /** Empty when the sale did not sell out during the load. */
  soldOut: Phase;
}

interface Reading {
  at: number;
  sold: number;
  requests: number;
  cpu: number;
}

async function read(base: string, pids: number[]): Promise<Reading> {
  const text = await (await fetch(`${base}/metrics`)).text();
  return {
    at: Date.now(),
    sold: seriesSum(text, 'sale_items_sold'),
    requests: seriesSum(text, 'http_requests_total'),
    cpu: cpuSeconds(pids),
  };
}

const between = (a: Reading, b: Reading): Phase => ({
  seconds: (b.at - a.at) / 1000,
  requests: b.requests - a.requests,
  cpu: b.cpu - a.cpu,
});

/**
 * Reads the service's metrics every `everyMs` while `load` runs: the first
 * reading that finds all `items` sold splits the load in two. Each reading
 * is a scrape (about two a second: a small share of the service's CPU).
 */
export async function watchPhases(
  base: string,
  pids: number[],
  items: number,
  load: Promise<unknown>,
  everyMs = 500,
): Promise<Phases> {
  let running = true;
  const finished = load.finally(() => (running = false));
  finished.catch(() => {}); // the caller awaits the load itself
  const first = await read(base, pids);
  let soldOut: Reading | undefined;
  while (running) {
    await Promise.race([sleep(everyMs), finished.catch(() => {})]);
    if (!running || soldOut) continue;
    const now = await read(base, pids);
    if (now.sold >= items) soldOut = now;
  }
  const last = await read(base, pids);
  return { selling: between(first, soldOut ?? last), soldOut: between(soldOut ?? last, last) };
}
