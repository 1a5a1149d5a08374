/**
 * The one error catalogue: every code the API can answer with, its HTTP status,
 * and how its message is written. Routes throw AppError; http/errors.ts renders
 * it as {"error":{"code","message"}}; metrics use the code as the `reason` label.
 */
const catalogue = {
  INVALID_REQUEST: { status: 400, message: (detail: string) => detail },
  NOT_FOUND: { status: 404, message: (path: string) => `no route for ${path}` },
  // The detail is the item id and why it is not found: checkout asks about the
  // active sale only, the image route about every sale there ever was.
  ITEM_NOT_FOUND: { status: 404, message: (idAndWhy: string) => `item ${idAndWhy}` },
  CODE_NOT_FOUND: { status: 404, message: () => 'checkout code not found' },
  SALE_NOT_FOUND: { status: 404, message: (id: string) => `sale ${id} not found` },
  // The waiting room (src/queue): checkout and purchase without an admitted ticket.
  NOT_ADMITTED: { status: 403, message: (where: string) => `not admitted yet: ${where}` },
  TICKET_INVALID: { status: 403, message: (why: string) => `waiting-room ticket is invalid: ${why}` },
  METHOD_NOT_ALLOWED: { status: 405, message: (method: string) => `method ${method} is not allowed here` },
  ITEM_SOLD: { status: 409, message: (id: string) => `item ${id} is already sold` },
  USER_LIMIT_REACHED: {
    status: 409,
    message: (limit: string) => `user has reached the limit of ${limit} items in this sale`,
  },
  SALE_ENDED: { status: 410, message: (id: string) => `sale ${id} has ended` },
  SOLD_OUT: { status: 410, message: (id: string) => `sale ${id} is sold out` },
  // Verified buyers and the operator API (src/auth, src/admin).
  UNAUTHENTICATED: { status: 401, message: (why: string) => `authentication required: ${why}` },
  FORBIDDEN: { status: 403, message: (why: string) => why },
  SALE_PAUSED: { status: 503, message: (id: string) => `sale ${id} is paused by the operator, retry later` },
  REQUEST_TIMEOUT: { status: 408, message: () => 'the request did not arrive in time' },
  PAYLOAD_TOO_LARGE: { status: 413, message: () => 'request is too large' },
  HEADERS_TOO_LARGE: { status: 431, message: () => 'request line or headers are too large' },
  RATE_LIMITED: { status: 429, message: () => 'too many requests, retry later' },
  INTERNAL: { status: 500, message: () => 'internal error' },
  UNAVAILABLE: { status: 503, message: (what: string) => `${what} is unavailable, retry later` },
} as const satisfies Record<string, { status: number; message: (detail: string) => string }>;

export type ErrorCode = keyof typeof catalogue;
export const errorCodes = Object.keys(catalogue) as ErrorCode[];
export const statusOf = (code: ErrorCode): number => catalogue[code].status;

export class AppError extends Error {
  readonly status: number;

  constructor(
    readonly code: ErrorCode,
    detail = '',
    /** Seconds a client should wait before retrying (429 and 503). */
    readonly retryAfter?: number,
    readonly field?: string,
  ) {
    // These are answers (ITEM_SOLD, USER_LIMIT_REACHED...), not bugs, and a
    // stampede produces thousands a second: capturing a stack trace for each
    // cost 3% of the service's CPU, so none is captured. A limit that is not a
    // number skips V8's stack walk altogether; a limit of 0 still starts one.
    const limit = Error.stackTraceLimit;
    (Error as { stackTraceLimit?: number }).stackTraceLimit = undefined;
    super(catalogue[code].message(detail));
    Error.stackTraceLimit = limit;
    this.status = catalogue[code].status;
  }
}

export function invalid(field: string, why: string): AppError {
  return new AppError('INVALID_REQUEST', `${field} ${why}`, undefined, field);
}

export function unavailable(what: string, retryAfter = 1): AppError {
  return new AppError('UNAVAILABLE', what, retryAfter);
}
