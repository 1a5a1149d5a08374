/**
 * One environment schema, validated once at boot. A bad value throws a
 * ConfigError whose message is the single line the process prints before it
 * exits (server.ts), naming the variable.
 */
import { isIP } from 'node:net';

export class ConfigError extends Error {}

type Parser<T> = (raw: string, name: string) => T;

function integer(min: number, max: number): Parser<number> {
  return (raw, name) => {
    if (!/^\d+$/.test(raw)) throw new ConfigError(`${name} must be an integer, got "${raw}"`);
    const value = Number(raw);
    if (value < min || value > max) {
      throw new ConfigError(`${name} must be between ${min} and ${max}, got ${raw}`);
    }
    return value;
  };
}

function url(protocols: string[]): Parser<string> {
  return (raw, name) => {
    let parsed: URL;
    try {
      parsed = new URL(raw);
    } catch {
      throw new ConfigError(`${name} must be a URL, got "${raw}"`);
    }
    if (!protocols.includes(parsed.protocol)) {
      throw new ConfigError(`${name} must use ${protocols.join(' or ')}, got "${parsed.protocol}"`);
    }
    return raw;
  };
}

function oneOf<const T extends string>(values: readonly T[]): Parser<T> {
  return (raw, name) => {
    if (!(values as readonly string[]).includes(raw)) {
      throw new ConfigError(`${name} must be one of ${values.join(', ')}, got "${raw}"`);
    }
    return raw as T;
  };
}

const keyPrefix: Parser<string> = (raw, name) => {
  // The prefix is part of every Redis key; braces would break the hash tag.
  if (!/^[A-Za-z0-9_.:-]{1,32}$/.test(raw)) {
    throw new ConfigError(`${name} must be 1-32 characters of [A-Za-z0-9_.:-], got "${raw}"`);
  }
  return raw;
};

/**
 * Whose X-Forwarded-For to believe: `off`, or the proxies' addresses and
 * CIDRs (Fastify's `trustProxy` as a list). Trusting every sender (`true`) and
 * a hop count are refused: a client that reaches the service directly could
 * pick its own address (Fastify itself now ignores the header under a hop count).
 */
const trustProxy: Parser<false | string> = (raw, name) => {
  if (raw === 'off') return false;
  const entries = raw.split(',').map((e) => e.trim());
  for (const entry of entries) {
    const [address, bits, extra] = entry.split('/');
    const family = isIP(address ?? '');
    const named = ['loopback', 'linklocal', 'uniquelocal'].includes(entry);
    const prefixOk = bits === undefined || (/^\d+$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128));
    if (!named && (family === 0 || !prefixOk || extra !== undefined)) {
      throw new ConfigError(`${name} must be off or a comma-separated list of proxy addresses or CIDRs, got "${raw}"`);
    }
  }
  return entries.join(',');
};

/** A shared secret: empty (unset), or at least 32 bytes, so a guessed or short key cannot forge tickets. */
const secret: Parser<string> = (raw, name) => {
  if (raw !== '' && Buffer.byteLength(raw) < 32) {
    throw new ConfigError(`${name} must be at least 32 bytes, got ${Buffer.byteLength(raw)}`);
  }
  return raw;
};

