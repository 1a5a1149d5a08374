/**
 * npm run load -- --profile crowd [--users 50000] [--prequeue 60] [--burst 0.8] [--spread 10]
 * A crowd at a waiting room (WAITING_ROOM=on): most users arrive in the next
 * sale's pre-queue (the last --prequeue seconds of the running sale, which must
 * be the service's PREQUEUE_SECONDS), the rest in the --spread seconds after
 * its start; everyone polls as Retry-After says and buys one item once
 * admitted; 1% try to check out at once, before admission. The audit
 * (crowdAudit) judges what the service did from what every user saw.
 */
import { Pool } from 'undici';

import { retryAfterMs, type Answer } from './client.js';
import type { ActiveSale } from './sale.js';

export interface CrowdUser {
  user: string;
  /** Joined in the pre-queue (arrived before the start). */
  early: boolean;
  joinSent: number;
  joinAnswered: number;
  /** `p<key>` or `n<number>`, read from the ticket's payload. */
  place?: string;
  saleId?: string;
  /** Sent of the last status answer saying "not admitted"; answered of the first saying "admitted". */
  lastWaitingSent: number;
  firstAdmittedAnswered: number;
  /** Answered times of answers saying sold_out: false (status polls and joins). */
  notSoldOutAnswers: { sent: number; answered: number }[];
  soldOutTold: boolean;
  /** Checkouts answered 200 before the user saw itself admitted, and whether a poll after it said "not admitted". */
  earlyCheckouts: { status: number; admittedAfter: boolean }[];
  /** Answer times of successful checkouts (each reserves one item). */
  checkedOutAt: number[];
  bought: number;
  done: boolean;
}

export interface CrowdOptions {
  origin: string;
  users: number;
  prequeue: number;
  burst: number;
  spread: number;
  stopAt: number;
  log: (line: string) => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)));
const CHEATERS = 0.01;

/** The place a ticket names, from its (signed, not secret) payload: `1|sale|user|place|joined`. */
export const placeOf = (ticket: string) =>
  Buffer.from(ticket.split('.')[0]!, 'base64url').toString().split('|')[3] ?? '';

