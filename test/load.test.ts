import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type RequestListener, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { parseOptions } from '../tools/load/args.js';
import { audit, type Bought } from '../tools/load/audit.js';
import { backoffMs, retryAfterMs } from '../tools/load/client.js';
import { pick, profiles } from '../tools/load/profiles.js';
import { progress } from '../tools/load/progress.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, waitFor, type Proc } from './process.js';

const tool = new URL('../tools/load/main.js', import.meta.url).pathname;

/** Starts the compiled tool, as `npm run load` does, with its output piped; killed if it outlives `ms`. */
function spawnLoad(args: string[], ms = 60_000) {
  const child = spawn(process.execPath, [tool, ...args]);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const guard = setTimeout(() => child.kill('SIGKILL'), ms);
  const done = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) =>
    child.once('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    }),
  );
  return { child, done, stdout: () => stdout };
}

const load = (...args: string[]) => spawnLoad(args).done;

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

/** The JSON report, as far as the tests read it. */
interface Report {
  seconds: number;
  interrupted: boolean;
  user_limit: number | null;
  users_reached_limit: number;
  outages: { start_s: number; seconds: number }[];
  endpoints: Record<string, { requests: number; statuses: Record<string, number> }>;
  audit: { ok: boolean; problems: string[]; notes: string[] };
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
    // 2,000 items: on a fast host the first run below buys ~200 in its 2 s, and
    // the second run on the same sale must still find items to buy.
    env = await testEnv({ SALE_ITEMS: '2000', USER_LIMIT: '3', RATE_LIMIT_IP_PER_SEC: '0', LOG_LEVEL: 'silent' });
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
    const first = await load(...`--url ${url} --profile realistic --users 10 --duration 2 --out ${out}`.split(' '));
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
    const second = await load(...`--url ${url} --users 5 --duration 1 --out ${dir}/second.json`.split(' '));
    assert.equal(second.code, 0, second.stdout + second.stderr);
    assert.match(second.stdout, /audit: OK \([1-9]\d* confirmed purchases\)/);
  });

  it('refuses bad arguments, an unreachable service and one without an active sale with one line and exit 2', async () => {
    const cases: [string[], RegExp][] = [
      [['--url', 'not a url'], /^--url: "not a url" is not a URL/],
      [['--url', `${url}/api`], /^--url: .* must be the service's root/],
      [['--users', 'abc'], /^--users must be a positive whole number, got "abc"$/],
      [['--users', '0'], /^--users must be a positive whole number, got "0"$/],
      [['--users=-3'], /^--users must be a positive whole number, got "-3"$/],
      [['--users', '-3'], /^--users must be a positive whole number, got "-3"$/],
      [['--duration', 'abc'], /^--duration must be a positive number, got "abc"$/],
      [['--duration', '-5'], /^--duration must be a positive number, got "-5"$/],
      [['--users'], /^Option '--users <value>' argument missing; usage:/],
      [['--bogus'], /^Unknown option '--bogus'; usage:/],
      // The limit is the service's own (see the light-profile test), no longer a flag to get wrong.
      [['--user-limit', '5'], /^Unknown option '--user-limit'; usage:/],
      [['--profile', 'nope'], /^--profile: unknown profile "nope"/],
      [['--profile', 'toString'], /^--profile: unknown profile "toString"/],
    ];
    for (const [args, message] of cases) assert.throws(() => parseOptions(args), { message }, args.join(' '));
    const root = parseOptions(['--url', `${url}/`]);
    assert.ok(root !== 'help' && root.url === url, 'a trailing slash is the root');
    assert.equal(parseOptions(['--users', '-3', '-h']), 'help', 'help wins over the rest');
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
    assert.deepEqual(bad, {
      code: 2,
      stdout: '',
      stderr: 'load: --users must be a positive whole number, got "abc"\n',
    });
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

  it('--help prints the usage and exits 0; each bad argument is one line and exit 2 before anything is sent', async () => {
    let requests = 0;
    const service = await fake((_, res) => {
      requests++;
      json(res, 503, { error: { code: 'UNAVAILABLE', message: 'retry later' } });
    });
    const file = join(dir, 'a-file');
    writeFileSync(file, '');
    const started = Date.now();
    const [help, negative, proc, notDir] = await Promise.all([
      load('--help'),
      load('--url', service.url, '--users', '-3'),
      // Node 20's recursive mkdir spins a core forever on this path: the guard kills the tool after 10 s.
      spawnLoad(['--url', service.url, '--out', '/proc/nope/x.json'], 10_000).done,
      load('--url', service.url, '--out', `${file}/x.json`),
    ]);
    service.close();
    assert.equal(help.code, 0, help.stderr);
    assert.match(help.stdout, /^usage: npm run load -- .*--users n/);
    assert.match(help.stdout, /^Exit: 0 audit passed, 1 audit failed, 2 bad argument/m);
    assert.deepEqual(negative, {
      code: 2,
      stdout: '',
      stderr: 'load: --users must be a positive whole number, got "-3"\n',
    });
    assert.deepEqual(proc, {
      code: 2,
      stdout: '',
      stderr: `load: --out: cannot write "/proc/nope/x.json": ENOENT: no such file or directory, mkdir '/proc/nope'\n`,
    });
    assert.equal(notDir.code, 2);
    assert.equal(notDir.stderr, `load: --out: cannot write "${file}/x.json": ${file} is not a directory\n`);
    assert.equal(requests, 0, 'nothing was sent, not even the first GET');
    assert.ok(Date.now() - started < 10_000, 'every refusal is quick');
  });

  describe('against a service of its own (a fresh sale, USER_LIMIT 2), which is killed and restarted', () => {
    let own: TestEnv;
    let port: number;
    let service: Proc;
    before(async () => {
      own = await testEnv({ SALE_ITEMS: '200', USER_LIMIT: '2', RATE_LIMIT_IP_PER_SEC: '0', LOG_LEVEL: 'silent' });
      port = await freePort();
      service = startService({ ...own.env, PORT: String(port) });
      await serviceReady(port);
    });
    after(async () => {
      await service.kill();
      await own.close();
    });

    it("in light, a user who reached the limit stops checking out; the limit is the service's, and 4xx are broken down by code", async () => {
      const out = join(dir, 'limit.json');
      const users = 4;
      const r = await load(
        '--url',
        `http://127.0.0.1:${port}`,
        '--users',
        String(users),
        '--duration',
        '2',
        '--out',
        out,
      );
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
      assert.equal(report.user_limit, 2, 'read from the service, not assumed');
      assert.ok(report.users_reached_limit >= users, String(report.users_reached_limit));
      const checkouts = report.endpoints.checkout!.statuses;
      // Once the limit is known nobody tries past it: at most one refusal per user slot, while it was not.
      assert.ok((checkouts['409 USER_LIMIT_REACHED'] ?? 0) <= users, JSON.stringify(checkouts));
      for (const name of ['items', 'checkout', 'purchase']) {
        for (const key of Object.keys(report.endpoints[name]!.statuses)) {
          assert.match(key, /^(2\d\d|2\d\d replay|[45]\d\d [A-Z_]+)$/, `${name}: ${key}`);
        }
      }
      assert.match(r.stdout, /^user limit: 2; [1-9]\d* users reached it and left/m);
      assert.deepEqual(report.audit.notes, []);
    });

    it('when the service goes away mid-run, backs off, keeps counting, and still reports the outage and audits', async () => {
      const out = join(dir, 'outage.json');
      const users = 5;
      const lines = (text: string) => text.match(/^\d+\/\d+ s .*errors in all$/gm)?.length ?? 0;
      const tool = spawnLoad([
        '--url',
        `http://127.0.0.1:${port}`,
        '--users',
        String(users),
        '--duration',
        '5',
        '--out',
        out,
      ]);
      await waitFor('the first second of load', async () => (lines(tool.stdout()) >= 1 ? true : undefined));
      await service.kill();
      // Two more progress lines: a whole second of the run passed with the service gone.
      const killedAt = lines(tool.stdout());
      await waitFor('two seconds of outage', async () => (lines(tool.stdout()) >= killedAt + 2 ? true : undefined));
      service = startService({ ...own.env, PORT: String(port) });
      await serviceReady(port);
      const r = await tool.done;
      assert.ok(r.code === 0 || r.code === 1, `exit ${r.code}: ${r.stdout}${r.stderr}`);
      assert.match(r.stdout, /^outage: [1-9]\d* s with requests and no answer/m);
      assert.match(r.stdout, /^audit: (OK|FAILED) /m);
      const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
      const down = report.outages.reduce((sum, o) => sum + o.seconds, 0);
      assert.ok(down >= 1, JSON.stringify(report.outages));
      const refused = Object.values(report.endpoints).reduce(
        (sum, e) => sum + (e.statuses['no answer ECONNREFUSED'] ?? 0),
        0,
      );
      assert.ok(refused > 0, 'the refused connections are counted');
      // Backoff from 50 ms to 2 s (at least half of each wait): per user, at most 7 tries to reach
      // the cap, then one a second; the outage's partial seconds at both ends add up to 2 more.
      // Without backoff this is thousands a second.
      assert.ok(refused <= users * (7 + 2 + down), `${refused} refused connections in ${down} s`);
      // The service came back: the sale was read after the run and audited in full.
      assert.ok(!report.audit.problems.some((p) => /could not be read/.test(p)), report.audit.problems.join());
    });
  });

  it('on the first Ctrl-C stops sending, re-sends, reports, audits and writes the JSON, then exits 130', async () => {
    const out = join(dir, 'interrupted.json');
    const tool = spawnLoad(['--url', url, '--users', '5', '--duration', '60', '--out', out]);
    await waitFor('the first second of load', async () => (/^1\/60 s /m.test(tool.stdout()) ? true : undefined));
    tool.child.kill('SIGINT');
    const r = await tool.done;
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.match(r.stdout, /^interrupted: stopping, re-sending purchases of unknown outcome/m);
    assert.match(r.stdout, /^sale \d+, run [0-9a-f]+, [\d.]+ s, interrupted$/m);
    assert.match(r.stdout, /^audit: OK /m);
    const report = JSON.parse(readFileSync(out, 'utf8')) as Report;
    assert.equal(report.interrupted, true);
    assert.ok(report.seconds < 30, String(report.seconds));
    assert.ok(report.endpoints.items!.requests > 0);
  });

  it('a second Ctrl-C quits at once, even with requests hanging, on a clean line', async () => {
    const sale = {
      id: '2026112416',
      total_items: 20,
      items_sold: 0,
      ends_at: new Date(Date.now() + 3600_000).toISOString(),
    };
    const service = await fake((req, res) => {
      if (req.url === '/sales/active' || req.url === `/sales/${sale.id}`) return json(res, 200, sale);
      if (req.url?.endsWith('limit=1000')) return json(res, 200, { items: [] });
      // The users' page reads hang: a first Ctrl-C waits for them (up to the tool's 10 s timeout).
    });
    const tool = spawnLoad(['--url', service.url, '--users', '2', '--duration', '60', '--out', join(dir, 'x.json')]);
    await waitFor('the run', async () => (/users for 60 s/.test(tool.stdout()) ? true : undefined));
    tool.child.kill('SIGINT');
    await waitFor('the first Ctrl-C', async () => (/^interrupted: /m.test(tool.stdout()) ? true : undefined));
    const second = Date.now();
    tool.child.kill('SIGINT');
    const r = await tool.done;
    service.close();
    assert.equal(r.code, 130, r.stdout + r.stderr);
    assert.ok(Date.now() - second < 3000, `${Date.now() - second} ms`);
    assert.ok(r.stdout.endsWith('\n'));
  });

  it('the progress bar ends its line once, however often it is ended, and draws nothing after', () => {
    const written: string[] = [];
    const bar = progress(Date.now() + 10_000, true, (text) => written.push(text));
    bar.tick(10, 1);
    bar.done();
    bar.done();
    bar.tick(20, 1);
    assert.equal(written.length, 2, JSON.stringify(written));
    assert.match(written[0]!, /^\r\[#*\.+\] 0\/10 s .*errors in all/);
    assert.ok(written[0]!.endsWith('\x1b[K'), 'erases the rest of the line');
    assert.equal(written[1], '\n');
    const quiet = progress(Date.now() + 10_000, true, (text) => written.push(text));
    quiet.done();
    assert.equal(written.length, 2, 'nothing drawn, nothing to end');
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

    it('notes a limit no user reached, and fails, checking what it can, when the sale cannot be read after the run', () => {
      const unchecked = audit({ bought: fine, unknown: 0 }, none, sale, undefined, true);
      assert.ok(unchecked.ok);
      assert.deepEqual(unchecked.notes, [
        'the user limit was not checked: no user reached it, and the service states it nowhere else (most confirmed to one user: 2)',
      ]);
      const twice = [...fine, bought('c', 'v', 's-1')];
      const gone = audit({ bought: twice, unknown: 0 }, none, new Error('GET /sales/x answered 503'), 1, true);
      assert.deepEqual(gone.problems, [
        'item s-1 was confirmed to two codes',
        'user u was confirmed 2 items, limit 1',
        'the sale could not be read after the run (GET /sales/x answered 503): its sold items and count were not checked',
      ]);
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

  it('backs off from 50 ms to 2 s after answers missed in a row, at least half of each step', () => {
    assert.deepEqual(
      [0, 1, 5, 6, 30].map((k) => backoffMs(k, () => 0)),
      [25, 50, 800, 1000, 1000],
    );
    assert.equal(
      backoffMs(30, () => 1),
      2000,
    );
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