const schema = {
  PORT: { parse: integer(0, 65535), default: '8080' },
  HOST: { parse: (raw: string) => raw, default: '0.0.0.0' },
  DATABASE_URL: {
    parse: url(['postgres:', 'postgresql:']),
    default: 'postgres://postgres@127.0.0.1:5432/flashsale',
  },
  REDIS_URL: { parse: url(['redis:', 'rediss:']), default: 'redis://127.0.0.1:6379' },
  REDIS_PREFIX: { parse: keyPrefix, default: 'fs' },
  SALE_ITEMS: { parse: integer(1, 1_000_000), default: '10000' },
  SALE_DURATION: { parse: integer(2, 31 * 24 * 3600), default: '3600' },
  USER_LIMIT: { parse: integer(1, 1000), default: '10' },
  LOG_LEVEL: {
    parse: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
    default: 'info',
  },
  DB_POOL_SIZE: { parse: integer(1, 200), default: '16' },
  /** Service processes sharing the port (node:cluster); each has its own pools. */
  WORKERS: { parse: integer(1, 64), default: '1' },
  /** Upper bound on one Redis command or PostgreSQL query before it counts as down. */
  DEPENDENCY_TIMEOUT_MS: { parse: integer(50, 60_000), default: '1000' },
  /** Longest a client may take to send a whole request before it gets 408 (bounds a SIGTERM drain too). */
  REQUEST_TIMEOUT_MS: { parse: integer(1000, 600_000), default: '10000' },
  /** Requests in flight per instance before new ones are shed with 503. */
  MAX_IN_FLIGHT: { parse: integer(1, 1_000_000), default: '2048' },
  /** Token bucket per user per sale: sustained requests per second and burst. */
  RATE_LIMIT_USER_PER_SEC: { parse: integer(0, 1_000_000), default: '20' },
  RATE_LIMIT_USER_BURST: { parse: integer(1, 1_000_000), default: '40' },
  /** Token bucket per client IP (0 turns a limit off). */
  RATE_LIMIT_IP_PER_SEC: { parse: integer(0, 10_000_000), default: '50000' },
  RATE_LIMIT_IP_BURST: { parse: integer(1, 10_000_000), default: '100000' },
  /** Proxies whose X-Forwarded-For names the client (for the per-IP limit); off by default. */
  TRUST_PROXY: { parse: trustProxy, default: 'off' },
  /** What to do when Redis may evict keys (maxmemory-policy other than noeviction). */
  REDIS_EVICTION_POLICY_CHECK: { parse: oneOf(['warn', 'refuse'] as const), default: 'warn' },
  RECONCILE_INTERVAL_MS: { parse: integer(100, 3_600_000), default: '5000' },
  // The waiting room (src/queue, docs/waiting-room.md); off, nothing of it runs.
  WAITING_ROOM: { parse: oneOf(['off', 'on'] as const), default: 'off' },
  /** HMAC key of the room's tickets; required when WAITING_ROOM=on. */
  WAITING_ROOM_SECRET: { parse: secret, default: '' },
  /** The secret before the last rotation, still accepted for WAITING_ROOM_SECRET_GRACE seconds after start-up. */
  WAITING_ROOM_PREVIOUS_SECRET: { parse: secret, default: '' },
  WAITING_ROOM_SECRET_GRACE: { parse: integer(0, 7 * 24 * 3600), default: '900' },
  /** How long status polls answer from the last counters while Redis is unreachable, before 503. */
  WAITING_ROOM_STALE_SECONDS: { parse: integer(1, 3600), default: '10' },
  /** People let through per second, by whichever instance holds the admission lease. */
  ADMIT_PER_SEC: { parse: integer(1, 1_000_000), default: '100' },
  /** Seconds an admitted ticket opens checkout and purchase. */
  ADMISSION_TTL: { parse: integer(1, 24 * 3600), default: '300' },
  /** Admitted people within their ADMISSION_TTL are kept at most this many times the items remaining. */
  ADMISSION_STOCK_FACTOR: { parse: integer(1, 1000), default: '2' },
  /** Joins this long before a sale starts enter its pre-queue, shuffled at the start. */
  PREQUEUE_SECONDS: { parse: integer(0, 24 * 3600), default: '60' },
  /** fixed: admit ADMIT_PER_SEC; adaptive: start there and follow shedding and checkout p99 (src/queue/controller.ts). */
  ADMISSION_MODE: { parse: oneOf(['fixed', 'adaptive'] as const), default: 'fixed' },
  /** Adaptive mode slows admission while checkout's p99 latency is over this. */
  ADMISSION_P99_TARGET_MS: { parse: integer(1, 60_000), default: '250' },
} as const;

type Schema = typeof schema;
export type Config = { [K in keyof Schema]: ReturnType<Schema[K]['parse']> };

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const raw = env[name];
    config[name] = spec.parse(raw === undefined || raw === '' ? spec.default : raw, name);
  }
  return checkTogether(config as Config);
}

/** Rules between settings, each naming the variable to fix. */
function checkTogether(config: Config): Config {
  if (config.WAITING_ROOM === 'on' && config.WAITING_ROOM_SECRET === '') {
    throw new ConfigError('WAITING_ROOM_SECRET is required when WAITING_ROOM=on (at least 32 bytes)');
  }
  if (config.WAITING_ROOM === 'on' && config.PREQUEUE_SECONDS * 2 > config.SALE_DURATION) {
    throw new ConfigError(`PREQUEUE_SECONDS must be at most half of SALE_DURATION, got ${config.PREQUEUE_SECONDS}`);
  }
  return config;
}

/** "host:port/db" of a URL, without credentials, for log lines. */
export const describeUrl = (url: string) => {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '(default port)'}${u.pathname === '/' ? '' : u.pathname}`;
};
