/**
 * Waiting-room tickets: what a person's place is, signed so any instance can
 * check it without asking anyone (no Redis or PostgreSQL per poll).
 *
 *   base64url("1|<sale>|<user>|<place>|<joined ms>") "." base64url(HMAC-SHA256)
 *
 * <place> is `p<key>` (a pre-queue place: a random key below 2^48, the
 * shuffle) or `n<number>` (the n-th join after the start). User ids cannot
 * contain "|" (their schema), so the fields split unambiguously. Rotation:
 * tickets signed with the previous secret stay valid for a grace period after
 * start-up and are re-signed with the current one on their next poll.
 *
 * A poller sends the same ticket every time, so the tickets the current secret
 * verified are remembered, exactly as sent, in two generations of at most
 * REMEMBERED entries each (about 300 bytes an entry): a poll of a remembered
 * ticket skips the HMAC, the base64 and the parsing. Only the exact string
 * that verified is ever found, so a forged ticket still meets the HMAC.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface Ticket {
  saleId: string;
  userId: string;
  /** Pre-queue key (below 2^48) or the join number after the start. */
  place: { kind: 'pre'; key: number } | { kind: 'number'; n: number };
  joinedAt: number;
}

/** The pre-queue's random keys are uniform integers below 2^48 (exact as doubles, in Lua and in Redis scores). */
export const KEY_SPACE = 2 ** 48;

/**
 * A place's rank in the admission order as one sorted-set score: the pre-queue
 * by key, then join n after the start as 2^48 + n (exact below 2^53). The
 * places admitted first are those scored up to a bound (queue-advance-7.lua).
 */
export const orderOf = (place: Ticket['place']) => (place.kind === 'pre' ? place.key : KEY_SPACE + place.n);

const VERSION = '1';
/** Verified tickets remembered per generation (two generations: at most twice this many). */
const REMEMBERED = 32_768;
/** A ticket as sent by a client: bounded, so parsing never works on attacker-sized input. */
export const TICKET_PATTERN = '^[A-Za-z0-9_-]{8,200}\\.[A-Za-z0-9_-]{43}$';

export function placeOf(place: string): Ticket['place'] {
  const value = Number(place.slice(1));
  return place[0] === 'p' ? { kind: 'pre', key: value } : { kind: 'number', n: value };
}

export function createTickets(options: { secret: string; previous: string; previousUntil: number }) {
  const current = Buffer.from(options.secret);
  const previous = options.previous === '' ? undefined : Buffer.from(options.previous);
  const mac = (key: Buffer, payload: string) => createHmac('sha256', key).update(payload).digest();

  function sign(t: Ticket): string {
    const place = t.place.kind === 'pre' ? `p${t.place.key}` : `n${t.place.n}`;
    const payload = [VERSION, t.saleId, t.userId, place, String(t.joinedAt)].join('|');
    return `${Buffer.from(payload).toString('base64url')}.${mac(current, payload).toString('base64url')}`;
  }

  /**
   * The ticket a client sent, if one of our secrets signed it; `resigned` is
   * the same ticket under the current secret when the previous one signed it.
   * Returns a reason string when it is not valid.
   */
  let recent = new Map<string, Ticket>();
  let older = new Map<string, Ticket>();
  function remember(raw: string, ticket: Ticket) {
    if (recent.size >= REMEMBERED) {
      older = recent;
      recent = new Map();
    }
    recent.set(raw, ticket);
  }
  function remembered(raw: string): Ticket | undefined {
    const fresh = recent.get(raw);
    if (fresh) return fresh;
    const kept = older.get(raw); // still polled: carried into the recent generation
    if (kept) remember(raw, kept);
    return kept;
  }

  function verify(raw: string, now: number): { ticket: Readonly<Ticket>; resigned?: string } | string {
    const known = remembered(raw);
    if (known) return { ticket: known };
    const dot = raw.indexOf('.');
    if (dot < 0) return 'malformed';
    const [payloadText, signatureText] = [raw.slice(0, dot), raw.slice(dot + 1)];
    const payloadBytes = Buffer.from(payloadText, 'base64url');
    const signature = Buffer.from(signatureText, 'base64url');
    if (signature.length !== 32) return 'malformed';
    // One spelling per ticket: a base64url text's last character can carry
    // bits that decoding drops, so an altered ticket could decode to the
    // signed bytes and pass for the one we issued.
    if (payloadBytes.toString('base64url') !== payloadText || signature.toString('base64url') !== signatureText) {
      return 'malformed';
    }
    const payload = payloadBytes.toString();
    const byCurrent = timingSafeEqual(signature, mac(current, payload));
    const byPrevious =
      !byCurrent &&
      previous !== undefined &&
      now < options.previousUntil &&
      timingSafeEqual(signature, mac(previous, payload));
    if (!byCurrent && !byPrevious) return 'bad signature';
    const [version, saleId, userId, place, joinedAt, extra] = payload.split('|');
    if (version !== VERSION || extra !== undefined || !saleId || !userId || !place || !/^[pn]\d{1,16}$/.test(place)) {
      return 'malformed';
    }
    const ticket: Ticket = { saleId, userId, place: placeOf(place), joinedAt: Number(joinedAt) };
    if (byPrevious) return { ticket, resigned: sign(ticket) };
    remember(raw, ticket);
    return { ticket };
  }

  return { sign, verify };
}

export type Tickets = ReturnType<typeof createTickets>;
