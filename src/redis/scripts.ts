/**
 * Every Lua script, with one typed entry point each. Its keys and arguments
 * are named here and put in the order its contract header lists (like
 * bullmq's `moveToFinishedArgs`, next to the call), and its reply codes are
 * named here once and decoded into a named result. node-redis's
 * `defineScript` runs each by EVALSHA and loads it with EVAL on NOSCRIPT; a
 * SHA names the exact text, so two deployed versions never run each other's.
 */
import { readFileSync } from 'node:fs';

import { defineScript, type CommandParser } from 'redis';

import type { Config } from '../config.js';
import type { QueueKeys, SaleKeys } from './keys.js';

const LUA_DIR = new URL('./lua/', import.meta.url);
const read = (file: string) => readFileSync(new URL(file, LUA_DIR), 'utf8');
/** `--@include f.lua` inlines a shared helper, so a script's SHA covers its helpers too. */
const source = (file: string) => read(file).replace(/^--@include (\S+)$/gm, (_, inc: string) => read(inc));

/** Token buckets: the user's (checkout) or the code's (purchase), and the client IP's. */
export interface RateLimits {
  ownRate: number;
  ownBurst: number;
  ipRate: number;
  ipBurst: number;
}
/** The configured buckets: per user (checkout) or per code (purchase) share one setting, and per IP. */
export const rateLimits = (config: Config): RateLimits => ({
  ownRate: config.RATE_LIMIT_USER_PER_SEC,
  ownBurst: config.RATE_LIMIT_USER_BURST,
  ipRate: config.RATE_LIMIT_IP_PER_SEC,
  ipBurst: config.RATE_LIMIT_IP_BURST,
});
const limitArgs = (l: RateLimits) => [String(l.ownRate), String(l.ownBurst), String(l.ipRate), String(l.ipBurst)];

/** A sold item in the `sold` hash: "code|slot|purchased_at_ms". */
export interface SoldEntry {
  code: string;
  slot: number;
  at: number;
}
export const soldValue = (s: SoldEntry) => `${s.code}|${s.slot}|${s.at}`;
export function parseSold(value: string): SoldEntry {
  const [code, slot, at] = value.split('|');
  return { code: code!, slot: Number(slot), at: Number(at) };
}

type Reply = (string | number)[];

/** One checkout, as the use case asks for it (redis.ts sends those of one turn together: checkouts.ts). */
export interface CheckoutInput {
  keys: SaleKeys;
  userId: string;
  index: number;
  ip: string;
  /** Used only if the user has no code for this item yet. */
  newCode: string;
  userLimit: number;
  now: number;
  limits: RateLimits;
}
/**
 * Checkouts of one sale with the same limits, decided in one script call, in
 * order, at one time (`now`: the latest of theirs).
 */
export interface CheckoutBatch {
  keys: SaleKeys;
  userLimit: number;
  now: number;
  limits: RateLimits;
  requests: Pick<CheckoutInput, 'userId' | 'index' | 'ip' | 'newCode'>[];
}
export type CheckoutResult =
  | { status: 'ok'; code: string }
  | { status: 'not_ready' | 'item_sold' | 'user_full' }
  | { status: 'rate_limited'; retryMs: number };

function checkoutResult(status: string | number | undefined, value: string | number | undefined): CheckoutResult {
  switch (status) {
    case 0:
      return { status: 'ok', code: String(value) };
    case 1:
      return { status: 'item_sold' };
    case 2:
      return { status: 'user_full' };
    case 3:
      return { status: 'rate_limited', retryMs: Number(value) };
    default:
      return { status: 'not_ready' };
  }
}

/** One result per request of the batch, in its order. */
const checkout = defineScript({
  SCRIPT: source('checkout-5+2n.lua'),
  parseCommand(parser: CommandParser, b: CheckoutBatch, serverId: string) {
    const k = b.keys;
    const keys: string[] = [k.ready, k.sold, k.users, k.owners, k.codes];
    for (const r of b.requests) keys.push(k.userBucket(r.userId), k.ipBucket(r.ip));
    parser.pushKeysLength(keys);
    parser.push(serverId, String(b.userLimit), String(b.now), ...limitArgs(b.limits));
    for (const r of b.requests) parser.push(r.userId, String(r.index), r.newCode);
  },
  transformReply(reply: Reply): CheckoutResult[] {
    const results: CheckoutResult[] = [];
    for (let i = 0; i < reply.length; i += 2) results.push(checkoutResult(reply[i], reply[i + 1]));
    return results;
  },
});

export interface PurchaseInput {
  keys: SaleKeys;
  code: string;
  ip: string;
  userLimit: number;
  /** The purchase lock's owner token and its time to live. */
  token: string;
  lockTtlMs: number;
  now: number;
  limits: RateLimits;
  /** False when the same request calls again: one request spends one token. */
  charge: boolean;
  /** AUTH=jwt: the verified buyer, who must own the code; absent when AUTH=off. */
  buyer?: string;
}
export type PurchaseResult =
  | { status: 'reserved'; userId: string; index: number; slot: number; at: number; fresh: boolean }
  | { status: 'not_ready' | 'unknown_code' | 'locked' | 'user_full' | 'not_owner' }
  | { status: 'item_sold'; index: number }
  | { status: 'rate_limited'; retryMs: number };

