/**
 * How many checkouts one Redis server decides per second when every call
 * hits one slot (one hot sale): the ceiling of a sale on one shard
 * (docs/SCALING.md). Drives redis-benchmark with checkout-5+2n.lua itself,
 * one checkout a call and BATCH a call (as a busy instance sends them), random
 * users and items, rate limits off, and PING in the same run as the yardstick.
 * Usage: node dist/tools/scale/slot-bench.js [redis url] [requests]
 */
import { execFileSync } from 'node:child_process';

import { createClient } from 'redis';

import { SCRIPTS } from '../../src/redis/scripts.js';
import { unlinkKeys } from '../redis-keys.js';

const url = new URL(process.argv[2] ?? 'redis://127.0.0.1:6379');
const requests = process.argv[3] ?? '200000';
const client = await createClient({ url: url.href }).connect();
const sha = await client.scriptLoad(SCRIPTS.checkout.SCRIPT);
const runId = /run_id:(\w+)/.exec(await client.info('server'))![1]!;
const tag = `slot-bench:{2099010100}`;
await client.set(`${tag}:ready`, runId);
const keys = ['ready', 'sold', 'users', 'owners', 'codes'].map((k) => `${tag}:${k}`);
const BATCH = 20;
/** EVALSHA deciding n checkouts of random users and items. */
function checkouts(n: number): string[] {
  const buckets: string[] = [];
  const requests: string[] = [];
  for (let i = 0; i < n; i++) {
    buckets.push(`${tag}:rl:user:u__rand_int__`, `${tag}:rl:ip:1`);
    requests.push('u__rand_int__', '__rand_int__', 'c__rand_int__');
  }
  const args = [runId, '10', String(Date.now()), '0', '1', '0', '1', ...requests];
  return ['EVALSHA', sha, String(keys.length + buckets.length), ...keys, ...buckets, ...args];
}

/** Requests per second redis-benchmark reports for one command (32 clients, pipelines of 16). */
function rate(args: string[]): number {
  const common = ['-h', url.hostname, '-p', url.port || '6379', '-n', requests, '-c', '32', '-P', '16', '-r', '10000'];
  const out = execFileSync('redis-benchmark', [...common, '-q', ...args], { encoding: 'utf8' });
  return Number(/([\d.]+) requests per second/.exec(out)![1]);
}
try {
  const single = rate(checkouts(1));
  const batched = rate(checkouts(BATCH)) * BATCH;
  const pings = rate(['PING']);
  const share = (n: number) => `${Math.round((100 * n) / pings)}% of PING`;
  console.log(
    `checkout-5+2n.lua on one slot: ${Math.round(single)} checkouts/s one a call (${share(single)}), ` +
      `${Math.round(batched)} checkouts/s ${BATCH} a call (${share(batched)}); PING ${Math.round(pings)}/s`,
  );
} finally {
  await client.close();
  await unlinkKeys('slot-bench:*', url.href);
}
