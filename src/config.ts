import { createHash, createPublicKey } from 'node:crypto';

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
// Verified buyers and the operator API (src/auth, src/admin; docs/security.md).
const optional =
  <T>(parse: Parser<T>): Parser<T | undefined> =>
  (raw, name) =>
    raw === '' ? undefined : parse(raw, name);
const text: Parser<string> = (raw) => raw;
/** Asymmetric JWS algorithms only: "none" and HS* (which a public key could be misused to forge) are never accepted. */
const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
const algorithms: Parser<string[]> = (raw, name) =>
  raw.split(',').map((alg) => oneOf(JWT_ALGORITHMS)(alg.trim(), name));
const publicKey: Parser<string> = (raw, name) => {
  try {
    createPublicKey(raw);
  } catch {
    throw new ConfigError(`${name} must be a PEM public key (-----BEGIN PUBLIC KEY-----)`);
  }
  return raw;
};
/**
 * Operator bearer tokens, comma-separated: each either `sha256:<64 hex>` (the
 * SHA-256 of the token, so the configuration never holds the token itself) or
 * the token in clear, at least 32 characters. Kept as hashes either way; `id`
 * (a hash prefix) names the token in the audit trail.
 */
const adminTokens: Parser<{ id: string; hash: Buffer }[]> = (raw, name) =>
  raw.split(',').map((entry) => {
    const token = entry.trim();
    const hashed = /^sha256:([0-9a-f]{64})$/i.exec(token);
    if (!hashed && !/^[\x21-\x7e]{32,512}$/.test(token)) {
      throw new ConfigError(`${name} entries must be sha256:<64 hex digits> or tokens of 32-512 printable characters`);
    }
    const hash = hashed ? Buffer.from(hashed[1]!, 'hex') : createHash('sha256').update(token).digest();
    return { id: `token:${hash.toString('hex').slice(0, 8)}`, hash };
  });

const DURATION_UNITS_MS = { d: 86_400_000, h: 3_600_000, m: 60_000, s: 1000 } as const;

/** A duration such as 30d, 12h, 90m or 45s, in milliseconds; a bare 0 is 0 (off). */
const duration: Parser<number> = (raw, name) => {
  if (raw === '0') return 0;
  const match = /^(\d{1,9})([dhms])$/.exec(raw);
  if (!match) throw new ConfigError(`${name} must be a duration like 30d, 12h, 90m or 45s (or 0), got "${raw}"`);
  return Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS];
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
  /** Admitted people within their ADMISSION_TTL who have not bought: at most this many times the items remaining. */
  ADMISSION_STOCK_FACTOR: { parse: integer(1, 1000), default: '2' },
  /** Joins this long before a sale starts enter its pre-queue, shuffled at the start. */
  PREQUEUE_SECONDS: { parse: integer(0, 24 * 3600), default: '60' },
  // Verified buyers and the operator API (docs/security.md).
  AUTH: { parse: oneOf(['off', 'jwt'] as const), default: 'off' },
  AUTH_JWKS_URL: { parse: optional(url(['https:', 'http:'])), default: '' },
  AUTH_PUBLIC_KEY: { parse: optional(publicKey), default: '' },
  AUTH_ISSUER: { parse: optional(text), default: '' },
  AUTH_AUDIENCE: { parse: optional(text), default: '' },
  AUTH_ALGORITHMS: { parse: algorithms, default: 'RS256,ES256,EdDSA' },
  AUTH_CLOCK_TOLERANCE_S: { parse: integer(0, 300), default: '30' },
  /** Least time between two fetches of the key set for an unknown kid (a flood of made-up kids is one fetch). */
  AUTH_JWKS_COOLDOWN_MS: { parse: integer(0, 3_600_000), default: '30000' },
  /** How often the key set is fetched anyway, so keys the provider withdrew stop working. */
  AUTH_JWKS_REFRESH_MS: { parse: integer(1000, 86_400_000), default: '300000' },
  AUTH_ADMIN_ROLE: { parse: optional(text), default: 'flashsale:admin' },
  ADMIN_TOKENS: { parse: optional(adminTokens), default: '' },
  /** How often each instance reads the sales' paused/ended state from PostgreSQL. */
  SALE_STATE_REFRESH_MS: { parse: integer(50, 500), default: '250' },
  /** Migrations' connection: a direct one when DATABASE_URL goes through PgBouncer (empty: DATABASE_URL). */
  DATABASE_MIGRATION_URL: {
    parse: (raw: string, name: string) => (raw === '' ? '' : url(['postgres:', 'postgresql:'])(raw, name)),
    default: '',
  },
  /** How long after its sale ends a checkout_attempts partition is archived and dropped (0 keeps all). */
  ATTEMPTS_RETENTION: { parse: duration, default: '0' },
  /** How often one instance looks for partitions to retire (more often if a window's quiet part is shorter). */
  RETENTION_INTERVAL_MS: { parse: integer(100, 3_600_000), default: '60000' },
  /** Seconds into a sale window before partitions may be retired, past its stampede (empty: half of SALE_DURATION). */
  RETENTION_OFFSET_SECONDS: { parse: optional(integer(0, 31 * 24 * 3600)), default: '' },
  /** Where retired partitions are archived (CSV.gz plus a manifest each). */
  ARCHIVE_DIR: { parse: (raw: string) => raw, default: 'archive' },
  /** Live event streams (GET /sales/active/events) per instance, apart from MAX_IN_FLIGHT. */
  MAX_STREAMS: { parse: integer(0, 1_000_000), default: '10000' },
  /**
   * How often the one broadcaster reads the sale and writes events: at most 4
   * times a second. 2 by default: every watcher still hears of a sale within
   * 1 s, and each round is a write per stream (docs/PERFORMANCE.md).
   */
  STREAM_INTERVAL_MS: { parse: integer(250, 60_000), default: '500' },
  /** A comment line on every quiet stream this often, so proxies and clients see it alive. */
  STREAM_HEARTBEAT_MS: { parse: integer(1000, 300_000), default: '15000' },
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
  if (config.RETENTION_OFFSET_SECONDS !== undefined && config.RETENTION_OFFSET_SECONDS >= config.SALE_DURATION) {
    throw new ConfigError(
      `RETENTION_OFFSET_SECONDS must be less than SALE_DURATION (${config.SALE_DURATION}), got ${config.RETENTION_OFFSET_SECONDS}`,
    );
  }
  checkAuth(config);
  return config;
}

/** "host:port/db" of a URL, without credentials, for log lines. */
export const describeUrl = (url: string) => {
  const u = new URL(url);
  return `${u.hostname}:${u.port || '(default port)'}${u.pathname === '/' ? '' : u.pathname}`;
};

/** AUTH=jwt is refused unless it can verify anything: keys, an issuer and an audience. */
function checkAuth(config: Config) {
  if (config.AUTH !== 'jwt') return;
  if (!config.AUTH_JWKS_URL === !config.AUTH_PUBLIC_KEY) {
    throw new ConfigError('AUTH_JWKS_URL or AUTH_PUBLIC_KEY (exactly one) is required with AUTH=jwt');
  }
  if (!config.AUTH_ISSUER) throw new ConfigError('AUTH_ISSUER is required with AUTH=jwt');
  if (!config.AUTH_AUDIENCE) throw new ConfigError('AUTH_AUDIENCE is required with AUTH=jwt');
}
