/**
 * The tool's HTTP client: one keep-alive undici pool with a socket per
 * simulated user. Each user has at most one request in flight, so none waits
 * in the pool's queue and a latency is the service's (and the network's).
 */
import { Pool } from 'undici';

export interface Answer {
  /** 0 when there was no answer: connection error or timeout. */
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** `{}` when the body is not JSON, such as a proxy's HTML 502; the status still counts. */
  body: Record<string, unknown>;
  /** Why no answer came: the error's code (ECONNREFUSED, UND_ERR_SOCKET, UND_ERR_HEADERS_TIMEOUT...). */
  failure?: string;
}

/** The answer to a request that got none: refused, reset, timed out. */
export function noAnswer(error: unknown): Answer {
  const code = (error as { code?: unknown } | undefined)?.code;
  return { status: 0, headers: {}, body: {}, failure: typeof code === 'string' ? code : 'error' };
}

/** The connection was refused: the request never reached the service, so sending it again is safe. */
export const refused = (res: Answer) => res.failure === 'ECONNREFUSED';

/**
 * The wait after the k-th answer missed in a row (k from 0): 50 ms doubling
 * to 2 s, so a service that went away gets a few attempts a second per user
 * instead of thousands; the second half is random so users do not retry in step.
 */
export function backoffMs(k: number, random = Math.random): number {
  const ms = Math.min(2000, 50 * 2 ** k);
  return ms / 2 + (random() * ms) / 2;
}

// A hung service must not hold the run long past its end; no sane answer takes this long.
const TIMEOUT_MS = 10_000;

export type Client = ReturnType<typeof createClient>;

export function createClient(origin: string, connections: number) {
  const pool = new Pool(origin, { connections, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS });
  return {
    /** Rejects only when no answer came (ECONNREFUSED, timeout...): see `noAnswer`. */
    async request(method: 'GET' | 'POST', path: string): Promise<Answer> {
      const res = await pool.request({ method, path });
      return { status: res.statusCode, headers: res.headers, body: parseBody(await res.body.text()) };
    },
    close: () => pool.close(),
  };
}

function parseBody(text: string): Record<string, unknown> {
  try {
    const body: unknown = JSON.parse(text);
    return typeof body === 'object' && body !== null ? (body as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** How long a Retry-After header asks to wait: delta-seconds or an HTTP-date; 1 s when absent or unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number {
  const value = String(header ?? '').trim();
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? 1000 : Math.max(0, at - now);
}
