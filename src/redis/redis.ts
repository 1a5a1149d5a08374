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
 *
 * REDIS_URL may name one server or any node of a Redis Cluster: the first
 * connection reads INFO cluster and, on a cluster, hands over to the cluster
 * client (cluster.ts), which checks each sale against the run_id of the node
 * owning the sale's slot.
 */
import { EventEmitter } from 'node:events';

import { createClient, ErrorReply } from 'redis';

import type { Config } from '../config.js';
import { unavailable } from '../errors.js';
import { children, type Metrics } from '../metrics/metrics.js';
import { batchCheckouts } from './checkouts.js';
import { clusterNodes, newCluster, type ClusterNodes } from './cluster.js';
import {
  SCRIPTS,
  type PurchaseInput,
  type QueueAdvanceInput,
  type QueueDoneInput,
  type QueueJoinInput,
  type ReleaseInput,
  type SyncInput,
  type Announcement,
} from './scripts.js';
import type { QueueKeys, SaleKeys } from './keys.js';

/** Reconnect forever, backing off to at most one attempt a second. */
const reconnectStrategy = (retries: number) => Math.min(50 * 2 ** retries, 1000);

export function createRedis(config: Config, metrics: Metrics, onError: (err: Error) => void) {
  const client = createClient({
    url: config.REDIS_URL,
    disableOfflineQueue: true,
    scripts: SCRIPTS,
    socket: {
      connectTimeout: config.DEPENDENCY_TIMEOUT_MS,
      reconnectStrategy,
    },
  });
  client.on('error', onError);
  // Single server or cluster is known after the first connection; until then
  // every command fails as Redis being unavailable. `ready` is emitted once it
  // is known, and again whenever a connection is ready after an outage.
  const events = new EventEmitter<{ ready: [] }>();
  let decided = false;
  let cluster: ReturnType<typeof newCluster> | undefined;
  let nodes: ClusterNodes | undefined;
  let closed = false;
  client.on('ready', () => decided && !nodes && events.emit('ready'));
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

  const failures = children(metrics.redisCommandErrors);

  /** Times one call under the command deadline; a dead server becomes 503 UNAVAILABLE. */
  async function timed<T>(name: string, call: Promise<T>): Promise<T> {
    const end = metrics.redisCommandDuration.labels(name).startTimer();
    let entry: { deadline: number; reject: (err: Error) => void } | undefined;
    try {
      return await new Promise<T>((resolve, reject) => {
        entry = { deadline: Date.now() + config.DEPENDENCY_TIMEOUT_MS, reject };
        pending.add(entry);
        call.then(resolve, reject);
      });
    } catch (err) {
      failures(name).inc();
      if (!serverDown(err)) throw err;
      nodes?.refresh(); // a node unreachable in a cluster may have been replaced
      throw unavailable('redis');
    } finally {
      pending.delete(entry!);
      end();
    }
  }

  const send = (args: string[]): Promise<unknown> =>
    nodes
      ? nodes.send(args)
      : decided
        ? client.sendCommand(args)
        : Promise.reject(new Error('Redis not connected yet'));
  const command = <T>(name: string, args: string[]) => timed(name, send(args) as Promise<T>);

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

  const isReady = () =>
    nodes ? cluster!.masters.length > 0 && cluster!.masters.every((m) => m.client?.isReady) : decided && client.isReady;
  const ping = () =>
    isReady()
      ? (nodes ? timed('ping', nodes.pingAll()) : command('ping', ['PING'])).then(
          () => true,
          () => false,
        )
      : Promise.resolve(false);
  metrics.produce(['redis_up'], async ([up]) => up.set((await ping()) ? 1 : 0));

  /** Switches to the cluster client; the single-server connection is dropped. */
  async function useCluster() {
    const c = newCluster(config, reconnectStrategy);
    c.on('error', onError);
    c.on('node-error', onError);
    c.on('node-ready', () => nodes && events.emit('ready'));
    cluster = c;
    client.destroy();
    for (let retries = 0; !closed; retries++) {
      try {
        await c.connect();
        break;
      } catch (err) {
        onError(err as Error);
        await new Promise((r) => setTimeout(r, reconnectStrategy(retries)));
      }
    }
    nodes = clusterNodes(c);
  }

  /** The single-server client, or the cluster client that routes by the first key. */
  const routed = () => cluster ?? client;

  return {
    /** The single-server client (closed in cluster mode: use `command` and `scripts`). */
    client,
    /** `ready`: Redis can be used (again). */
    events,
    command,
    /** The scripts, one typed entry each (src/redis/scripts.ts). */
    scripts: {
      /** One checkout; those of one turn of the event loop share a script call (checkouts.ts). */
      checkout: batchCheckouts((b) =>
        nodes
          ? timed(
              'checkout',
              nodes.onOwner(b.keys.ready, (node, id) => node.checkout(b, id)),
            )
          : onServer('checkout', (id) => client.checkout(b, id)),
      ),
      purchase: (p: PurchaseInput) =>
        nodes
          ? timed(
              'purchase',
              nodes.onOwner(p.keys.ready, (node, id) => node.purchase(p, id)),
            )
          : onServer('purchase', (id) => client.purchase(p, id)),
      release: (p: ReleaseInput) => timed('release', routed().release(p)),
      unlock: (key: string, token: string, announce?: Announcement) =>
        timed('unlock', routed().unlock(key, token, announce)),
      sync: (p: SyncInput) => timed('sync', routed().sync(p)),
      reclaim: (keys: SaleKeys, index: number, seen: string) => timed('reclaim', routed().reclaim(keys, index, seen)),
      queueJoin: (p: QueueJoinInput) => timed('queue_join', routed().queueJoin(p)),
      queueAdvance: (p: QueueAdvanceInput) => timed('queue_advance', routed().queueAdvance(p)),
      queueDone: (p: QueueDoneInput) => timed('queue_done', routed().queueDone(p)),
      queueRead: (keys: QueueKeys) => timed('queue_read', routed().queueRead(keys)),
    },
    /**
     * Whether a sale's state in Redis was loaded into this very server (on a
     * cluster: the node owning the sale's slot); marks it so when `mark` (the
     * end of a rebuild). Anything else is rebuilt first.
     */
    async loaded(keys: SaleKeys): Promise<boolean> {
      if (nodes) {
        return timed(
          'get',
          nodes.onOwner(keys.ready, async (node, id) => (await node.get(keys.ready)) === id),
        );
      }
      const id = await server();
      return (await command<string | null>('get', ['GET', keys.ready])) === id;
    },
    async markLoaded(keys: SaleKeys, expireAtMs: number) {
      if (nodes) {
        await timed(
          'set',
          nodes.onOwner(keys.ready, (node, id) =>
            node.set(keys.ready, id, { expiration: { type: 'PXAT', value: expireAtMs } }),
          ),
        );
        return;
      }
      const id = await server();
      await command('set', ['SET', keys.ready, id, 'PXAT', String(expireAtMs)]);
    },
    isReady,
    /**
     * Whether Redis answers a PING within the command deadline. A connection
     * can look ready while the server behind it is stopped or partitioned.
     */
    ping,
    /**
     * Connects (retrying until Redis answers), then reads INFO cluster once:
     * on a cluster, hands over to the cluster client seeded with this node.
     */
    async connect() {
      await client.connect();
      let info: string | undefined;
      while (!closed && info === undefined) {
        info = await (client.sendCommand(['INFO', 'cluster']) as Promise<string>).catch(async () => {
          await new Promise((r) => setTimeout(r, 1000));
          return undefined;
        });
      }
      if (closed) return;
      if (/^cluster_enabled:1/m.test(info!)) await useCluster();
      decided = true;
      events.emit('ready');
    },
    /** Waits for replies to commands already sent; a client still trying to connect is just dropped. */
    async close() {
      closed = true;
      clearInterval(sweeper);
      if (cluster) {
        // A node still reconnecting (a dead master not yet replaced) would hold close() for ever.
        await (isReady() ? cluster.close() : cluster.isOpen ? cluster.destroy() : undefined);
        // The nodes a slot-map discovery still running connects afterwards go too
        // (waiting at most one deadline: its CLUSTER SLOTS has none).
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          nodes?.discovered(),
          new Promise((r) => (timer = setTimeout(r, config.DEPENDENCY_TIMEOUT_MS))),
        ]);
        clearTimeout(timer);
        cluster.destroy();
      } else if (client.isReady) await client.close();
      else if (client.isOpen) client.destroy();
    },
  };
}

export type Redis = ReturnType<typeof createRedis>;

/**
 * Connection errors and timeouts, the replies a server gives while it cannot
 * serve (loading its data set, busy script, cluster down), and those of a
 * Redis Cluster slot being moved (ASK and TRYAGAIN to a pinned script, a
 * MOVED still there after the redirections were followed: cluster.ts) mean
 * Redis is unavailable for now; any other error reply is a bug in the caller
 * or a script.
 */
function serverDown(err: unknown): boolean {
  if (!(err instanceof ErrorReply)) return true;
  return /^(LOADING|BUSY|MASTERDOWN|TRYAGAIN|CLUSTERDOWN|READONLY|ASK|MOVED)\b/.test(err.message);
}
