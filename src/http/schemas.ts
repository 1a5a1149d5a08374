/**
 * Schema pieces shared by the routes. Each route lists every answer it gives
 * (status, body, headers, and for errors the codes and why), so one schema both
 * serializes the answer and documents it in /openapi.json; test/openapi.test.ts
 * provokes each documented answer and checks the real one against it.
 */
import { Type } from 'typebox';

import { statusOf, type ErrorCode } from '../errors.js';

/** Input rules shared by several routes; the description is quoted in 400 messages. */
export const USER_ID = '^[A-Za-z0-9._:@-]{1,64}$';
export const USER_ID_RULE = 'must be 1-64 characters of A-Z a-z 0-9 . _ : @ -';

/** The error shape, its code limited to those a response can carry. */
export function errorBody(codes: readonly ErrorCode[]) {
  return {
    type: 'object' as const,
    properties: {
      error: {
        type: 'object' as const,
        properties: {
          code: { type: 'string' as const, enum: [...codes] },
          message: { type: 'string' as const },
          field: { type: 'string' as const, description: 'the input to blame, when there is one' },
        },
        required: ['code', 'message'],
      },
    },
    required: ['error'],
  };
}

export const retryAfter = {
  'retry-after': { type: 'integer', minimum: 1, description: 'seconds to wait before retrying' },
};
/** RFC 6750's challenge on every 401 (src/auth, src/admin). */
export const challenge = {
  'www-authenticate': {
    type: 'string',
    description: 'the Bearer challenge: `Bearer realm="…"`, with `error="invalid_token"` when a token was sent',
  },
};

/** Answers any route gives, whatever it does: added to each route's own. */
const everyRoute: Partial<Record<ErrorCode, string>> = {
  INVALID_REQUEST: 'an HTTP/1.1 request without `Host`, or a malformed URL',
  PAYLOAD_TOO_LARGE: 'a body over 16 KiB (no route takes a body; a smaller one is ignored)',
  UNAVAILABLE: 'the service is overloaded (`MAX_IN_FLIGHT` requests in flight)',
};

/**
 * A route's response schemas: its successes as given, and one error response per
 * status, listing the codes it answers with and why (Retry-After on 429 and 503).
 */
export function responses<T extends Record<number, unknown>>(
  successes: T,
  errors: Partial<Record<ErrorCode, string>>,
): T & Record<number, unknown> {
  const reasons = new Map<ErrorCode, string[]>();
  for (const table of [errors, everyRoute]) {
    for (const [code, why] of Object.entries(table) as [ErrorCode, string][]) {
      reasons.set(code, [...(reasons.get(code) ?? []), why]);
    }
  }
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of reasons.keys()) byStatus.set(statusOf(code), [...(byStatus.get(statusOf(code)) ?? []), code]);
  const result: Record<number, unknown> = { ...successes };
  for (const [status, codes] of [...byStatus].sort(([a], [b]) => a - b)) {
    result[status] = {
      description: codes.map((code) => `\`${code}\`: ${reasons.get(code)!.join('; or ')}`).join('\n\n'),
      ...(status === 429 || status === 503 ? { headers: retryAfter } : {}),
      ...(status === 401 ? { headers: challenge } : {}),
      ...errorBody(codes),
    };
  }
  return result as T & Record<number, unknown>;
}

/**
 * An optional integer query parameter. It is validated first as decimal digits,
 * then as an integer: Ajv's number coercion alone turns 5,000 nines into
 * Infinity, which slips past `maximum`, and also accepts 0x10 and 1e3. The
 * handler gets a number (the default when absent). The published document shows
 * only the integer (see http/openapi.ts): what a client may send.
 */
export function queryInteger(options: { minimum: number; maximum: number; default: number }) {
  const digits = String(options.maximum).length;
  return Type.Optional(
    Type.Unsafe<number>({
      allOf: [
        { type: 'string', pattern: `^0*\\d{1,${digits}}$`, maxLength: 16 },
        { type: 'integer', ...options },
      ],
      default: options.default,
      description: `must be an integer from ${options.minimum} to ${options.maximum}`,
    }),
  );
}

/** What the document shows for a query parameter made by queryInteger: the integer it takes. */
export function publishedQueryInteger(schema: Record<string, unknown>) {
  const allOf = schema.allOf as Record<string, unknown>[] | undefined;
  if (allOf?.length !== 2 || allOf[0]!.type !== 'string' || allOf[1]!.type !== 'integer') return schema;
  const published = { ...schema, ...allOf[1] };
  delete published.allOf;
  return published;
}
