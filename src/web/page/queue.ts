/**
 * The waiting room seen from the page (docs/waiting-room.md). The page never
 * asks whether the room is on, so with it off nothing here runs and the API is
 * used exactly as before: a checkout or purchase refused with 403
 * NOT_ADMITTED or TICKET_INVALID is what says it is on. The page then joins,
 * shows the position and expected wait, polls when each answer's Retry-After
 * says, and carries on by itself once admitted, or stops at sold out. The
 * event stream's `queue` events (the room's state) cut a wait short: when the
 * room has served up to the person's place, or sold out, the next poll goes
 * at once (never sooner than MIN_POLL_S after the last). The ticket is kept
 * in sessionStorage (per user: this tab's visit) and sent as X-Queue-Ticket.
 */
import { api, ApiError, credentials, HUMAN, type Answer, type OnWait, type Standing } from './api.js';
import type { RoomState } from './stream.js';

const keyOf = (user: string) => `flashsale:ticket:${user}`;
const sleep = (seconds: number) => new Promise((r) => setTimeout(r, seconds * 1000));
/** Polls wait at least this long, whatever an answer says, so a bug cannot make a storm. */
const MIN_POLL_S = 1;

/** Takes the ticket this browser holds for the user, if any, for the next guarded requests. */
export function useTicketOf(user: string) {
  credentials.ticket = sessionStorage.getItem(keyOf(user)) ?? undefined;
}
function keep(user: string, ticket: string | undefined) {
  if (ticket) sessionStorage.setItem(keyOf(user), ticket);
  else sessionStorage.removeItem(keyOf(user));
  credentials.ticket = ticket;
}

/** The room's latest state from the event stream, and the naps it may cut short. */
let room: RoomState | undefined;
const napping = new Set<() => void>();
export function roomChanged(state: RoomState) {
  room = state;
  for (const check of napping) check();
}

/**
 * Sleeps until the next poll: `seconds`, or from MIN_POLL_S on as soon as the
 * stream says the room has served `place` (the number it serves then) or sold out.
 */
async function nap(seconds: number, place: number) {
  await sleep(MIN_POLL_S);
  await new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      napping.delete(check);
      resolve();
    };
    const check = () => {
      if (room && (room.sold_out || room.now_serving >= place)) done();
    };
    const timer = setTimeout(done, Math.max(0, seconds - MIN_POLL_S) * 1000);
    napping.add(check);
    check();
  });
}

export interface Waiting {
  /** Where the person stands, after each answer of the room. */
  standing(s: Standing): void;
  onWait: OnWait;
}

/** Polls the room until the user is admitted; throws SOLD_OUT or TICKET_INVALID (their turn passed). */
async function waitTurn(user: string, w: Waiting): Promise<void> {
  let answer: Answer<Standing> | undefined;
  if (credentials.ticket) answer = await poll(user, credentials.ticket, w);
  answer ??= await api.join(user, w.onWait);
  for (;;) {
    const s: Standing = answer.body;
    keep(user, s.ticket);
    if (s.sold_out) throw new ApiError('SOLD_OUT', HUMAN.SOLD_OUT!);
    if (s.admitted) return;
    w.standing(s);
    // The number the room serves when this place's turn comes (as far as the stream's last state tells).
    const place = room ? room.now_serving + s.position : Infinity;
    await nap(Math.max(MIN_POLL_S, answer.retryAfter ?? MIN_POLL_S), place);
    answer = (await poll(user, s.ticket, w)) ?? (await api.join(user, w.onWait));
  }
}

/** One status poll; undefined when the ticket no longer counts (another sale), so the caller joins again. */
async function poll(user: string, ticket: string, w: Waiting): Promise<Answer<Standing> | undefined> {
  for (;;) {
    try {
      return await api.status(ticket, w.onWait);
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      if (err.code === 'TICKET_INVALID' || err.code === 'INVALID_REQUEST') {
        keep(user, undefined);
        return undefined;
      }
      if (err.code !== 'UNAVAILABLE') throw err;
      // Redis down for a while: the place is kept in Redis, so keep asking.
      await sleep(Math.max(MIN_POLL_S, err.retryAfter ?? 5));
    }
  }
}

const roomRefusal = (err: unknown) =>
  err instanceof ApiError && (err.code === 'NOT_ADMITTED' || err.code === 'TICKET_INVALID');

/**
 * Runs a guarded request (checkout or purchase); when the room refuses it,
 * waits for the user's turn and runs it again. Three tries at most: an
 * admitted ticket still refused means something waiting cannot fix.
 */
export async function withTurn<T>(user: string, w: Waiting, request: () => Promise<T>): Promise<T> {
  for (let round = 0; ; round++) {
    try {
      return await request();
    } catch (err) {
      if (!roomRefusal(err) || round === 2) throw err;
      if ((err as ApiError).code === 'TICKET_INVALID') keep(user, undefined);
      await waitTurn(user, w);
    }
  }
}
