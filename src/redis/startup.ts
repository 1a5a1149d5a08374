/**
 * Redis at start-up: connect, wait a bounded time for it (the service starts
 * anyway and retries: /health says Redis is down until it is back), and check
 * that it will not evict keys. Also the log lines of a Redis outage.
 */
import type { Logger } from 'pino';

import { describeUrl, type Config } from '../config.js';
import type { Redis } from './redis.js';

/** Logs a failing dependency once when it fails and once when it recovers, not on every retry. */
export function outageLogger(log: Logger, what: string, where: string) {
  let down = false;
  return {
    failed(err: Error) {
      if (!down) log.error({ err }, `${what} unreachable at ${where}, retrying`);
      down = true;
    },
    recovered() {
      if (down) log.info(`${what} reachable again at ${where}`);
      down = false;
    },
  };
}

/** The Redis outage logger for this config, to pass to createRedis and attach once the client exists. */
export function redisOutageLogger(log: Logger, config: Config) {
  return outageLogger(log, 'Redis', describeUrl(config.REDIS_URL));
}

/** Connects, waits up to DEPENDENCY_TIMEOUT_MS for Redis, and checks its eviction policy if it came. */
export async function redisReady(redis: Redis, config: Config, log: Logger) {
  redis.connect().catch(() => {}); // resolves once connected; retries by itself until then
  await new Promise((resolve) => {
    const wait = setTimeout(resolve, config.DEPENDENCY_TIMEOUT_MS);
    redis.events.once('ready', () => resolve(clearTimeout(wait)));
  });
  if (redis.isReady()) await checkEvictionPolicy(redis, config, log);
}

/**
 * Redis holds authoritative counters (sold items, user slots, codes) between
 * rebuilds: an eviction policy that may drop keys would silently lose them.
 * REDIS_EVICTION_POLICY_CHECK decides whether that only warns or stops start-up.
 */
async function checkEvictionPolicy(redis: Redis, config: Config, log: Logger) {
  let policy: string | undefined;
  try {
    const reply = await redis.command<string[]>('config', ['CONFIG', 'GET', 'maxmemory-policy']);
    policy = reply[1];
  } catch {
    log.warn('could not read Redis maxmemory-policy (CONFIG is disabled?); make sure it is noeviction');
    return;
  }
  if (policy === 'noeviction') return;
  const message = `Redis maxmemory-policy is "${policy}": keys holding sold items and user slots may be evicted; set it to noeviction`;
  if (config.REDIS_EVICTION_POLICY_CHECK === 'refuse') throw new Error(message);
  log.warn(message);
}
