/**
 * The load engine: N simulated users at a time, each reading a page of items,
 * maybe checking one out and maybe buying it, until `stopAt` or `signal`. A
 * user who reached the limit leaves and a new one takes its place. Purchases
 * whose outcome is unknown are re-sent once at the end: a repeated purchase
 * replays, it never buys twice.
 */
import type { Bought } from './audit.js';
import { backoffMs, noAnswer, refused, retryAfterMs, type Answer, type Client } from './client.js';
import { behaviourOf, look, PAGE, pick, type Behaviour, type Profile } from './profiles.js';
import type { ActiveSale } from './sale.js';
import { emptyStats, errorCode, label, outages, statedLimit, type Endpoint, type EndpointStats } from './stats.js';

export interface RunOptions {
  client: Client;
  sale: ActiveSale;
  profile: Profile;
  users: number;
  runId: string;
  stopAt: number;
  /** Aborted: stop sending (Ctrl-C); requests in flight finish, unknown outcomes are still re-sent. */
  signal?: AbortSignal;
  /** Every second, with the totals so far; errors are 5xx and no answer. */
  onTick?: (requests: number, errors: number) => void;
}

export interface RunResult {
  seconds: number;
  stats: Record<Endpoint, EndpointStats>;
  outages: { start_s: number; seconds: number }[];
  bought: Bought[];
  unknown: number;
  /** As the service stated it in a 409 USER_LIMIT_REACHED; undefined when no user reached it. */
  userLimit: number | undefined;
  /** Users who reached the limit and left. */
  usersAtLimit: number;
}

/** Per user (or resend worker): answers missed in a row, for the backoff. */
interface Pace {
  missed: number;
}

// Time after the run for the re-sent purchases, Retry-After and backoff waits included.
const RESEND_MS = 10_000;

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    signal?.addEventListener('abort', done, { once: true });
  });
}

export async function run(o: RunOptions): Promise<RunResult> {
  const { client, sale, profile, signal } = o;
  const started = Date.now();
  const stats = emptyStats();
  const outage = outages(started);
  const bought = new Map<string, Bought>();
  const unknown = new Map<string, Bought['checkedOut']>();
  let userLimit: number | undefined;
  let usersAtLimit = 0;
  let requests = 0;
  let errors = 0;
  const running = () => Date.now() < o.stopAt && !signal?.aborted;

  /**
   * One request, timed (µs) and counted. Then waits, but not past `until`: as
   * Retry-After asks after a 429 or 503, and with backoff after no answer.
   */
  async function send(
    endpoint: Endpoint,
    path: string,
    w: { until: number; pace: Pace; wake?: AbortSignal | undefined; replay?: boolean },
  ) {
    const t0 = process.hrtime.bigint();
    const res = await client.request(endpoint === 'items' ? 'GET' : 'POST', path).catch(noAnswer);
    const s = stats[endpoint];
    s.histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
    const name = label(res, w.replay ?? false);
    s.statuses[name] = (s.statuses[name] ?? 0) + 1;
    requests++;
    if (res.status === 0 || res.status >= 500) errors++;
    outage.record(res.status !== 0);
    userLimit ??= statedLimit(res);
    let wait = 0;
    if (res.status === 429 || res.status === 503) wait = retryAfterMs(res.headers['retry-after']);
    if (res.status === 0) wait = backoffMs(w.pace.missed++);
    else w.pace.missed = 0;
    if (wait > 0) await sleep(Math.min(wait, w.until - Date.now()), w.wake);
    return res;
  }

  /**
   * Buys, again after a 429, a 503 or a refused connection while time is
   * left; no answer or another 5xx leaves the outcome unknown.
   */
  async function purchase(endpoint: Endpoint, code: string, asked: Bought['checkedOut'], until: number, pace: Pace) {
    const wake = endpoint === 'resend' ? undefined : signal;
    let res: Answer;
    do res = await send(endpoint, `/purchase?code=${code}`, { until, pace, wake, replay: bought.has(code) });
    while ((res.status === 429 || res.status === 503 || refused(res)) && Date.now() < until && !wake?.aborted);
    if (res.status === 0 || res.status >= 500) {
      if (!bought.has(code)) unknown.set(code, asked);
      return res;
    }
    unknown.delete(code);
    if (res.status === 200) {
      // The service's word on what was sold to whom; the audit compares it with what was asked.
      bought.set(code, { code, userId: String(res.body.user_id), itemId: String(res.body.item_id), checkedOut: asked });
    }
    return res;
  }

  /** One person's visit, until the run ends or they reach the limit (true). */
  async function visit(userId: string, behaviour: Behaviour): Promise<boolean> {
    const pace: Pace = { missed: 0 };
    const held = new Set<string>();
    const atLimit = (res: Answer) => errorCode(res) === 'USER_LIMIT_REACHED';
    const w = { until: o.stopAt, pace, wake: signal };
    while (running()) {
      // Nobody tries an item they know they may not buy.
      if (userLimit !== undefined && held.size >= userLimit) return true;
      const { wanted, offset } = look(profile, sale.totalItems);
      const page = await send('items', `/sales/${sale.id}/items?offset=${offset}&limit=${PAGE}`, w);
      const items = page.status === 200 && Array.isArray(page.body.items) ? page.body.items : [];
      const itemId = pick(profile, items, wanted - offset);
      if (!itemId || Math.random() >= behaviour.checkout || !running()) continue;
      const co = await send('checkout', `/checkout?user_id=${userId}&id=${itemId}`, w);
      if (atLimit(co)) return true;
      const code = co.body.code;
      if (co.status !== 200 || typeof code !== 'string' || Math.random() >= behaviour.purchase || !running()) continue;
      const res = await purchase('purchase', code, { userId, itemId }, o.stopAt, pace);
      if (res.status === 200) held.add(itemId);
      if (atLimit(res)) return true;
    }
    return false;
  }

  async function user(slot: number) {
    const behaviour = behaviourOf(profile, slot, o.users);
    for (let n = 0; running(); n++) {
      if (await visit(`load-${o.runId}-${slot}${n > 0 ? `.${n}` : ''}`, behaviour)) usersAtLimit++;
    }
  }

  const ticker = setInterval(() => o.onTick?.(requests, errors), 1000);
  await Promise.all(Array.from({ length: o.users }, (_, slot) => user(slot)));
  clearInterval(ticker);
  const seconds = (Date.now() - started) / 1000;

  // As many at a time as there are sockets, so none waits in the pool's queue.
  const resend = [...unknown];
  const until = Date.now() + RESEND_MS;
  await Promise.all(
    Array.from({ length: Math.min(o.users, resend.length) }, async () => {
      const pace: Pace = { missed: 0 };
      for (let next = resend.pop(); next; next = resend.pop()) await purchase('resend', next[0], next[1], until, pace);
    }),
  );
  return {
    seconds,
    stats,
    outages: outage.list(),
    bought: [...bought.values()],
    unknown: unknown.size,
    userLimit,
    usersAtLimit,
  };
}
