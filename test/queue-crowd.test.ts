/**
 * npm run load -- --profile crowd, small: a crowd at a real service with the
 * waiting room on and sales of 30 s (a pre-queue of 10 s), most of it in the
 * pre-queue burst. The tool's audit must pass: nobody checked out before
 * admission, admission in join order after the start, a uniform pre-queue
 * shuffle, everyone admitted or told sold out, sold out seen within 1 s.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { crowdAudit, spearman, type CrowdUser } from '../tools/load/crowd.js';
import { testEnv, type TestEnv } from './helpers.js';
import { freePort, serviceReady, startService, type Proc } from './process.js';

const tool = new URL('../tools/load/main.js', import.meta.url).pathname;
const DURATION = 30;
const PREQUEUE = 10;

describe('npm run load -- --profile crowd (tools/load/crowd.ts)', () => {
  let env: TestEnv;
  let svc: Proc;
  let url: string;
  let dir: string;
  before(async () => {
    const settings = {
      SALE_ITEMS: '30',
      SALE_DURATION: String(DURATION),
      USER_LIMIT: '1',
      RATE_LIMIT_IP_PER_SEC: '0',
      LOG_LEVEL: 'silent',
      WAITING_ROOM: 'on',
      WAITING_ROOM_SECRET: 'a-secret-of-at-least-32-bytes-000',
      PREQUEUE_SECONDS: String(PREQUEUE),
      ADMIT_PER_SEC: '20',
    };
    env = await testEnv(settings);
    const port = await freePort();
    svc = startService({ ...env.env, ...settings, PORT: String(port) });
    await serviceReady(port);
    url = `http://127.0.0.1:${port}`;
    dir = mkdtempSync(join(tmpdir(), 'crowd-test-'));
  });
  after(async () => {
    await svc.kill();
    await env.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('300 users, 80% in the pre-queue burst, for a sale of 30 items: the audit passes and the sale sells out', async () => {
    // The tool needs the next pre-queue ahead of it: wait out one that is open now.
    const left = DURATION * 1000 - (Date.now() % (DURATION * 1000));
    if (left < (PREQUEUE + 1) * 1000) await new Promise((r) => setTimeout(r, left + 100));
    const out = join(dir, 'crowd.json');
    const args = ['--url', url, '--profile', 'crowd', '--users', '300', '--prequeue', String(PREQUEUE)];
    const run = await new Promise<{ code: number; stdout: string }>((resolve) => {
      execFile(
        process.execPath,
        [tool, ...args, '--spread', '2', '--duration', '20', '--out', out],
        { timeout: 120_000 },
        (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout: stdout + stderr }),
      );
    });
    assert.equal(run.code, 0, run.stdout);
    const report = JSON.parse(readFileSync(out, 'utf8')) as ReturnType<typeof crowdAudit>;
    assert.deepEqual(report.problems, []);
    assert.equal(report.users, 300);
    assert.equal(report.prequeue, 240);
    assert.equal(report.bought, 30, 'the sale sold out');
    assert.ok(report.soldOutAfterStartMs !== undefined);
    assert.equal(report.refusedEarly + 30 >= report.earlyCheckouts, true);
    assert.ok(report.earlyCheckouts >= 3, 'some tried to check out at once');
  });
});

describe('the crowd audit', () => {
  const user = (over: Partial<CrowdUser>): CrowdUser => ({
    user: 'u',
    early: false,
    joinSent: 0,
    joinAnswered: 1,
    lastWaitingSent: -Infinity,
    firstAdmittedAnswered: 10,
    notSoldOutAnswers: [],
    soldOutTold: false,
    earlyCheckouts: [],
    checkedOutAt: [],
    bought: 0,
    done: true,
    ...over,
  });

  it('finds overtaking after the start, a sorted pre-queue, a checkout before admission, and a late sold out', () => {
    const pre = Array.from({ length: 100 }, (_, i) =>
      user({ early: true, place: `p${1000 + i}`, saleId: 's2', joinSent: i, joinAnswered: i + 1 }),
    );
    const result = {
      start: 0,
      items: 1,
      nextSaleId: 's2',
      users: [
        ...pre,
        user({ place: 'n1', joinSent: 200, joinAnswered: 201, lastWaitingSent: 500, firstAdmittedAnswered: 600 }),
        user({ place: 'n2', joinSent: 300, joinAnswered: 301, firstAdmittedAnswered: 400 }),
        user({
          place: 'n3',
          joinSent: 400,
          joinAnswered: 401,
          firstAdmittedAnswered: 700,
          earlyCheckouts: [{ status: 200, admittedAfter: false }],
          checkedOutAt: [700],
        }),
        user({
          place: 'n4',
          joinSent: 500,
          joinAnswered: 501,
          firstAdmittedAnswered: 800,
          notSoldOutAnswers: [{ sent: 1800, answered: 1801 }],
        }),
        user({ place: 'n5', joinSent: 600, joinAnswered: 601, firstAdmittedAnswered: Infinity }),
      ],
    };
    const { problems } = crowdAudit(result);
    assert.deepEqual(problems, [
      '1 checkouts succeeded before admission',
      '1 users admitted ahead of someone before them after the start',
      'pre-queue order is not a uniform shuffle: Spearman rho 1.000, z 9.95',
      '1 users ended neither admitted nor told sold out',
      '1 answers said not sold out more than 1 s after the sale sold out',
    ]);
  });

  it("Spearman's rho of a random order is near 0 and passes at significance 0.001; a sorted one is 1", () => {
    const n = 2000;
    const keys = Array.from({ length: n }, () => Math.random());
    const arrival = Array.from({ length: n }, (_, i) => i);
    assert.ok(Math.abs(spearman(arrival, keys) * Math.sqrt(n - 1)) < 3.2905);
    assert.equal(spearman(arrival, arrival), 1);
  });
});
