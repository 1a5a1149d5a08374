import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

import { ConfigError, loadConfig } from '../src/config.js';

const server = new URL('../src/server.js', import.meta.url).pathname;

describe('configuration', () => {
  it('defaults point at PostgreSQL and Redis on localhost and an hourly sale of 10,000 items, 10 per user', () => {
    const config = loadConfig({});
    assert.equal(config.PORT, 8080);
    assert.equal(config.DATABASE_URL, 'postgres://postgres@127.0.0.1:5432/flashsale');
    assert.equal(config.REDIS_URL, 'redis://127.0.0.1:6379');
    assert.equal(config.SALE_ITEMS, 10_000);
    assert.equal(config.SALE_DURATION, 3600);
    assert.equal(config.USER_LIMIT, 10);
  });

  it('TRUST_PROXY is off by default, and takes a list of proxy addresses and CIDRs', () => {
    assert.equal(loadConfig({}).TRUST_PROXY, false);
    assert.equal(loadConfig({ TRUST_PROXY: 'off' }).TRUST_PROXY, false);
    assert.equal(loadConfig({ TRUST_PROXY: '10.0.0.0/8, ::1,loopback' }).TRUST_PROXY, '10.0.0.0/8,::1,loopback');
  });

  for (const [name, value] of [
    ['SALE_ITEMS', 'lots'],
    ['SALE_DURATION', '0'],
    ['USER_LIMIT', '-1'],
    ['PORT', '70000'],
    ['DATABASE_URL', 'mysql://x'],
    ['REDIS_URL', 'not a url'],
    ['LOG_LEVEL', 'loud'],
    ['REDIS_PREFIX', 'a{b}'],
    ['TRUST_PROXY', 'true'],
    ['TRUST_PROXY', '1'],
    ['TRUST_PROXY', '10.0.0.300'],
    ['ATTEMPTS_RETENTION', '30'],
    ['ATTEMPTS_RETENTION', '1w'],
    ['RETENTION_INTERVAL_MS', '50'],
    ['RETENTION_OFFSET_SECONDS', '3600'], // not less than the default hourly SALE_DURATION
    ['DATABASE_MIGRATION_URL', 'mysql://x'],
    ['REDIS_CLUSTER_NODES', 'redis://127.0.0.1:7000,http://127.0.0.1:7001'],
    ['TRUST_PROXY', '10.0.0.0/33'],
  ] as const) {
    it(`a bad ${name} ("${value}") stops start-up with one line naming it`, () => {
      assert.throws(
        () => loadConfig({ [name]: value }),
        (err: Error) => err instanceof ConfigError && err.message.startsWith(name),
      );
      const run = spawnSync(process.execPath, [server], {
        env: { ...process.env, [name]: value },
        encoding: 'utf8',
        timeout: 10_000,
      });
      assert.equal(run.status, 1);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `expected one line, got: ${run.stderr}`);
      assert.match(lines[0]!, new RegExp(`^flashsale: invalid configuration: ${name} `));
      assert.equal(run.stdout, '');
    });
  }

  it('ATTEMPTS_RETENTION takes 30d, 12h, 90m, 45s or 0 (keep everything, the default)', () => {
    const ms = (v: string) => loadConfig({ ATTEMPTS_RETENTION: v }).ATTEMPTS_RETENTION;
    assert.equal(loadConfig({}).ATTEMPTS_RETENTION, 0);
    assert.deepEqual(['30d', '12h', '90m', '45s', '0'].map(ms), [
      30 * 86_400_000,
      12 * 3_600_000,
      90 * 60_000,
      45_000,
      0,
    ]);
  });
});