export async function runCrowd(sale: ActiveSale, o: CrowdOptions) {
  const pool = new Pool(o.origin, { connections: 256, headersTimeout: 10_000, bodyTimeout: 10_000 });
  const request = async (method: 'GET' | 'POST', path: string): Promise<Answer & { sent: number; at: number }> => {
    const sent = Date.now();
    try {
      const res = await pool.request({ method, path });
      const text = await res.body.text();
      let body: Record<string, unknown> = {};
      try {
        body = JSON.parse(text) as Record<string, unknown>;
      } catch {
        // not JSON: the status still counts
      }
      return { status: res.statusCode, headers: res.headers, body, sent, at: Date.now() };
    } catch {
      return { status: 0, headers: {}, body: {}, sent, at: Date.now() };
    }
  };

  // The next sale starts when this one ends; its pre-queue opens --prequeue seconds before.
  const start = sale.endsAt;
  const open = start - o.prequeue * 1000;
  if (Date.now() > open) throw new Error('the pre-queue of the next sale is already open: run again after its start');
  o.log(`waiting ${((open - Date.now()) / 1000).toFixed(0)} s for the next sale's pre-queue`);
  const early = Math.round(o.users * o.burst);
  const users: CrowdUser[] = Array.from({ length: o.users }, (_, i) => ({
    user: `crowd${i}-${Math.random().toString(36).slice(2, 8)}`,
    early: i < early,
    joinSent: 0,
    joinAnswered: 0,
    lastWaitingSent: -Infinity,
    firstAdmittedAnswered: Infinity,
    notSoldOutAnswers: [],
    soldOutTold: false,
    earlyCheckouts: [],
    checkedOutAt: [],
    bought: 0,
    done: false,
  }));
  const items = sale.totalItems;

  async function live(u: CrowdUser, index: number) {
    // Arrival: uniform over the pre-queue (a margin either side of its edges), or over the spread after the start.
    const at = u.early
      ? open + 500 + Math.random() * (o.prequeue * 1000 - 1500)
      : start + 500 + Math.random() * o.spread * 1000;
    await sleep(at - Date.now());
    let ticket = '';
    for (;;) {
      if (Date.now() > o.stopAt) return;
      const res = await request('POST', `/queue/join?user_id=${u.user}`);
      if (res.status === 410) {
        u.soldOutTold = true;
        u.done = true;
        return;
      }
      if (res.status !== 200) {
        await sleep(retryAfterMs(res.headers['retry-after']));
        continue;
      }
      u.joinSent = res.sent;
      u.joinAnswered = res.at;
      ticket = String(res.body.ticket);
      u.place = placeOf(ticket);
      u.saleId = String(res.body.sale_id);
      if (!res.body.sold_out) u.notSoldOutAnswers.push({ sent: res.sent, answered: res.at });
      break;
    }
    const t = encodeURIComponent(ticket);
    if (index % Math.round(1 / CHEATERS) === 0) {
      const res = await request('POST', `/checkout?user_id=${u.user}&id=${u.saleId}-00000&ticket=${t}`);
      const after = await request('GET', `/queue/status?ticket=${t}`);
      u.earlyCheckouts.push({ status: res.status, admittedAfter: after.body.admitted === true });
      if (res.status === 200) u.checkedOutAt.push(res.at);
    }
    // Wait for admission, polling as told.
    for (;;) {
      if (Date.now() > o.stopAt) return;
      const res = await request('GET', `/queue/status?ticket=${t}`);
      if (res.status !== 200) {
        await sleep(retryAfterMs(res.headers['retry-after']));
        continue;
      }
      if (res.body.sold_out === true) {
        u.soldOutTold = true;
        u.done = true;
        return;
      }
      u.notSoldOutAnswers.push({ sent: res.sent, answered: res.at });
      if (res.body.admitted === true) {
        u.firstAdmittedAnswered = Math.min(u.firstAdmittedAnswered, res.at);
        break;
      }
      u.lastWaitingSent = res.sent;
      await sleep(retryAfterMs(res.headers['retry-after']));
    }
    // Buy one item: from a random one on, the next when it is sold; a status poll now and then says when all are gone.
    let item = Math.floor(Math.random() * items);
    for (let tries = 0; tries < items && Date.now() < o.stopAt; tries++, item = (item + 1) % items) {
      const id = `${u.saleId}-${String(item).padStart(5, '0')}`;
      const res = await request('POST', `/checkout?user_id=${u.user}&id=${id}&ticket=${t}`);
      if (res.status === 200) {
        u.checkedOutAt.push(res.at);
        const bought = await request('POST', `/purchase?code=${String(res.body.code)}&ticket=${t}`);
        if (bought.status === 200) u.bought++;
        break;
      }
      if (res.status === 429 || res.status === 503) await sleep(retryAfterMs(res.headers['retry-after']));
      if (tries % 5 === 4 || res.status === 403) {
        const s = await request('GET', `/queue/status?ticket=${t}`);
        if (s.body.sold_out === true) {
          u.soldOutTold = true;
          break;
        }
        if (s.status === 200) u.notSoldOutAnswers.push({ sent: s.sent, answered: s.at });
      }
    }
    u.done = true;
  }

  try {
    await Promise.all(users.map((u, i) => live(u, i)));
  } finally {
    await pool.close();
  }
  return { users, start, items, nextSaleId: users.find((u) => u.early && u.saleId)?.saleId };
}

export type CrowdResult = Awaited<ReturnType<typeof runCrowd>>;

/** Two-sided critical value of the standard normal at significance 0.001. */
const Z_0001 = 3.2905;

/**
 * The audit, from what the users saw:
 * 1. nobody checked out before admission: every checkout sent before its user
 *    saw itself admitted was refused, unless a poll right after said admitted;
 * 2. after the start, admission follows join order: no pair where one user's
 *    join was answered before another's was sent but got a later number, and
 *    no user seen admitted (answer) before an earlier number was last seen
 *    waiting (sent): counters only grow, so that would be a real overtaking;
 * 3. the pre-queue is shuffled uniformly: admission follows the random keys
 *    (the same overtaking check), and Spearman's rank correlation between
 *    arrival and key is compatible with 0 (|rho| sqrt(n-1) < 3.29, two-sided
 *    significance 0.001);
 * 4. everyone ended admitted or told sold out;
 * 5. sold out reached every poller within 1 s: no answer saying sold_out false
 *    to a request sent more than 1 s after the last item was taken.
 */
