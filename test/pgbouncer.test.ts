import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import type { App } from '../src/app.js';
import { auditSale, sweep, type Confirmed } from './audit.js';
import { freePort, waitFor } from './process.js';
import { testEnv, type TestEnv } from './helpers.js';

const ITEMS = 200;
const USER_LIMIT = 3;
const BUYERS = 120;
const INSTANCES = 4;
const POOL_PER_INSTANCE = 6;
const SERVER_CONNECTIONS = 4; // PostgreSQL connections PgBouncer may open: fewer than the 24 the instances ask for

/** Starts Debian's pgbouncer in transaction pooling mode in front of the local PostgreSQL. */
async function startPgBouncer(dir: string): Promise<{ port: number; process: ChildProcess }> {
  const port = await freePort();
  await writeFile(join(dir, 'users.txt'), '"postgres" ""\n');
  await writeFile(
    join(dir, 'pgbouncer.ini'),
    `[databases]
* = host=127.0.0.1 port=5432
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = trust
auth_file = ${join(dir, 'users.txt')}
admin_users = postgres
pool_mode = transaction
default_pool_size = ${SERVER_CONNECTIONS}
max_db_connections = ${SERVER_CONNECTIONS}
max_client_conn = 500
`,
  );
  // pgbouncer refuses to run as root: as root, it runs as postgres, which must read its files.
  await chmod(dir, 0o755);
  const asRoot = process.getuid?.() === 0 ? ['-u', 'postgres'] : [];
  const child = spawn('pgbouncer', [...asRoot, join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const accepting = () => {
    const probe = new pg.Client({ connectionString: url });
    return probe.connect().then(
      () => probe.end().then(() => true),
      () =>
        probe.end().then(
          () => undefined,
          () => undefined,
        ),
    );
  };
  await waitFor('pgbouncer accepting connections', accepting).catch((err: Error) => {
    throw new Error(`${err.message}; its stderr: ${stderr}`);
  });
  return { port, process: child };
}

describe('POST /checkout and POST /purchase through PgBouncer (transaction pooling), more instances than PostgreSQL connections', () => {
  let env: TestEnv;
  let dir: string;
  let bouncer: { port: number; process: ChildProcess };
  let apps: App[];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'fs-pgbouncer-'));
    bouncer = await startPgBouncer(dir);
    env = await testEnv({ SALE_ITEMS: String(ITEMS), USER_LIMIT: String(USER_LIMIT), RATE_LIMIT_IP_PER_SEC: '0' });
    const database = new URL(env.config.DATABASE_URL).pathname;
    const viaBouncer = {
      DATABASE_URL: `postgres://postgres@127.0.0.1:${bouncer.port}${database}`,
      DB_POOL_SIZE: String(POOL_PER_INSTANCE),
    };
    apps = [];
    for (let i = 0; i < INSTANCES; i++) apps.push(await env.app({ env: viaBouncer }));
  });
  after(async () => {
    await env.close();
    bouncer.process.kill('SIGTERM');
    await rm(dir, { recursive: true, force: true });
  });

  it('sells no item twice, lets no user pass the limit, loses no confirmed purchase, never opening more than its server connections', async () => {
    const saleId = apps[0]!.deps.ids.windowContaining(Date.now()).id;
    const itemId = (i: number) => apps[0]!.deps.ids.itemId(saleId, i);
    const confirmed = new Map<string, Confirmed>();
    let maxServerConnections = 0;
    let done = false;
    const admin = new pg.Client({ connectionString: `postgres://postgres@127.0.0.1:${bouncer.port}/pgbouncer` });
    await admin.connect();
    const watch = (async () => {
      while (!done) {
        const pools = await admin.query<{ database: string; sv_active: string; sv_idle: string; sv_used: string }>(
          'SHOW POOLS',
        );
        const mine = pools.rows.filter((p) => `/${p.database}` === new URL(env.config.DATABASE_URL).pathname);
        const open = mine.reduce((n, p) => n + Number(p.sv_active) + Number(p.sv_idle) + Number(p.sv_used), 0);
        maxServerConnections = Math.max(maxServerConnections, open);
        await new Promise((r) => setTimeout(r, 20)); // sampling the pool while the stampede runs
      }
    })();

    await Promise.all(
      Array.from({ length: BUYERS }, async (_, b) => {
        const userId = `buyer-${b}`;
        for (let attempt = 0; attempt < 5; attempt++) {
          const app = apps[(b + attempt) % INSTANCES]!;
          const item = itemId(Math.random() < 0.5 ? Math.floor(Math.random() * 5) : Math.floor(Math.random() * ITEMS));
          const co = await app.inject({ method: 'POST', url: `/checkout?user_id=${userId}&id=${item}` });
          if (co.statusCode === 409) continue;
          assert.equal(co.statusCode, 200, co.body);
          const { code } = JSON.parse(co.body) as { code: string };
          const buyer = apps[(b + attempt + 1) % INSTANCES]!;
          const res = await buyer.inject({ method: 'POST', url: `/purchase?code=${code}` });
          assert.ok([200, 409].includes(res.statusCode), res.body);
          if (res.statusCode === 200) confirmed.set(code, { code, userId, itemId: item });
        }
      }),
    );
    done = true;
    await watch;
    await admin.end();

    const { sold, byItem } = await auditSale(env.pg, saleId, USER_LIMIT, [...confirmed.values()]);
    assert.equal(sold, confirmed.size);
    assert.ok(
      maxServerConnections > 0 && maxServerConnections <= SERVER_CONNECTIONS,
      `${maxServerConnections} server connections`,
    );
    const base = await apps[0]!.listen({ port: 0, host: '127.0.0.1' });
    await sweep(base, saleId, ITEMS, new Set(byItem.keys()));
  });
});
