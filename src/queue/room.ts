/**
 * The waiting room's use cases: join (one Redis script), status (no I/O: the
 * signed ticket and this instance's counters), and the guard that checkout and
 * purchase run first when the room is on. See docs/waiting-room.md.
 */
import { randomFillSync } from 'node:crypto';

import type { FastifyRequest } from 'fastify';

import { AppError, unavailable } from '../errors.js';
import type { Infra } from '../infra.js';
import { queueKeys } from '../redis/keys.js';
import type { QueueCounters } from '../redis/scripts.js';
import { QUEUE_REJECTION_REASONS } from '../metrics/metrics.js';
import { createAdmission, REFRESH_MS, waitingIn } from './admission.js';
import { createTickets, KEY_SPACE, orderOf, placeOf, TICKET_PATTERN, type Ticket } from './ticket.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** With the room on, a purchase's admitted ticket (its buyer is done once the purchase succeeds). */
    admittedTicket: Ticket | undefined;
  }
}

export type QueueDeps = Pick<Infra, 'config' | 'clock' | 'redis' | 'ids' | 'log' | 'locks' | 'metrics'>;

/** The ticket header checkout and purchase read (or the `ticket` query parameter). */
export const TICKET_HEADER = 'x-queue-ticket';
const ticketPattern = new RegExp(TICKET_PATTERN);
/** Longest Retry-After a waiting person is told, so a slowed room still hears from them. */
const MAX_POLL_S = 30;
/** Counters older than a few missed refreshes are marked stale in answers. */
const STALE_AFTER_MS = 4 * REFRESH_MS;

/**
 * Tickets whose join-to-admission time this instance has observed: the first
 * admitted checkout counts, later ones do not. Bounded: when full it starts
 * over (a few people may then be counted twice), and it is cleared with each
 * new sale.
 */
const SEEN_MAX = 100_000;
type Rejectable = 'join' | 'status' | 'checkout' | 'purchase';
const counted = new Set<string>(QUEUE_REJECTION_REASONS);

/** A uniform integer below 2^48: a pre-queue place's random key. */
function drawKey(): number {
  const b = randomFillSync(Buffer.alloc(6));
  return b.readUIntBE(0, 6);
}

export interface RoomState {
  sale_id: string;
  now_serving: number;
  waiting: number;
  admit_per_sec: number;
  sold_out: boolean;
}

export interface Standing {
  position: number;
  admitted: boolean;
  eta_seconds: number;
  sold_out: boolean;
  stale: boolean;
}

