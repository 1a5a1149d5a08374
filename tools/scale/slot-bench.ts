/**
 * How many checkout scripts one Redis server runs per second when every call
 * hits one slot (one hot sale): the ceiling of a sale on one shard
 * (docs/SCALING.md). Drives redis-benchmark with checkout-7.lua itself, random
 * users and items, rate limits off, and PING in the same run as the yardstick.
 * Usage: node dist/tools/scale/slot-bench.js [redis url] [requests]
 */
import { execFileSync } from 'node:child_process';

import { createClient } from 'redis';

import { SCRIPTS } from '../../src/redis/scripts.js';

const url = new URL(process.argv[2] ?? 'redis://127.0.0.1:6379');
const requests = process.argv[3] ?? '200000';
const client = await createClient({ url: url.href }).connect();
const sha = await client.scriptLoad(SCRIPTS.checkout.SCRIPT);
const runId = /run_id:(\w+)/.exec(await client.info('server'))![1]!;
const tag = `slot-bench:{2099010100}`;
await client.set(`${tag}:ready`, runId);
const keys = ['ready', 'sold', 'users', 'owners', 'codes'].map((k) => `${tag}:${k}`);
const checkout = ['EVALSHA', sha, '7', ...keys, `${tag}:rl:user:u__rand_int__`, `${tag}:rl:ip:1`];
checkout.push(runId, 'u__rand_int__', '__rand_int__', 'c__rand_int__', '10', String(Date.now()), '0', '1', '0', '1');

/** Requests per second redis-benchmark reports for one command (32 clients, pipelines of 16). */
function rate(args: string[]): number {
  const common = ['-h', url.hostname, '-p', url.port || '6379', '-n', requests, '-c', '32', '-P', '16', '-r', '10000'];
  const out = execFileSync('redis-benchmark', [...common, '-q', ...args], { encoding: 'utf8' });
  return Number(/([\d.]+) requests per second/.exec(out)![1]);
}
try {
  const scripts = rate(checkout);
  const pings = rate(['PING']);
  console.log(
    `checkout-7.lua on one slot: ${Math.round(scripts)} scripts/s; PING ${Math.round(pings)}/s; ` +
      `${Math.round((100 * scripts) / pings)}% of PING`,
  );
} finally {
  for await (const found of client.scanIterator({ MATCH: 'slot-bench:*', COUNT: 1000 })) {
    if (found.length > 0) await client.unlink(found);
  }
  await client.close();
}