export function crowdAudit(r: CrowdResult) {
  const problems: string[] = [];
  const joined = r.users.filter((u) => u.place);
  const early = r.users.flatMap((u) => u.earlyCheckouts.map((c) => ({ u, c })));
  const sneaked = early.filter(({ c }) => c.status === 200 && !c.admittedAfter);
  if (sneaked.length) problems.push(`${sneaked.length} checkouts succeeded before admission`);
  const wrongSale = joined.filter((u) => u.early && u.saleId !== r.nextSaleId);
  if (wrongSale.length) problems.push(`${wrongSale.length} pre-queue joins went to another sale`);

  const after = joined.filter((u) => u.place!.startsWith('n'));
  const pre = joined.filter((u) => u.place!.startsWith('p'));
  const late = after.filter((u) => u.early);
  if (late.length) problems.push(`${late.length} pre-queue arrivals got a place after the start`);
  const rank = (u: CrowdUser) => Number(u.place!.slice(1));
  problems.push(...overtaking(after, rank, 'after the start'), ...overtaking(pre, rank, 'in the pre-queue'));
  const byNumber = [...after].sort((a, b) => rank(a) - rank(b));
  let minAnswered = Infinity;
  let misnumbered = 0;
  for (let i = byNumber.length - 1; i >= 0; i--) {
    if (minAnswered < byNumber[i]!.joinSent) misnumbered++;
    minAnswered = Math.min(minAnswered, byNumber[i]!.joinAnswered);
  }
  if (misnumbered) problems.push(`${misnumbered} joins after the start numbered ahead of an earlier join`);

  const rho = spearman(
    pre.map((u) => u.joinSent),
    pre.map(rank),
  );
  const z = rho * Math.sqrt(Math.max(0, pre.length - 1));
  if (pre.length >= 10 && Math.abs(z) >= Z_0001) {
    problems.push(`pre-queue order is not a uniform shuffle: Spearman rho ${rho.toFixed(3)}, z ${z.toFixed(2)}`);
  }

  const unfinished = r.users.filter((u) => !(u.soldOutTold || u.firstAdmittedAnswered < Infinity));
  if (unfinished.length) problems.push(`${unfinished.length} users ended neither admitted nor told sold out`);

  const checkouts = r.users.flatMap((u) => u.checkedOutAt).sort((a, b) => a - b);
  const soldOutAt = checkouts.length >= r.items ? checkouts.at(-1)! : undefined;
  const missed =
    soldOutAt === undefined
      ? []
      : r.users.flatMap((u) => u.notSoldOutAnswers.filter((a) => a.sent > soldOutAt + 1000).map(() => u));
  if (missed.length) problems.push(`${missed.length} answers said not sold out more than 1 s after the sale sold out`);

  return {
    ok: problems.length === 0,
    problems,
    users: r.users.length,
    prequeue: pre.length,
    afterStart: after.length,
    admitted: r.users.filter((u) => u.firstAdmittedAnswered < Infinity).length,
    bought: r.users.reduce((n, u) => n + u.bought, 0),
    toldSoldOut: r.users.filter((u) => u.soldOutTold).length,
    earlyCheckouts: early.length,
    refusedEarly: early.filter(({ c }) => c.status === 403).length,
    spearmanRho: rho,
    spearmanZ: z,
    soldOutAfterStartMs: soldOutAt === undefined ? undefined : soldOutAt - r.start,
  };
}

/** Users in admission order by `rank`: anyone seen admitted before someone ahead of them was last seen waiting? */
function overtaking(users: CrowdUser[], rank: (u: CrowdUser) => number, where: string): string[] {
  const sorted = [...users].sort((a, b) => rank(a) - rank(b));
  let lastWaiting = -Infinity;
  let overtaken = 0;
  for (const u of sorted) {
    if (u.firstAdmittedAnswered < lastWaiting) overtaken++;
    lastWaiting = Math.max(lastWaiting, u.lastWaitingSent);
  }
  return overtaken ? [`${overtaken} users admitted ahead of someone before them ${where}`] : [];
}

/** Spearman's rank correlation (no ties expected: times in ms and 48-bit keys). */
export function spearman(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return 0;
  const ranks = (v: number[]) => {
    const order = v.map((x, i) => [x, i] as const).sort((a, b) => a[0] - b[0]);
    const r = new Array<number>(n);
    order.forEach(([, i], k) => (r[i] = k));
    return r;
  };
  const rx = ranks(xs);
  const ry = ranks(ys);
  let d2 = 0;
  for (let i = 0; i < n; i++) d2 += (rx[i]! - ry[i]!) ** 2;
  return 1 - (6 * d2) / (n * (n * n - 1));
}
