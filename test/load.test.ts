import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type RequestListener, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parseOptions } from '../tools/load/args.js';
import { audit, type Bought } from '../tools/load/audit.js';
import { retryAfterMs } from '../tools/load/client.js';
import { pick, profiles } from '../tools/load/profiles.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, type Proc } from './process.js';

const tool = new URL('../tools/load/main.js', import.meta.url).pathname;

/** Runs the compiled tool, as `npm run load` does, with its output piped. */
function load(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [tool, ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.once('close', (code) => resolve({ code, stdout, stderr })));
}

/** A stand-in for the service, for the answers the real one does not give on demand. */
async function fake(handler: RequestListener) {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close() {
      server.closeAllConnections();
      server.close();
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown) {
  res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
}

describe('npm run load (tools/load)', () => {
  let env: TestEnv;
  let svc: Proc;
  let url: string;
  let dir: string;
  before(async () => {
    env = await testEnv({ SALE_ITEMS: '200', USER_LIMIT: '3', RATE_LIMIT_IP_PER_SEC: '0', LOG_LEVEL: 'silent' });
    const port = await freePort();
    svc = startService({ ...env.env, PORT: String(port) });
    await serviceReady(port);
    url = `http://127.0.0.1:${port}`;
    dir = mkdtempSync(join(tmpdir(), 'load-test-'));
  });
  after(async () => {
    await svc.kill();
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('rehearses a realistic sale against a real service, then a second run on the same sale, and both audits pass', async () => {
    const out = join(dir, 'first.json');
    const first = await load(
      ...`--url ${url} --profile realistic --users 10 --duration 2 --user-limit 3 --out ${out}`.split(' '),
    );
    assert.equal(first.code, 0, first.stdout + first.stderr);
    assert.match(
      first.stdout,
      /^1\/2 s +\d+ req\/s +\d+ errors\/s \(last second\) +\d+ errors in all$/m,
      'plain lines when piped',
    );
    const report = JSON.parse(readFileSync(out, 'utf8')) as {
      url: string;
      profile: string;
      users: number;
      duration: number;
      endpoints: Record<
        string,
        { requests: number; statuses: Record<string, number>; latency_ms: Record<string, number> }
      >;
      audit: { ok: boolean; confirmed_purchases: number; problems: string[] };
    };
    assert.deepEqual([report.url, report.profile, report.users, report.duration], [url, 'realistic', 10, 2]);
    assert.deepEqual(report.audit.problems, []);
    assert.ok(report.audit.confirmed_purchases > 0, 'nobody bought anything');
    for (const name of ['items', 'checkout', 'purchase']) {
      const e = report.endpoints[name]!;
      assert.ok(e.requests > 0, name);
      assert.ok(e.latency_ms.p50! <= e.latency_ms.p99! && e.latency_ms.p99! <= e.latency_ms.max!, name);
      assert.equal(
        Object.values(e.statuses).reduce((a, b) => a + b, 0),
        e.requests,
      );
    }
    // The sale already has the first run's purchases.
    const second = await load(
      ...`--url ${url} --users 5 --duration 1 --user-limit 3 --out ${dir}/second.json`.split(' '),
    );
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /audit: OK \([1-9]\d* confirmed purchases\)/);
  });

  it('refuses bad arguments, an unreachable service and one without an active sale with one line and exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['--url', 'not a url'], /^--url: "not a url" is not a URL/],
      [['--url', `${url}/api`], /^--url: .* must be the service's root/],
      [['--users', 'abc'], /^--users: "abc" is not a positive whole number/],
      [['--users', '0'], /^--users: "0"/],
      [['--users=-3'], /^--users: "-3"/],
      [['--duration', 'abc'], /^--duration: "abc" is not a positive number/],
      [['--duration=-5'], /^--duration: "-5"/],
      [['--user-limit', 'abc'], /^--user-limit: "abc"/],
      [['--bogus'], /^Unknown option '--bogus'; usage:/],
      [['--profile', 'nope'], /^--profile: unknown profile "nope"/],
      [['--profile', 'toString'], /^--profile: unknown profile "toString"/],
    ];
    for (const [args, message] of cases) assert.throws(() => parseOptions(args), { message }, args.join(' '));
    assert.equal(parseOptions(['--url', `${url}/`]).url, url, 'a trailing slash is the root');
    // Through the command itself, where each case costs a Node start.
    const closed = `http://127.0.0.1:${await freePort()}`;
    const unavailable = await fake((_, res) =>
      json(res, 503, { error: { code: 'UNAVAILABLE', message: 'retry later' } }),
    );
    const [bad, unreachable, noSale] = await Promise.all([
      load('--users', 'abc'),
      load('--url', closed),
      load('--url', unavailable.url),
    ]);
    unavailable.close();
    assert.deepEqual(bad, { code: 2, stdout: '', stderr: 'load: --users: "abc" is not a positive whole number\n' });
    assert.equal(unreachable.code, 2);
    assert.match(unreachable.stderr, /^load: cannot reach http:\/\/127\.0\.0\.1:\d+: connect ECONNREFUSED [^\n]+\n$/);
    assert.deepEqual(noSale, {
      code: 2,
      stdout: '',
      stderr: `load: no active sale at ${unavailable.url}: GET /sales/active answered 503 UNAVAILABLE\n`,
    });
  });

  it("stops at the end of the sale and says so, and counts a proxy's HTML 502 as a 502", async () => {
    const sale = { id: '2026112416', total_items: 20, items_sold: 20, ends_at: '' };
    const items = Array.from({ length: 20 }, (_, i) => ({
      id: `${sale.id}-${String(i).padStart(5, '0')}`,
      sold: true,
    }));
    const service = await fake((req, res) => {
      // The sale ends 1.5 s after the tool first asks, however long Node takes to start.
      sale.ends_at ||= new Date(Date.now() + 1500).toISOString();
      if (req.url === '/sales/active' || req.url === `/sales/${sale.id}`) return json(res, 200, sale);
      // The audit's reads get JSON, the users' page reads a proxy's error page.
      if (req.url?.endsWith('limit=1000')) return json(res, 200, { items });
      res.writeHead(502, { 'content-type': 'text/html' }).end('<html>502 Bad Gateway</html>');
    });
    const out = join(dir, 'ended.json');
    const r = await load('--url', service.url, '--users', '2', '--duration', '60', '--out', out);
    service.close();
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /the sale ends at .*: the run stops there/);
    const report = JSON.parse(readFileSync(out, 'utf8')) as {
      seconds: number;
      stopped_at_sale_end: boolean;
      endpoints: { items: { statuses: Record<string, number> } };
    };
    assert.ok(report.stopped_at_sale_end && report.seconds < 3, String(report.seconds));
    assert.deepEqual(Object.keys(report.endpoints.items.statuses), ['502']);
  });

  describe('the audit', () => {
    const none = { itemsSold: 0, soldItems: new Set<string>() };
    const sale = { itemsSold: 2, soldItems: new Set(['s-1', 's-2']) };
    const bought = (code: string, userId: string, itemId: string): Bought => ({
      code,
      userId,
      itemId,
      checkedOut: { userId, itemId },
    });
    const fine = [bought('a', 'u', 's-1'), bought('b', 'u', 's-2')];

    it('fails when an item was confirmed to two codes, a user passed the limit, or a count disagrees', () => {
      assert.ok(audit({ bought: fine, unknown: 0 }, none, sale, 2, true).ok);
      const twice = [...fine, bought('c', 'v', 's-1')];
      assert.match(audit({ bought: twice, unknown: 0 }, none, sale, 2, true).problems.join(), /two codes/);
      assert.match(audit({ bought: fine, unknown: 0 }, none, sale, 1, true).problems.join(), /limit 1/);
      const one = { bought: fine.slice(0, 1), unknown: 0 };
      assert.match(
        audit(one, none, sale, 2, true).problems.join(),
        /counts 2 items sold during the run, the tool saw 1/,
      );
      assert.ok(audit(one, none, sale, 2, false).ok, 'with other buyers, more sold items is fine');
      assert.ok(audit({ ...one, unknown: 1 }, none, sale, 2, true).ok, 'the unknown outcome may have been a sale');
      const listed = { itemsSold: 2, soldItems: new Set(['s-1']) };
      assert.match(audit({ bought: fine, unknown: 0 }, none, listed, 2, true).problems.join(), /lists it unsold/);
    });

    it('judges a second run on the same sale by what changed during it', () => {
      const earlier = { itemsSold: 1, soldItems: new Set(['s-0']) };
      const now = { itemsSold: 3, soldItems: new Set(['s-0', 's-1', 's-2']) };
      assert.deepEqual(audit({ bought: fine, unknown: 0 }, earlier, now, 2, true).problems, []);
      const again = [...fine, bought('c', 'v', 's-0')];
      assert.match(
        audit({ bought: again, unknown: 0 }, earlier, now, 2, true).problems.join(),
        /s-0 was sold before the run/,
      );
    });

    it('fails when a 200 confirms another item or user than the code was checked out for', () => {
      const wrong = { ...fine[1]!, checkedOut: { userId: 'u', itemId: 's-3' } };
      assert.match(
        audit({ bought: [fine[0]!, wrong], unknown: 0 }, none, sale, 2, true).problems.join(),
        /code b was checked out for s-3 by u, but confirmed s-2 to u/,
      );
    });
  });

  it('reads Retry-After as seconds or as an HTTP-date', () => {
    const now = Date.parse('2026-11-24T16:00:00Z');
    assert.equal(retryAfterMs('2', now), 2000);
    assert.equal(retryAfterMs('Tue, 24 Nov 2026 16:00:03 GMT', now), 3000);
    assert.equal(retryAfterMs('soon', now), 1000);
    assert.equal(retryAfterMs(undefined, now), 1000);
  });

  it('users check out an unsold item of the page they read; in realistic, the popular one they came for', () => {
    const page = [
      { id: 'a', sold: true },
      { id: 'b', sold: false },
      { id: 'c', sold: false },
    ];
    const { light, realistic } = profiles;
    const random = (x: number) => () => x;
    assert.equal(pick(light!, page, 0, random(0)), 'b');
    assert.equal(pick(light!, page, 2, random(0.9)), 'c');
    assert.equal(pick(realistic!, page, 2, random(0)), 'c', 'the popular item, unsold');
    assert.equal(pick(realistic!, page, 0, random(0.5)), 'c', 'sold: another');
    assert.equal(pick(realistic!, page, 0, random(0.05)), 'a', 'now and then, a stale page');
    assert.equal(pick(light!, [page[0]!], 0), undefined);
  });
});