export function createQueue(deps: QueueDeps) {
  const { config, clock, redis, ids, metrics } = deps;
  const admission = createAdmission(deps);
  const seen = { saleId: '', tickets: new Set<string>() };

  /** Counts a refusal of the room by its error code, then lets it go on to the error handler. */
  function refused(route: Rejectable, err: unknown): never {
    if (err instanceof AppError && counted.has(err.code)) metrics.queueRejections.inc({ route, reason: err.code });
    throw err;
  }

  /** Join to admission, observed at a person's first admitted checkout on this instance. */
  function observeAdmission(t: Ticket) {
    if (seen.saleId !== t.saleId || seen.tickets.size >= SEEN_MAX) {
      seen.saleId = t.saleId;
      seen.tickets.clear();
    }
    if (seen.tickets.has(t.userId)) return;
    seen.tickets.add(t.userId);
    metrics.queueJoinToAdmission.observe(Math.max(0, clock.now() - t.joinedAt) / 1000);
  }

  metrics.queueState(() => {
    const { current, upcoming } = admission.salesAt(clock.now());
    const c = admission.counters(current.id) ?? emptyCounters;
    const next = upcoming && admission.counters(upcoming.id);
    return {
      waiting: waitingIn(c),
      prequeue: next?.preJoined ?? 0,
      nowServing: c.admitted,
      soldOut: soldOut(c),
      leading: admission.leading(),
      ageSeconds: Number.isFinite(admission.age()) ? admission.age() / 1000 : 0,
      targetRate: admission.targetRate(),
      shedRatio: admission.controllerInputs().shedRatio,
      checkoutP99: admission.controllerInputs().checkoutP99,
    };
  });
  const tickets = createTickets({
    secret: config.WAITING_ROOM_SECRET,
    previous: config.WAITING_ROOM_PREVIOUS_SECRET,
    previousUntil: clock.now() + config.WAITING_ROOM_SECRET_GRACE * 1000,
  });
  const staleMs = config.WAITING_ROOM_STALE_SECONDS * 1000;

  const soldOut = (c: QueueCounters | undefined) => c?.taken !== undefined && c.taken >= config.SALE_ITEMS;
  /** Where a ticket stands in the shared order: the pre-queue by key, then joins after the start by number. */
  function rank(t: Ticket, c: QueueCounters): { admitted: boolean; expired: boolean; ahead: number } {
    if (t.place.kind === 'number') {
      const at = c.pre + t.place.n;
      return { admitted: c.started && at <= c.admitted, expired: c.started && at <= c.expired, ahead: at - c.admitted };
    }
    const { key } = t.place;
    // Keys are uniform: about key/2^48 of the pre-queue drew a smaller one.
    const estimate = Math.max(1, Math.ceil((key / KEY_SPACE) * Math.max(c.pre, c.preJoined)));
    return {
      admitted: c.started && key <= c.threshold,
      expired: c.started && key <= c.expiredThreshold,
      ahead: estimate - c.admitted,
    };
  }

  /** The ticket's standing from this instance's counters; throws when the ticket no longer opens anything. */
  function standing(t: Ticket, fresh = true): Standing & { expired: boolean } {
    const now = clock.now();
    const { current, upcoming } = admission.salesAt(now);
    if (t.saleId !== current.id && t.saleId !== upcoming?.id) throw new AppError('TICKET_INVALID', 'another sale');
    if (fresh && admission.age() > staleMs) throw unavailable('waiting room (Redis unreachable)', 1);
    const c = admission.counters(t.saleId) ?? emptyCounters;
    const r = rank(t, c);
    const position = r.admitted ? 0 : Math.max(1, r.ahead);
    const rate = c.rate || config.ADMIT_PER_SEC;
    const start = t.saleId === current.id ? current.startsAt : upcoming!.startsAt;
    const wait = Math.max(0, start - now) / 1000 + (r.admitted ? 0 : position / rate);
    return {
      position,
      admitted: r.admitted,
      expired: r.expired,
      eta_seconds: Math.ceil(wait),
      sold_out: soldOut(c),
      stale: admission.age() > STALE_AFTER_MS,
    };
  }

  function check(raw: unknown): { ticket: Ticket; resigned?: string } {
    if (typeof raw !== 'string' || !ticketPattern.test(raw))
      throw new AppError('TICKET_INVALID', 'missing or malformed');
    const checked = tickets.verify(raw, clock.now());
    if (typeof checked === 'string') throw new AppError('TICKET_INVALID', checked);
    return checked;
  }

  /** When to poll next: about half the expected wait, spread ±50% so a crowd does not poll in step. */
  const retryAfter = (s: Standing) =>
    Math.max(1, Math.min(MAX_POLL_S, Math.round((s.eta_seconds / 2) * (0.5 + Math.random()))));

  return {
    admission,
    TICKET_HEADER,

    async join(input: { userId: string; ip: string }) {
      try {
        const joined = await joinRoom(input);
        metrics.queueJoins.inc({ outcome: joined.fresh ? 'new' : 'again' });
        return joined;
      } catch (err) {
        refused('join', err);
      }
    },

    /**
     * The room as the live event stream tells it (no I/O): the sale people
     * wait for, how many of them it has admitted, how many wait (or joined
     * its pre-queue), the admission rate and whether it sold out.
     */
    state(): RoomState {
      const { current, upcoming } = admission.salesAt(clock.now());
      const sale = upcoming ?? current;
      const c = admission.counters(sale.id) ?? emptyCounters;
      return {
        sale_id: sale.id,
        now_serving: c.admitted,
        waiting: c.started ? waitingIn(c) : c.preJoined,
        admit_per_sec: c.rate || config.ADMIT_PER_SEC,
        sold_out: soldOut(c),
      };
    },

    /** GET /queue/status: no I/O at all. */
    status(raw: string) {
      try {
        const answer = statusOf(raw);
        metrics.queuePolls.inc();
        return answer;
      } catch (err) {
        refused('status', err);
      }
    },

    /**
     * The preHandler of POST /checkout and POST /purchase when the room is on:
     * the ticket (header or `ticket` parameter) must be ours, for this sale and
     * this user, admitted, and within ADMISSION_TTL of its admission.
     */
    guard(route: 'checkout' | 'purchase') {
      return async (request: FastifyRequest) => {
        try {
          const ticket = admitted(route, request);
          if (route === 'checkout') observeAdmission(ticket);
          else request.admittedTicket = ticket;
        } catch (err) {
          refused(route, err);
        }
      };
    },

    /**
     * After a successful POST /purchase (not a replay): its buyer is done and
     * leaves the crowd the stock bound counts, one Redis write (a further
     * purchase by the same person changes nothing). The purchase is durable
     * already, so a failure here is only logged: the buyer then counts until
     * their ADMISSION_TTL passes, the conservative bound.
     */
    async bought(request: FastifyRequest) {
      const t = request.admittedTicket!; // the purchase guard let this request in
      try {
        await redis.scripts.queueDone({
          keys: queueKeys(config.REDIS_PREFIX, t.saleId),
          userId: t.userId,
          order: orderOf(t.place),
          expireAt: admission.expireAt(ids.windowOfSale(t.saleId)!), // the guard matched it to the code's sale
        });
      } catch (err) {
        deps.log.warn({ err }, 'waiting room could not count a buyer as done; they count until their TTL passes');
      }
    },
  };

  async function joinRoom(input: { userId: string; ip: string }) {
    const now = clock.now();
    const { current, upcoming } = admission.salesAt(now);
    const sale = upcoming ?? current;
    const result = await redis.scripts.queueJoin({
      keys: queueKeys(config.REDIS_PREFIX, sale.id),
      userId: input.userId,
      ip: input.ip,
      now,
      startsAt: sale.startsAt,
      items: config.SALE_ITEMS,
      drawn: drawKey(),
      ipRate: config.RATE_LIMIT_IP_PER_SEC,
      ipBurst: config.RATE_LIMIT_IP_BURST,
      expireAt: admission.expireAt(sale),
    });
    if (result.status === 'sold_out') throw new AppError('SOLD_OUT', sale.id);
    if (result.status === 'rate_limited') throw new AppError('RATE_LIMITED', '', Math.ceil(result.retryMs / 1000));
    const ticket: Ticket = {
      saleId: sale.id,
      userId: input.userId,
      place: placeOf(result.place),
      joinedAt: result.joinedAt,
    };
    // Redis just answered: counters a moment old are no reason to refuse the place it gave.
    const { expired, ...s } = standing(ticket, false);
    if (expired) throw new AppError('TICKET_INVALID', 'admission expired'); // a place taken long ago, already used
    return { fresh: result.status === 'new', body: { ticket: tickets.sign(ticket), sale_id: sale.id, ...s } };
  }

  function statusOf(raw: string) {
    const { ticket, resigned } = check(raw);
    const s = standing(ticket);
    if (s.expired) throw new AppError('TICKET_INVALID', 'admission expired');
    // Every poll builds this: one literal of fixed shape, no spread (a spread copies property by property).
    const body = {
      ticket: resigned ?? raw,
      position: s.position,
      admitted: s.admitted,
      eta_seconds: s.eta_seconds,
      sold_out: s.sold_out,
      stale: s.stale,
    };
    return { body, retryAfter: s.sold_out ? MAX_POLL_S : retryAfter(s) };
  }

  function admitted(route: 'checkout' | 'purchase', request: FastifyRequest): Ticket {
    const query = request.query as { user_id?: string; code?: string; ticket?: string };
    const { ticket } = check(request.headers[TICKET_HEADER] ?? query.ticket);
    // Purchase names no user: its code is bound to the user whose admitted checkout got it.
    const saleId = route === 'checkout' ? ids.windowContaining(clock.now()).id : ids.saleIdOfCode(query.code ?? '');
    if (ticket.saleId !== saleId) throw new AppError('TICKET_INVALID', 'another sale');
    if (route === 'checkout' && ticket.userId !== query.user_id) throw new AppError('TICKET_INVALID', 'another user');
    const s = standing(ticket);
    if (s.expired) throw new AppError('TICKET_INVALID', 'admission expired');
    if (!s.admitted) throw new AppError('NOT_ADMITTED', `position ${s.position} in the waiting room`, retryAfter(s));
    return ticket;
  }
}

const emptyCounters: QueueCounters = {
  started: false,
  pre: 0,
  admitted: 0,
  expired: 0,
  threshold: -1,
  expiredThreshold: -1,
  rate: 0,
  preJoined: 0,
  joinedAfterStart: 0,
  taken: undefined,
};

export type Queue = ReturnType<typeof createQueue>;
