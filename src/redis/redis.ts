/**
 * The Redis connection. Every command and script goes through `command` or
 * `script`, which time it into redis_command_duration_seconds{command} and
 * count failures. The offline queue is off and every command has a timeout, so
 * while Redis is down a request fails fast instead of queueing behind it.
 */
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';

import { createClient, ErrorReply } from 'redis';

import type { Config } from '../config.js';
import { unavailable } from '../errors.js';
import { children, type Metrics } from '../metrics/metrics.js';

const LUA_DIR = new URL('./lua/', import.meta.url);

/**
 * Scripts are files named <name>-<number of keys>.lua. `--@include f.lua`
 * inlines a shared helper. EVALSHA names a script by the hash of its text, so
 * two deployed versions can never run each other's script.
 */
function loadScripts() {
  const read = (file: string) => readFileSync(new URL(file, LUA_DIR), 'utf8');
  const scripts = new Map<string, { source: string; sha: string; keys: number }>();
  for (const file of readdirSync(LUA_DIR)) {
    const match = /^([a-z]+)-(\d+)\.lua$/.exec(file);
    if (!match) continue;
    const source = read(file).replace(/^--@include (\S+)$/gm, (_, inc: string) => read(inc));
    scripts.set(match[1]!, { source, sha: createHash('sha1').update(source).digest('hex'), keys: Number(match[2]) });
  }
  return scripts;
}

export type ScriptName = 'checkout' | 'purchase' | 'release' | 'unlock' | 'sync' | 'reclaim';

export function createRedis(config: Config, metrics: Metrics, onError: (err: Error) => void) {
  const scripts = loadScripts();
  const client = createClient({
    url: config.REDIS_URL,
    disableOfflineQueue: true,
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
  const withDeadline = <T>(call: Promise<T>) =>
    new Promise<T>((resolve, reject) => {
      const entry = { deadline: Date.now() + config.DEPENDENCY_TIMEOUT_MS, reject };
      pending.add(entry);
      call.then(resolve, reject).finally(() => pending.delete(entry));
    });

  const duration = children(metrics.redisCommandDuration);
  const failures = children(metrics.redisCommandErrors);

  async function command<T>(name: string, args: string[]): Promise<T> {
    const end = duration(name).startTimer();
    try {
      return (await withDeadline(client.sendCommand(args))) as T;
    } catch (err) {
      failures(name).inc();
      throw serverDown(err) ? unavailable('redis') : err;
    } finally {
      end();
    }
  }

  async function script<T>(name: ScriptName, keys: string[], args: (string | number)[]): Promise<T> {
    const s = scripts.get(name);
    if (!s || s.keys !== keys.length) throw new Error(`script ${name} takes ${s?.keys} keys, got ${keys.length}`);
    const argv = [String(keys.length), ...keys, ...args.map(String)];
    try {
      return await command<T>(name, ['EVALSHA', s.sha, ...argv]);
    } catch (err) {
      // First use on this server (or after a restart or SCRIPT FLUSH): EVAL loads it.
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      return command<T>(name, ['EVAL', s.source, ...argv]);
    }
  }

  return {
    client,
    command,
    script,
    isReady: () => client.isReady,
    /**
     * Whether Redis answers a PING within the command deadline. A connection
     * can look ready while the server behind it is stopped or partitioned.
     */
    ping: () =>
      client.isReady
        ? command('ping', ['PING']).then(
            () => true,
            () => false,
          )
        : Promise.resolve(false),
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