const purchase = defineScript({
  SCRIPT: source('purchase-7.lua'),
  NUMBER_OF_KEYS: 7,
  parseCommand(parser: CommandParser, p: PurchaseInput, serverId: string) {
    const k = p.keys;
    parser.pushKeys([
      k.ready,
      k.sold,
      k.users,
      k.owners,
      k.purchaseLock(p.code),
      k.codeBucket(p.code),
      k.ipBucket(p.ip),
    ]);
    parser.push(serverId, p.code, String(p.userLimit), p.token, String(p.lockTtlMs), String(p.now));
    parser.push(...limitArgs(p.limits), p.charge ? '1' : '0', p.buyer ?? '');
  },
  transformReply(reply: Reply): PurchaseResult {
    switch (reply[0]) {
      case 0:
        return {
          status: 'reserved',
          userId: String(reply[1]),
          index: Number(reply[2]),
          slot: Number(reply[3]),
          at: Number(reply[4]),
          fresh: reply[5] === 1,
        };
      case 1:
        return { status: 'unknown_code' };
      case 2:
        return { status: 'locked' };
      case 3:
        return { status: 'item_sold', index: Number(reply[1]) };
      case 4:
        return { status: 'user_full' };
      case 5:
        return { status: 'rate_limited', retryMs: Number(reply[1]) };
      case 6:
        return { status: 'not_owner' };
      default:
        return { status: 'not_ready' };
    }
  },
});

export interface ReleaseInput {
  keys: SaleKeys;
  code: string;
  userId: string;
  index: number;
  slot: number;
  token: string;
}

/** Undoes a reservation PostgreSQL did not confirm and drops the lock; true if the reservation was removed. */
const release = defineScript({
  SCRIPT: source('release-3.lua'),
  NUMBER_OF_KEYS: 3,
  parseCommand(parser: CommandParser, p: ReleaseInput) {
    parser.pushKeys([p.keys.sold, p.keys.users, p.keys.purchaseLock(p.code)]);
    parser.push(p.code, p.userId, String(p.index), String(p.slot), p.token);
  },
  transformReply: (reply: number) => reply === 1,
});

/** A message published by the call that releases a lock. */
export interface Announcement {
  channel: string;
  message: string;
}

/** Releases a lock by its owner, publishing `announce` if given; true if it was still held by that owner. */
const unlock = defineScript({
  SCRIPT: source('unlock-1.lua'),
  NUMBER_OF_KEYS: 1,
  parseCommand(parser: CommandParser, key: string, token: string, announce?: Announcement) {
    parser.pushKey(key);
    parser.push(token);
    if (announce) parser.push(announce.channel, announce.message);
  },
  transformReply: (reply: number) => reply === 1,
});

export interface SyncInput {
  keys: SaleKeys;
  /** The item PostgreSQL knows, and its purchase if it is sold. */
  index: number;
  sold: SoldEntry | undefined;
  /** The user PostgreSQL knows, with every item they bought in the sale. */
  userId: string;
  userLimit: number;
  holds: { slot: number; index: number }[];
}

/** Overwrites Redis with PostgreSQL's truth for one item and one user; returns the items the user holds. */
const sync = defineScript({
  SCRIPT: source('sync-2.lua'),
  NUMBER_OF_KEYS: 2,
  parseCommand(parser: CommandParser, p: SyncInput) {
    parser.pushKeys([p.keys.sold, p.keys.users]);
    parser.push(String(p.index), p.sold ? soldValue(p.sold) : '', p.userId, String(p.userLimit));
    for (const h of p.holds) parser.push(String(h.slot), String(h.index));
  },
  transformReply: (reply: number) => reply,
});

/** Gives back a reservation PostgreSQL never confirmed, if it is unchanged and unlocked; true if it was. */
const reclaim = defineScript({
  SCRIPT: source('reclaim-4.lua'),
  NUMBER_OF_KEYS: 4,
  parseCommand(parser: CommandParser, keys: SaleKeys, index: number, seen: string) {
    parser.pushKeys([keys.sold, keys.users, keys.owners, keys.purchaseLock(parseSold(seen).code)]);
    parser.push(String(index), seen);
  },
  transformReply: (reply: number) => reply === 1,
});

// The waiting room (src/queue): join, one admission step, and the counters every instance reads.

export interface QueueJoinInput {
  keys: QueueKeys;
  userId: string;
  ip: string;
  now: number;
  startsAt: number;
  items: number;
  /** The random key of a pre-queue place (below 2^48), used only if the user gets one. */
  drawn: number;
  ipRate: number;
  ipBurst: number;
  expireAt: number;
}
/** A place: `p<key>` (pre-queue) or `n<number>` (after the start), and when it was taken. */
export interface QueuePlace {
  place: string;
  joinedAt: number;
}
export type QueueJoinResult =
  ({ status: 'existing' | 'new' } & QueuePlace) | { status: 'sold_out' } | { status: 'rate_limited'; retryMs: number };

