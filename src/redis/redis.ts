/**
 * The Redis connection. Every command and script goes through here, timed
 * into redis_command_duration_seconds{command} with failures counted. The
 * offline queue is off and every call has a deadline, so while Redis is down
 * a request fails fast instead of queueing behind it.
 *
 * Which server answers matters: a Redis restarted from an old snapshot or an
 * AOF that lost its tail, or a replica promoted before it caught up, holds a
 * sale's state from the past, `ready` key included. So `ready` holds the
 * run_id of the server the state was loaded into, the scripts compare it with
 * the run_id of the server this connection reached (read on every new
 * connection before any script runs), and state loaded into another server
 * process is never trusted: it is rebuilt from PostgreSQL first.
 */
import { createClient, ErrorReply } from 'redis';

import type { Config } from '../config.js';
import { unavailable } from '../errors.js';
import { children, type Metrics } from '../metrics/metrics.js';
import {
  SCRIPTS,
  type CheckoutInput,
  type PurchaseInput,
  type QueueAdvanceInput,
  type QueueJoinInput,
  type ReleaseInput,
  type SyncInput,
} from './scripts.js';
import type { QueueKeys, SaleKeys } from './keys.js';

export function createRedis(config: Config, metrics: Metrics, onError: (err: Error) => void) {
  const client = createClient({
    url: config.REDIS_URL,
    disableOfflineQueue: true,
    scripts: SCRIPTS,
    socket: {
      connectTimeout: config.DEPENDENCY_TIMEOUT_MS,
      // Reconnect forever, backing off to at most one attempt a second.
      reconnectStrategy: (retries) => Math.min(50 * 2 ** retries, 1000),
    },
  });
  client.on('error', onError);
  // Command timeouts: node-redis's per-command `timeout` option builds an
  // AbortSignal per call (4% of the service's CPU under load). Instead, one
  // sweep every tenth of the timeout fails commands past their deadline.
  const pending = new Set<{ deadline: number; reject: (err: Error) => void }>();
  const sweeper = setInterval(
    () => {
      const now = Date.now();
      for (const p of pending) if (p.deadline <= now) p.reject(new Error('Redis command timed out'));
    },
    Math.max(10, config.DEPENDENCY_TIMEOUT_MS / 10),
  ).unref();

  const duration = children(metrics.redisCommandDuration);
  const failures = children(metrics.redisCommandErrors);

  /** Times one call under the command deadline; a dead server becomes 503 UNAVAILABLE. */
  async function timed<T>(name: string, call: Promise<T>): Promise<T> {
    const end = duration(name).startTimer();
    let entry: { deadline: number; reject: (err: Error) => void } | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        entry = { deadline: Date.now() + config.DEPENDENCY_TIMEOUT_MS, reject };
        pending.add(entry);
        call.then(resolve, reject);
      });
    } catch (err) {
      failures(name).inc();
      throw serverDown(err) ? unavailable('redis') : err;
    } finally {
      pending.delete(entry!);
      end();
    }
  }

  const command = <T>(name: string, args: string[]) => timed(name, client.sendCommand(args) as Promise<T>);

  // The run_id of the server this connection reached. Forgotten on every new
  // connection, and read again (INFO) before the first script on it.
  let serverId: string | undefined;
  let reading: Promise<string> | undefined;
  let connection = 0;
  client.on('connect', () => {
    connection++;
    serverId = undefined;
    reading = undefined;
  });
  function server(): string | Promise<string> {
    if (serverId) return serverId;
    const on = connection;
    const read = (reading ??= command<string>('info', ['INFO', 'server']).then((info) => {
      const id = /^run_id:(\w+)/m.exec(info)?.[1];
      if (!id) throw new Error('Redis INFO server has no run_id');
      if (on === connection) serverId = id;
      return id;
    }));
    read.finally(() => reading === read && (reading = undefined)).catch(() => {});
    return read;
  }
  /** Runs a script that checks `ready` against this server's id (synchronously when the id is known: the hot path). */
  function onServer<T>(name: string, call: (id: string) => Promise<T>): Promise<T> {
    const id = server();
    return typeof id === 'string' ? timed(name, call(id)) : id.then((known) => timed(name, call(known)));
  }

  const ping = () =>
    client.isReady
      ? command('ping', ['PING']).then(
          () => true,
          () => false,
        )
      : Promise.resolve(false);
  metrics.produce(['redis_up'], async ([up]) => up.set((await ping()) ? 1 : 0));

  return {
    client,
    command,
    /** The scripts, one typed entry each (src/redis/scripts.ts). */
    scripts: {
      checkout: (p: CheckoutInput) => onServer('checkout', (id) => client.checkout(p, id)),
      purchase: (p: PurchaseInput) => onServer('purchase', (id) => client.purchase(p, id)),
      release: (p: ReleaseInput) => timed('release', client.release(p)),
      unlock: (key: string, token: string) => timed('unlock', client.unlock(key, token)),
      sync: (p: SyncInput) => timed('sync', client.sync(p)),
      reclaim: (keys: SaleKeys, index: number, seen: string) => timed('reclaim', client.reclaim(keys, index, seen)),
      queueJoin: (p: QueueJoinInput) => timed('queue_join', client.queueJoin(p)),
      queueAdvance: (p: QueueAdvanceInput) => timed('queue_advance', client.queueAdvance(p)),
      queueRead: (keys: QueueKeys) => timed('queue_read', client.queueRead(keys)),
    },
    /**
     * Whether a sale's state in Redis was loaded into this very server; marks
     * it so when `mark` (the end of a rebuild). Anything else is rebuilt first.
     */
    async loaded(keys: SaleKeys): Promise<boolean> {
      const id = await server();
      return (await command<string | null>('get', ['GET', keys.ready])) === id;
    },
    async markLoaded(keys: SaleKeys, expireAtMs: number) {
      const id = await server();
      await command('set', ['SET', keys.ready, id, 'PXAT', String(expireAtMs)]);
    },
    isReady: () => client.isReady,
    /**
     * Whether Redis answers a PING within the command deadline. A connection
     * can look ready while the server behind it is stopped or partitioned.
     */
    ping,
    connect: () => client.connect(),
    /** Waits for replies to commands already sent; a client still trying to connect is just dropped. */
    async close() {
      clearInterval(sweeper);
      if (client.isReady) await client.close();
      else if (client.isOpen) client.destroy();
    },
  };
}

export type Redis = ReturnType<typeof createRedis>;

/**
 * Connection errors and timeouts, and the replies a server gives while it
 * cannot serve (loading its data set, busy script, cluster down), mean Redis
 * is unavailable; any other error reply is a bug in the caller or a script.
 */
function serverDown(err: unknown): boolean {
  if (!(err instanceof ErrorReply)) return true;
  return /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY)/.test(err.message);
}
