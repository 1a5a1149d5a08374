/**
 * A real local Redis Cluster for tests: three masters and three replicas
 * (`redis-server --cluster-enabled yes` on free ports, joined by
 * `redis-cli --cluster create … --cluster-replicas 1`), keeping nothing on
 * disk, with a short node timeout so a failover takes about two seconds.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import calculateSlot from 'cluster-key-slot';
import { createClient } from 'redis';

import { freePort, startRedis, waitFor, type Proc } from './process.js';

/** Milliseconds a node may be unreachable before the cluster calls it failed. */
export const NODE_TIMEOUT_MS = 1000;

export interface ClusterNode {
  port: number;
  url: string;
  proc: Proc;
}

export interface LocalCluster {
  nodes: ClusterNode[];
  /** The node currently master of `key`'s slot, as a live node sees it. */
  masterOf(key: string): Promise<ClusterNode>;
  /** The live masters, as a live node sees them. */
  masters(): Promise<ClusterNode[]>;
  /** The replica of this master. */
  replicaOf(master: ClusterNode): Promise<ClusterNode>;
  /** A command on one node (not redirected). */
  on(node: ClusterNode, args: string[]): Promise<unknown>;
  runId(node: ClusterNode): Promise<string>;
  /**
   * Moves one slot between masters the way `redis-cli --cluster reshard`
   * does: IMPORTING on the target, MIGRATING on the source, MIGRATE its keys
   * in batches of 10 (redis-cli's pipeline), then SETSLOT NODE on every
   * master, in `assignOrder` (redis-cli's order is its node list, which starts
   * with the node it was pointed at). `hold(step)` is awaited after each step:
   * "migrating", "split" (half the keys moved), "migrated" (none left on the
   * source), then "assigned <port>" after each SETSLOT NODE. Resolves with
   * the number of keys moved.
   */
  moveSlot(
    slot: number,
    from: ClusterNode,
    to: ClusterNode,
    assignOrder: ClusterNode[],
    hold: (step: string) => Promise<void>,
  ): Promise<number>;
  stop(): Promise<void>;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const child = spawn(cmd, args);
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once('exit', r));
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${code}: ${out}`);
  return out;
}

export async function startCluster(): Promise<LocalCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'fs-cluster-'));
  const ports: number[] = [];
  while (ports.length < 6) {
    const port = await freePort();
    // The cluster bus listens on port + 10000: it must be free too, and under 65536.
    if (port < 55_000 && !ports.includes(port)) ports.push(port);
  }
  const nodes = await Promise.all(
    ports.map(async (port) => ({
      port,
      url: `redis://127.0.0.1:${port}`,
      proc: await startRedis(
        port,
        ...['--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--dir', dir],
        ...['--cluster-node-timeout', String(NODE_TIMEOUT_MS), '--cluster-replica-validity-factor', '0'],
      ),
    })),
  );
  await run('redis-cli', [
    '--cluster',
    'create',
    ...ports.map((p) => `127.0.0.1:${p}`),
    '--cluster-replicas',
    '1',
    '--cluster-yes',
  ]);
  const clients = new Map<number, ReturnType<typeof createClient>>();
  const on = async (node: ClusterNode, args: string[]): Promise<unknown> => {
    let c = clients.get(node.port);
    if (!c) {
      c = createClient({ url: node.url, socket: { reconnectStrategy: false } });
      c.on('error', () => {});
      clients.set(node.port, c);
    }
    if (!c.isOpen) await c.connect();
    return c.sendCommand(args);
  };
  // Ready when every node sees the cluster as ok and every replica has synced.
  await waitFor('the Redis Cluster', async () => {
    for (const n of nodes) {
      if (!String(await on(n, ['CLUSTER', 'INFO'])).includes('cluster_state:ok')) return undefined;
      const info = String(await on(n, ['INFO', 'replication']));
      if (info.includes('role:slave') && !info.includes('master_link_status:up')) return undefined;
    }
    return true;
  });

  const alive = (n: ClusterNode) => n.proc.child.exitCode === null && n.proc.child.signalCode === null;
  async function masterOf(key: string): Promise<ClusterNode> {
    const slot = calculateSlot(key);
    return waitFor(`a live master of slot ${slot}`, async () => {
      for (const asked of nodes.filter(alive)) {
        const lines = String(await on(asked, ['CLUSTER', 'NODES']).catch(() => '')).split('\n');
        for (const line of lines) {
          const [, address, flags, , , , , , ...ranges] = line.split(' ');
          if (!flags?.includes('master') || flags.includes('fail')) continue;
          const owns = ranges.some((r) => {
            const [from, to = from] = r.split('-').map(Number);
            return slot >= from! && slot <= to!;
          });
          const node = nodes.find((n) => address!.startsWith(`127.0.0.1:${n.port}@`));
          if (owns && node && alive(node)) return node;
        }
      }
      return undefined;
    });
  }

  async function masters(): Promise<ClusterNode[]> {
    const lines = String(await on(nodes.find(alive)!, ['CLUSTER', 'NODES'])).split('\n');
    return nodes.filter(
      (n) =>
        alive(n) &&
        lines.some((l) => {
          const [, address, flags] = l.split(' ');
          return address?.startsWith(`127.0.0.1:${n.port}@`) && flags?.includes('master') && !flags.includes('fail');
        }),
    );
  }

  async function replicaOf(master: ClusterNode): Promise<ClusterNode> {
    const id = String(await on(master, ['CLUSTER', 'MYID']));
    return waitFor(`the replica of :${master.port}`, async () => {
      const line = String(await on(master, ['CLUSTER', 'NODES']))
        .split('\n')
        .find((l) => l.split(' ')[3] === id);
      return line ? nodes.find((n) => line.split(' ')[1]!.startsWith(`127.0.0.1:${n.port}@`)) : undefined;
    });
  }

  async function moveSlot(
    slot: number,
    from: ClusterNode,
    to: ClusterNode,
    assignOrder: ClusterNode[],
    hold: (step: string) => Promise<void>,
  ) {
    const [fromId, toId] = [String(await on(from, ['CLUSTER', 'MYID'])), String(await on(to, ['CLUSTER', 'MYID']))];
    await on(to, ['CLUSTER', 'SETSLOT', String(slot), 'IMPORTING', fromId]);
    await on(from, ['CLUSTER', 'SETSLOT', String(slot), 'MIGRATING', toId]);
    await hold('migrating');
    const count = async () => Number(await on(from, ['CLUSTER', 'COUNTKEYSINSLOT', String(slot)]));
    const total = await count();
    let [split, moved] = [false, 0];
    for (;;) {
      const keys = (await on(from, ['CLUSTER', 'GETKEYSINSLOT', String(slot), '10'])) as string[];
      if (keys.length === 0) break;
      moved += keys.length;
      await on(from, ['MIGRATE', '127.0.0.1', String(to.port), '', '0', '5000', 'KEYS', ...keys]);
      const left = split ? 0 : await count();
      if (left > 0 && left <= total / 2) {
        split = true;
        await hold('split');
      }
    }
    await hold('migrated');
    for (const node of assignOrder) {
      await on(node, ['CLUSTER', 'SETSLOT', String(slot), 'NODE', toId]);
      await hold(`assigned ${node.port}`);
    }
    return moved;
  }

  return {
    nodes,
    masterOf,
    masters,
    replicaOf,
    on,
    async runId(node) {
      return /^run_id:(\w+)/m.exec(String(await on(node, ['INFO', 'server'])))![1]!;
    },
    moveSlot,
    async stop() {
      for (const c of clients.values()) if (c.isOpen) c.destroy();
      await Promise.all(nodes.map((n) => n.proc.kill()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