const parsePlace = (entry: string): QueuePlace => {
  const [place, joinedAt] = entry.split('|');
  return { place: place!, joinedAt: Number(joinedAt) };
};

const queueJoin = defineScript({
  SCRIPT: source('queue-join-6.lua'),
  NUMBER_OF_KEYS: 6,
  parseCommand(parser: CommandParser, p: QueueJoinInput) {
    const k = p.keys;
    parser.pushKeys([k.sold, k.state, k.users, k.pre, k.seq, k.ipBucket(p.ip)]);
    parser.push(p.userId, String(p.now), String(p.startsAt), String(p.items), String(p.drawn));
    parser.push(String(p.ipRate), String(p.ipBurst), String(p.expireAt));
  },
  transformReply(reply: Reply): QueueJoinResult {
    switch (reply[0]) {
      case 0:
        return { status: 'existing', ...parsePlace(String(reply[1])) };
      case 1:
        return { status: 'new', ...parsePlace(String(reply[1])) };
      case 2:
        return { status: 'sold_out' };
      default:
        return { status: 'rate_limited', retryMs: Number(reply[1]) };
    }
  },
});

export interface QueueAdvanceInput {
  keys: QueueKeys;
  token: string;
  leaseMs: number;
  now: number;
  startsAt: number;
  /** Admissions per second (fractional in adaptive mode). */
  rate: number;
  items: number;
  stockFactor: number;
  ttlMs: number;
  catchUpMs: number;
  expireAt: number;
}
export type QueueAdvanceResult =
  { status: 'not_leader' } | { status: 'advanced'; admittedNow: number; admitted: number; remaining: number };

const queueAdvance = defineScript({
  SCRIPT: source('queue-advance-7.lua'),
  NUMBER_OF_KEYS: 7,
  parseCommand(parser: CommandParser, p: QueueAdvanceInput) {
    const k = p.keys;
    parser.pushKeys([k.lease, k.state, k.pre, k.seq, k.log, k.sold, k.done]);
    parser.push(p.token, String(p.leaseMs), String(p.now), String(p.startsAt), String(p.rate), String(p.items));
    parser.push(String(p.stockFactor), String(p.ttlMs), String(p.catchUpMs), String(p.expireAt));
  },
  transformReply(reply: Reply): QueueAdvanceResult {
    if (reply[0] === 0) return { status: 'not_leader' };
    return {
      status: 'advanced',
      admittedNow: Number(reply[1]),
      admitted: Number(reply[2]),
      remaining: Number(reply[3]),
    };
  },
});

export interface QueueDoneInput {
  keys: QueueKeys;
  userId: string;
  /** The person's place in the admission order (ticket.ts `orderOf`). */
  order: number;
  expireAt: number;
}

/** A purchase with the room on: its buyer leaves the crowd the stock bound counts. True when newly done. */
const queueDone = defineScript({
  SCRIPT: source('queue-done-1.lua'),
  NUMBER_OF_KEYS: 1,
  parseCommand(parser: CommandParser, p: QueueDoneInput) {
    parser.pushKey(p.keys.done);
    parser.push(p.userId, String(p.order), String(p.expireAt));
  },
  transformReply: (reply: number) => reply === 1,
});

/** The room's shared counters for one sale, as the advancing instance last wrote them. */
export interface QueueCounters {
  /** Admission has begun (the pre-queue is closed and `pre` is final). */
  started: boolean;
  pre: number;
  admitted: number;
  expired: number;
  threshold: number;
  expiredThreshold: number;
  rate: number;
  preJoined: number;
  joinedAfterStart: number;
  /** Items taken (sold or reserved); undefined while the sale is not loaded into Redis. */
  taken: number | undefined;
}

const queueRead = defineScript({
  SCRIPT: source('queue-read-4.lua'),
  NUMBER_OF_KEYS: 4,
  parseCommand(parser: CommandParser, k: QueueKeys) {
    parser.pushKeys([k.state, k.pre, k.seq, k.sold]);
  },
  transformReply(reply: (string | number | null)[]): QueueCounters {
    const n = (i: number, fallback: number) =>
      reply[i] === null || reply[i] === undefined ? fallback : Number(reply[i]);
    const hlen = n(9, 0);
    return {
      started: reply[0] !== null && reply[0] !== undefined,
      pre: n(1, n(7, 0)),
      admitted: n(2, 0),
      expired: n(3, 0),
      threshold: n(4, -1),
      expiredThreshold: n(5, -1),
      rate: n(6, 0),
      preJoined: n(7, 0),
      joinedAfterStart: n(8, 0),
      taken: hlen > 0 ? hlen - 1 : undefined,
    };
  },
});

export const SCRIPTS = {
  checkout,
  purchase,
  release,
  unlock,
  sync,
  reclaim,
  queueJoin,
  queueAdvance,
  queueDone,
  queueRead,
};
