/**
 * Test isolation by random names: each test file gets its own PostgreSQL
 * database and its own Redis key prefix, on the real servers of this machine.
 * Several apps built on one `TestEnv` are several instances of the service.
 */
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';

import pg from 'pg';

import { buildApp, type App } from '../src/app.js';
import type { Clock } from '../src/clock.js';
import { loadConfig, type Config } from '../src/config.js';
import { migrate } from '../src/db/migrate.js';
import { unlinkKeys } from '../tools/redis-keys.js';

export const PG_URL = process.env.TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432';
export const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

export interface TestEnv {
  env: Record<string, string>;
  config: Config;
  /** A pool on the test database, for asserting PostgreSQL's truth directly. */
  pg: pg.Pool;
  app(options?: { clock?: Clock; env?: Record<string, string> }): Promise<App>;
  close(): Promise<void>;
}

export async function testEnv(overrides: Record<string, string> = {}): Promise<TestEnv> {
  const name = `fs_test_${randomBytes(6).toString('hex')}`;
  const env = {
    DATABASE_URL: `${PG_URL}/${name}`,
    REDIS_URL,
    REDIS_PREFIX: `t${name.slice(8)}`,
    SALE_ITEMS: '200',
    // A week-long sale: a service this test starts as a process runs on the real clock, and a sale
    // boundary in the middle of a test would end the sale it is checking. Tests about the hour set
    // SALE_DURATION themselves and move their own clock.
    SALE_DURATION: '604800',
    USER_LIMIT: '10',
    LOG_LEVEL: 'silent',
    PORT: '0',
    ...overrides,
  };
  const config = loadConfig(env);
  await migrate(config.DATABASE_URL);
  const pool = new pg.Pool({ connectionString: config.DATABASE_URL, max: 4 });
  const apps: App[] = [];
  return {
    env,
    config,
    pg: pool,
    async app(options = {}) {
      const app = await buildApp({ config: loadConfig({ ...env, ...options.env }), clock: options.clock });
      apps.push(app);
      await app.ready();
      return app;
    },
    async close() {
      await Promise.all(apps.map((a) => a.close()));
      await pool.end();
      await deleteKeys(`${env.REDIS_PREFIX}:*`);
      const admin = new pg.Client({ connectionString: `${PG_URL}/postgres` });
      await admin.connect();
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
    },
  };
}

export const deleteKeys = (pattern: string, url = REDIS_URL) => unlinkKeys(pattern, url);

/**
 * An item id of a sale: "<sale id>-<index>", the index zero-padded to five
 * digits (the width for any SALE_ITEMS up to 100,000), written out here so
 * tests do not take the format from the code they test.
 */
export const itemId = (sale: string, index: number) => `${sale}-${String(index).padStart(5, '0')}`;

/** Parses a JSON response body, keeping the test's type honest. */
export function json<T = Record<string, unknown>>(res: { body: string }): T {
  return JSON.parse(res.body) as T;
}

/**
 * Sends raw bytes to 127.0.0.1:port and returns the status and body of the
 * answer, for requests Node's HTTP server handles before any route (the
 * server answers and closes the connection).
 */
export function rawRequest(port: number, request: string): Promise<{ statusCode: number; body: string }> {
  return new Promise((resolve, reject) => {
    let answer = '';
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    socket.on('data', (d: Buffer) => (answer += d.toString()));
    socket.on('end', () =>
      resolve({ statusCode: Number(answer.split(' ')[1]), body: answer.split('\r\n\r\n')[1] ?? '' }),
    );
    socket.on('error', reject);
  });
}
