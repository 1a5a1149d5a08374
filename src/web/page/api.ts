/**
 * The service's API as the page uses it. Every refusal becomes an ApiError
 * whose `message` is meant for a person; a 429 is retried by itself after
 * its Retry-After. Checkout and purchase carry the signed-in user's token
 * (AUTH=jwt) and the waiting-room ticket when the page holds them.
 */
export interface Item {
  id: string;
  name: string;
  image_url: string;
  sold: boolean;
}
export interface Purchase {
  item: { id: string; name: string; image_url: string };
  purchased_at: string;
}
/** Where a waiting-room ticket stands (POST /queue/join, GET /queue/status). */
export interface Standing {
  ticket: string;
  position: number;
  admitted: boolean;
  eta_seconds: number;
  sold_out: boolean;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    /** The answer's Retry-After in seconds, when it had one. */
    readonly retryAfter?: number,
  ) {
    super(message);
  }
}

export const HUMAN: Record<string, string> = {
  ITEM_SOLD: 'Sorry, someone else has just bought this item.',
  USER_LIMIT_REACHED: 'You have reached your limit of items in this sale.',
  SALE_ENDED: 'This sale has ended: the next one is opening.',
  SALE_PAUSED: 'The sale is paused for a moment. Please try again shortly.',
  SOLD_OUT: 'Sold out! Every item of this sale is taken.',
  CODE_NOT_FOUND: 'This checkout is no longer valid; pick the item again.',
  ITEM_NOT_FOUND: 'This item is not in the sale.',
  TICKET_INVALID: 'Your turn in the waiting room has passed for this sale.',
  UNAUTHENTICATED: 'Please sign in again: your sign-in is missing or has expired.',
  FORBIDDEN: 'You are signed in as someone else than this user id.',
  UNAVAILABLE: 'The shop is unavailable right now. Please try again in a moment.',
};

/** Waits this long, telling the person so, before a rate-limited request is sent again. */
export type OnWait = (seconds: number) => void;

/** The credentials checkout and purchase send: set by the page from sessionStorage. */
export const credentials: { token?: string; ticket?: string } = {};

export interface Answer<T> {
  body: T;
  retryAfter: number | undefined;
}

const retryAfterOf = (res: Response) => {
  const s = Number(res.headers.get('retry-after'));
  return Number.isFinite(s) && s > 0 ? s : undefined;
};

export async function call<T>(
  method: string,
  url: string,
  onWait: OnWait,
  headers: HeadersInit = {},
): Promise<Answer<T>> {
  for (;;) {
    let res: Response;
    try {
      res = await fetch(url, { method, headers });
    } catch {
      throw new ApiError('UNAVAILABLE', HUMAN.UNAVAILABLE!);
    }
    if (res.ok) return { body: (await res.json()) as T, retryAfter: retryAfterOf(res) };
    const error = await res
      .json()
      .then((b: { error?: { code?: string; message?: string; field?: string } }) => b.error ?? {})
      .catch(() => ({}) as { code?: string; message?: string; field?: string });
    const code = error.code ?? (res.status >= 500 ? 'UNAVAILABLE' : 'INVALID_REQUEST');
    if (code === 'RATE_LIMITED') {
      const seconds = Math.max(1, retryAfterOf(res) ?? 1);
      onWait(seconds);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      continue;
    }
    const human = error.field === 'user_id' ? `Your user id ${error.message?.replace(/^.*user_id /, '')}.` : undefined;
    const message = human ?? HUMAN[code] ?? error.message ?? `The shop answered ${res.status}.`;
    throw new ApiError(code, message, retryAfterOf(res));
  }
}

/** The headers of a guarded request: the buyer's token and the waiting-room ticket, when held. */
function guarded(): Record<string, string> {
  const headers: Record<string, string> = {};
  if (credentials.token) headers.authorization = `Bearer ${credentials.token}`;
  if (credentials.ticket) headers['x-queue-ticket'] = credentials.ticket;
  return headers;
}
const bodyOf = <T>(answer: Promise<Answer<T>>) => answer.then((a) => a.body);

export const api = {
  items: (sale: string, offset: number, limit: number, onWait: OnWait) =>
    bodyOf(
      call<{ items: Item[]; total: number }>('GET', `/sales/${sale}/items?offset=${offset}&limit=${limit}`, onWait),
    ),
  checkout: (user: string, item: string, onWait: OnWait) =>
    bodyOf(
      call<{ code: string }>('POST', `/checkout?user_id=${encodeURIComponent(user)}&id=${item}`, onWait, guarded()),
    ),
  purchase: (code: string, onWait: OnWait) =>
    bodyOf(call<Purchase>('POST', `/purchase?code=${code}`, onWait, guarded())),
  join: (user: string, onWait: OnWait) =>
    call<Standing>('POST', `/queue/join?user_id=${encodeURIComponent(user)}`, onWait),
  status: (ticket: string, onWait: OnWait) =>
    call<Standing>('GET', `/queue/status?ticket=${encodeURIComponent(ticket)}`, onWait),
};
