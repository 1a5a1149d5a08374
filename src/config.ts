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

/** Comma-separated URLs of one of these protocols; empty means none. */
function urls(protocols: string[]): Parser<string[]> {
  const one = url(protocols);
  return (raw, name) => (raw.trim() === '' ? [] : raw.split(',').map((u) => one(u.trim(), name)));
}

/** Comma-separated IP addresses or CIDR ranges ("10.0.0.0/8"); empty means none. */
const addresses: Parser<string[]> = (raw, name) => {
  const list = raw.trim() === '' ? [] : raw.split(',').map((a) => a.trim());
  for (const a of list) {
    const [ip, bits, extra] = a.split('/');
    const family = isIP(ip!);
    const maxBits = family === 6 ? 128 : 32;
    if (!family || extra !== undefined || (bits !== undefined && !(/^\d+$/.test(bits) && Number(bits) <= maxBits))) {
      throw new ConfigError(`${name} must be IP addresses or CIDR ranges separated by commas, got "${a}"`);
    }
  }
  return list;
};

const keyPrefix: Parser<string> = (raw, name) => {
  // The prefix is part of every Redis key; braces would break the hash tag.
  if (!/^[A-Za-z0-9_.:-]{1,32}$/.test(raw)) {
    throw new ConfigError(`${name} must be 1-32 characters of [A-Za-z0-9_.:-], got "${raw}"`);
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
  /** More seed nodes of a Redis Cluster (REDIS_URL is always one); cluster mode itself is read from INFO cluster. */
  REDIS_CLUSTER_NODES: { parse: urls(['redis:', 'rediss:']), default: '' },
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
  /** What to do when Redis may evict keys (maxmemory-policy other than noeviction). */
  REDIS_EVICTION_POLICY_CHECK: { parse: oneOf(['warn', 'refuse'] as const), default: 'warn' },
  RECONCILE_INTERVAL_MS: { parse: integer(100, 3_600_000), default: '5000' },
  /**
   * Load balancers whose X-Forwarded-For is believed (addresses or CIDRs):
   * the client address is the last one in it not in this list. Empty: the
   * peer address, whatever the header says.
   */
  TRUST_PROXY: { parse: addresses, default: '' },
} as const;

type Schema = typeof schema;
export type Config = { [K in keyof Schema]: ReturnType<Schema[K]['parse']> };

export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  const config: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(schema)) {
    const raw = env[name];
    config[name] = spec.parse(raw === undefined || raw === '' ? spec.default : raw, name);
  }
  return config as Config;
}
