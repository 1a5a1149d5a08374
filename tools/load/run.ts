/**
 * The load engine: N simulated users, each reading a page of items, maybe
 * checking one out and maybe buying it, until `stopAt`. Latencies go into one
 * HDR histogram per endpoint. Purchases whose outcome is unknown are re-sent
 * once at the end: a repeated purchase replays, it never buys twice.
 */
import * as hdr from 'hdr-histogram-js';

import type { Bought } from './audit.js';
import { retryAfterMs, type Answer, type Client } from './client.js';
import { behaviourOf, look, PAGE, pick, type Profile } from './profiles.js';
import type { ActiveSale } from './sale.js';

/** `resend`: purchases sent again after the run because their answer was none or a 5xx. */
const endpoints = ['items', 'checkout', 'purchase', 'resend'] as const;
export type Endpoint = (typeof endpoints)[number];

export interface EndpointStats {
  /** By status code; "200 replay" is a 200 for a code this run had already seen confirmed. */
  statuses: Record<string, number>;
  histogram: hdr.Histogram;
}

export interface RunOptions {
  client: Client;
  sale: ActiveSale;
  profile: Profile;
  users: number;
  runId: string;
  stopAt: number;
  /** Every second, with the totals so far; errors are 5xx and no answer. */
  onTick?: (requests: number, errors: number) => void;
}

export interface RunResult {
  seconds: number;
  stats: Record<Endpoint, EndpointStats>;
  bought: Bought[];
  unknown: number;
}

// Time after the run for the re-sent purchases, Retry-After waits included.
const RESEND_MS = 10_000;
const NO_ANSWER: Answer = { status: 0, headers: {}, body: {} };
const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));

export async function run(o: RunOptions): Promise<RunResult> {
  const { client, sale, profile } = o;
  const stats = Object.fromEntries(
    endpoints.map((e) => [
      e,
      {
        statuses: {},
        histogram: hdr.build({
          lowestDiscernibleValue: 1,
          highestTrackableValue: 60_000_000,
          numberOfSignificantValueDigits: 3,
        }),
      },
    ]),
  ) as Record<Endpoint, EndpointStats>;
  const bought = new Map<string, Bought>();
  const unknown = new Map<string, Bought['checkedOut']>();
  let requests = 0;
  let errors = 0;

  /** One request, timed (µs) and counted; after a 429 or 503, waits as Retry-After asks, but not past `until`. */
  async function send(endpoint: Endpoint, path: string, until: number, replay = false): Promise<Answer> {
    const t0 = process.hrtime.bigint();
    const res = await client.request(endpoint === 'items' ? 'GET' : 'POST', path).catch(() => NO_ANSWER);
    const s = stats[endpoint];
    s.histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
    const label = res.status === 200 && replay ? '200 replay' : String(res.status);
    s.statuses[label] = (s.statuses[label] ?? 0) + 1;
    requests++;
    if (res.status === 0 || res.status >= 500) errors++;
    if (res.status === 429 || res.status === 503) {
      await sleep(Math.min(retryAfterMs(res.headers['retry-after']), until - Date.now()));
    }
    return res;
  }

  /** Buys, again after a 429 or 503 while time is left; no answer or another 5xx leaves the outcome unknown. */
  async function purchase(endpoint: Endpoint, code: string, checkedOut: Bought['checkedOut'], until: number) {
    let res: Answer;
    do res = await send(endpoint, `/purchase?code=${code}`, until, bought.has(code));
    while ((res.status === 429 || res.status === 503) && Date.now() < until);
    if (res.status === 0 || res.status >= 500) {
      if (!bought.has(code)) unknown.set(code, checkedOut);
      return;
    }
    unknown.delete(code);
    if (res.status === 200) {
      // The service's word on what was sold to whom; the audit compares it with `checkedOut`.
      bought.set(code, { code, userId: String(res.body.user_id), itemId: String(res.body.item_id), checkedOut });
    }
  }

  async function user(u: number) {
    const behaviour = behaviourOf(profile, u, o.users);
    const userId = `load-${o.runId}-${u}`;
    while (Date.now() < o.stopAt) {
      const { wanted, offset } = look(profile, sale.totalItems);
      const page = await send('items', `/sales/${sale.id}/items?offset=${offset}&limit=${PAGE}`, o.stopAt);
      const items = page.status === 200 && Array.isArray(page.body.items) ? page.body.items : [];
      const itemId = pick(profile, items, wanted - offset);
      if (!itemId || Math.random() >= behaviour.checkout) continue;
      const co = await send('checkout', `/checkout?user_id=${userId}&id=${itemId}`, o.stopAt);
      const code = co.body.code;
      if (co.status !== 200 || typeof code !== 'string' || Math.random() >= behaviour.purchase) continue;
      await purchase('purchase', code, { userId, itemId }, o.stopAt);
    }
  }

  const started = Date.now();
  const ticker = setInterval(() => o.onTick?.(requests, errors), 1000);
  await Promise.all(Array.from({ length: o.users }, (_, u) => user(u)));
  clearInterval(ticker);
  const seconds = (Date.now() - started) / 1000;

  // As many at a time as there are sockets, so none waits in the pool's queue.
  const resend = [...unknown];
  const until = Date.now() + RESEND_MS;
  await Promise.all(
    Array.from({ length: Math.min(o.users, resend.length) }, async () => {
      for (let next = resend.pop(); next; next = resend.pop()) await purchase('resend', next[0], next[1], until);
    }),
  );
  return { seconds, stats, bought: [...bought.values()], unknown: unknown.size };
}
