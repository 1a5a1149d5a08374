/**
 * Redis Cluster mode (chosen by redis.ts when the server at REDIS_URL reports
 * `cluster_enabled:1`): node-redis's cluster client, seeded with REDIS_URL and
 * REDIS_CLUSTER_NODES, with the same scripts and the same fail-fast options on
 * every node's connection.
 *
 * Two things node-redis does not do for us:
 *
 * - Trusting a sale's state needs the run_id of the node that executes the
 *   script, not of whichever node answered INFO. So a sale's scripts are
 *   pinned: the master owning the slot of the sale's hash tag is resolved, its
 *   run_id is read on that node's connection (again after every reconnect),
 *   and the script runs on that very connection. A cluster-routed call could
 *   follow a MOVED to a freshly promoted replica and compare the old master's
 *   run_id with the `ready` key it replicated: exactly the stale state the
 *   check exists to refuse. Pinned, a MOVED comes back to us instead: the slot
 *   map is read again from the node that said it, and the call is made once
 *   more, on the new owner, with that owner's run_id.
 * - node-redis refreshes its slot map only when a reply says MOVED or ASK,
 *   never on a timer: a connection that sent nothing while a slot moved still
 *   sends it to the old owner, and its first call there takes one MOVED.
 *   A master that died never says MOVED: its slots would be sent to the dead
 *   address until it came back. So every failed reconnect of a node, and every
 *   command that found its node unreachable, asks for a refresh (at most one
 *   every REFRESH_MIN_MS), from a master that still answers.
 *
 * Resharding (`redis-cli --cluster reshard`: the target IMPORTING, the source
 * MIGRATING, MIGRATE of the slot's keys in batches, then SETSLOT NODE on every
 * master) while a sale's slot moves:
 *
 * - Redis runs a script on the source only while every key it names is still
 *   there, and a rate-limit bucket or purchase lock not created yet counts as
 *   missing; otherwise it answers TRYAGAIN (keys on both nodes) or ASK (none
 *   left). A pinned script does not follow the ASK: on the target the keys may
 *   be split as well, and its `ready` came from the source. The request gets a
 *   503 with Retry-After at once (redis.ts), as it does for a second MOVED
 *   while the masters disagree about the owner (the source already assigned
 *   says MOVED to the target, which is still importing and says MOVED back).
 * - No script half-runs: Redis checks every key a script names before running
 *   it, and none disappears during it (the sale's hashes keep a placeholder
 *   field; a lock is deleted last).
 * - Once the slot is assigned, the first call gets MOVED and runs again on the
 *   new owner, whose run_id the migrated `ready` does not hold: the sale is
 *   rebuilt there from PostgreSQL, as after a failover. The migrated state is
 *   complete, but nothing tells a script whether its node received the keys
 *   by MIGRATE or by replication from a master that then died, so it is not
 *   trusted. test/cluster-reshard.test.ts moves a sale's slot under load.
 */
import calculateSlot from 'cluster-key-slot';
import { createCluster } from 'redis';

import type { Config } from '../config.js';
import { unavailable } from '../errors.js';
import { SCRIPTS } from './scripts.js';

const REFRESH_MIN_MS = 250;

/** Commands whose first argument is not a key: the cluster sends them to any node. */
const KEYLESS = new Set(['PING', 'INFO', 'CONFIG']);

export function newCluster(config: Config, reconnectStrategy: (retries: number) => number) {
  const seed = new URL(config.REDIS_URL);
  return createCluster({
    rootNodes: [config.REDIS_URL, ...config.REDIS_CLUSTER_NODES].map((url) => ({ url })),
    // Nodes found by discovery get these options (and the seed's credentials).
    defaults: {
      disableOfflineQueue: true,
      username: seed.username ? decodeURIComponent(seed.username) : undefined,
      password: seed.password ? decodeURIComponent(seed.password) : undefined,
      socket: { connectTimeout: config.DEPENDENCY_TIMEOUT_MS, reconnectStrategy, tls: seed.protocol === 'rediss:' },
    },
    scripts: SCRIPTS,
  });
}

type Cluster = ReturnType<typeof newCluster>;
export type NodeClient = Awaited<ReturnType<Cluster['nodeClient']>>;

export function clusterNodes(cluster: Cluster) {
  // Per node connection: its run_id, forgotten when that connection reconnects.
  const known = new WeakMap<NodeClient, { id?: string; reading?: Promise<string> }>();

  function runId(client: NodeClient): string | Promise<string> {
    let entry = known.get(client);
    if (!entry) {
      client.on('connect', () => known.set(client, {}));
      known.set(client, (entry = {}));
    }
    if (entry.id) return entry.id;
    const current = entry;
    current.reading ??= (client.sendCommand(['INFO', 'server']) as Promise<string>).then((info) => {
      const id = /^run_id:(\w+)/m.exec(info)?.[1];
      if (!id) throw new Error('Redis INFO server has no run_id');
      if (known.get(client) === current) current.id = id;
      return id;
    });
    current.reading.catch(() => (current.reading = undefined));
    return current.reading;
  }

  // node-redis runs one slot-map discovery at a time (ours, or its own after
  // a MOVED or ASK), and one still running when the cluster is closed
  // connects every node afterwards without checking: close() waits for it.
  let discovering: Promise<void> = Promise.resolve();
  const rediscover = cluster._slots.rediscover.bind(cluster._slots);
  cluster._slots.rediscover = (startWith) => {
    const run = rediscover(startWith);
    discovering = run.catch(() => {});
    return run;
  };

  let lastRefresh = 0;
  /** Re-reads the slot map from a master that answers (node-redis's own rediscovery). */
  function refresh() {
    if (Date.now() - lastRefresh < REFRESH_MIN_MS || !cluster.isOpen) return;
    lastRefresh = Date.now();
    const live = cluster.masters.find((m) => m.client?.isReady)?.client ?? cluster.masters[0]?.client;
    if (live) cluster._slots.rediscover(live).catch(() => {});
  }
  cluster.on('node-reconnecting', refresh);

  /** The connection to the master owning `key`'s slot, and that server's run_id. */
  async function owner(key: string): Promise<{ client: NodeClient; id: string }> {
    const node = cluster.slots[calculateSlot(key)]?.master;
    if (!node) throw unavailable('redis');
    const client = await cluster.nodeClient(node);
    return { client, id: await runId(client) };
  }

  /**
   * Runs `call` on the connection to the master owning `key`, with its
   * run_id; on MOVED, once more after refreshing the slot map.
   */
  async function onOwner<T>(key: string, call: (client: NodeClient, id: string) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const { client, id } = await owner(key);
      try {
        return await call(client, id);
      } catch (err) {
        if (attempt > 0 || !(err instanceof Error) || !err.message.startsWith('MOVED')) throw err;
        // From the node that said MOVED: it knows the new owner, while
        // another master may not have heard of the move yet.
        await cluster._slots.rediscover(client).catch(() => {});
      }
    }
  }

  /** Sends a command by its first key (args[1]); keyless ones go to any node. */
  const send = (args: string[]) =>
    cluster.sendCommand(KEYLESS.has(args[0]!.toUpperCase()) ? undefined : args[1], false, args);

  /** Every master answers PING. */
  async function pingAll(): Promise<void> {
    if (cluster.masters.length === 0) throw unavailable('redis');
    await Promise.all(cluster.masters.map(async (m) => (await cluster.nodeClient(m)).sendCommand(['PING'])));
  }

  return { owner, onOwner, send, refresh, pingAll, discovered: () => discovering };
}

export type ClusterNodes = ReturnType<typeof clusterNodes>;
