/**
 * The waiting room (WAITING_ROOM=on): joins, status polls without I/O, the
 * ticket check in front of checkout and purchase (with the attacks it exists
 * to stop), secret rotation, admission at ADMIT_PER_SEC under a controlled
 * clock and across instances, inventory-aware stop and resume, sold out.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

const SECRET = 'a-secret-of-at-least-32-bytes-000';
const OTHER_SECRET = 'another-secret-of-32-bytes-or-more';
const room = (extra: Record<string, string> = {}) => ({
  WAITING_ROOM: 'on',
  WAITING_ROOM_SECRET: SECRET,
  PREQUEUE_SECONDS: '60',
  ...extra,
});

/**
 * Moves the clock in the timer's steps of 250 ms, one admission step each
 * (admission catches up at most one second at a time, as after a stall).
 */
async function pass(app: App, clock: { advance(ms: number): void }, ms: number) {
  for (let t = 0; t < ms; t += 250) {
    clock.advance(250);
    await app.deps.queue!.admission.tick();
  }
}

/** A business clock that moves only when the test says so. */
function manualClock(at: number) {
  let now = at;
  return { now: () => now, set: (ms: number) => void (now = ms), advance: (ms: number) => void (now += ms) };
}

interface Standing {
  ticket: string;
  position: number;
  admitted: boolean;
  eta_seconds: number;
  sold_out: boolean;
  stale: boolean;
}

const join = async (app: App, user: string) => {
  const res = await app.inject({ method: 'POST', url: `/queue/join?user_id=${user}` });
  assert.equal(res.statusCode, 200, res.body);
  return json<Standing & { sale_id: string }>(res);
};
const status = (app: App, ticket: string) => app.inject(`/queue/status?ticket=${encodeURIComponent(ticket)}`);
const errorCode = (res: { body: string }) => json<{ error: { code: string; message: string } }>(res).error.code;
/** Waits until this instance has read the room's counters from Redis. */
const counted = (app: App) =>
  waitFor('the first counters', async () => (app.deps.queue!.admission.age() < 1000 ? true : undefined));
/** A forged signature: the payload kept, the signature's first character changed. */
function forge(ticket: string) {
  const [payload, sig] = ticket.split('.') as [string, string];
  return `${payload}.${sig[0] === 'A' ? 'B' : 'A'}${sig.slice(1)}`;
}
/**
 * The same ticket spelled otherwise: the signature's last base64url character
 * carries 4 bits of the 32 bytes and 2 that decoding drops; this sets those.
 */
function respell(ticket: string) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  const last = alphabet.indexOf(ticket.at(-1)!);
  return ticket.slice(0, -1) + alphabet[last | 3];
}
/** Another user's name written into a ticket, its signature kept. */
function rename(ticket: string, user: string) {
  const [payload, sig] = ticket.split('.') as [string, string];
  const fields = Buffer.from(payload, 'base64url').toString().split('|');
  fields[2] = user;
  return `${Buffer.from(fields.join('|')).toString('base64url')}.${sig}`;
}

describe('waiting room configuration', () => {
  const server = new URL('../src/server.js', import.meta.url).pathname;
  for (const [env, named] of [
    [{ WAITING_ROOM: 'on' }, 'WAITING_ROOM_SECRET'],
    [{ WAITING_ROOM: 'on', WAITING_ROOM_SECRET: 'short' }, 'WAITING_ROOM_SECRET'],
    [
      { WAITING_ROOM: 'on', WAITING_ROOM_SECRET: SECRET, WAITING_ROOM_PREVIOUS_SECRET: 'short' },
      'WAITING_ROOM_PREVIOUS_SECRET',
    ],
  ] as const) {
    it(`start-up with ${Object.keys(env).join(', ')} is refused with one line naming ${named}`, () => {
      const run = spawnSync(process.execPath, [server], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
        timeout: 10_000,
      });
      assert.equal(run.status, 1);
      const lines = run.stderr.trim().split('\n');
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0]!, new RegExp(`^flashsale: invalid configuration: ${named} `));
    });
  }
});

describe('POST /queue/join and GET /queue/status', () => {
  let env: TestEnv;
  let app: App;
  let clock: ReturnType<typeof manualClock>;
  let start: number;

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '50', ADMIT_PER_SEC: '4', ADMISSION_TTL: '60', SALE_DURATION: '3600' });
    start = Math.floor(Date.now() / 3_600_000) * 3_600_000;
    clock = manualClock(start + 1000);
    app = await env.app({ clock, env: room() });
    await counted(app);
  });
  after(() => env.close());

  it('POST /queue/join twice by one user gives the same ticket and place; another user gets the next place', async () => {
    const first = await join(app, 'same');
    const again = await join(app, 'same');
    assert.equal(again.ticket, first.ticket);
    assert.equal(again.position, first.position);
    const next = await join(app, 'next-one');
    assert.equal(next.position, first.position + 1);
    assert.equal(first.admitted, false);
    assert.equal(first.sold_out, false);
  });

  it('GET /queue/status answers from counters with a spread Retry-After, and sends no Redis command per poll', async () => {
    // 40 people ahead at 4 a second: a wait long enough for whole seconds to spread.
    await Promise.all(Array.from({ length: 40 }, (_, i) => join(app, `crowd-${i}`)));
    const { ticket } = await join(app, 'poller');
    await counted(app);
    app.deps.queue!.admission.stop(); // no timer traffic while counting
    try {
      const commands = async () =>
        (await app.deps.metrics.registry.getSingleMetric('redis_command_duration_seconds')!.get()).values
          .filter((v) => (v as { metricName?: string }).metricName === 'redis_command_duration_seconds_count')
          .reduce((sum, v) => sum + v.value, 0);
      const before = await commands();
      const waits = new Set<string>();
      for (let i = 0; i < 50; i++) {
        const res = await status(app, ticket);
        assert.equal(res.statusCode, 200, res.body);
        waits.add(String(res.headers['retry-after']));
      }
      assert.equal(await commands(), before);
      assert.ok(waits.size > 1, `Retry-After is spread, got ${[...waits].join(',')}`);
    } finally {
      app.deps.queue!.admission.start();
    }
  });

  it("GET /queue/status refuses forged, renamed, respelled, and other sales' tickets with 403 TICKET_INVALID", async () => {
    const { ticket } = await join(app, 'victim');
    assert.equal((await status(app, ticket)).statusCode, 200); // the genuine one is now remembered as verified
    assert.deepEqual(
      Buffer.from(respell(ticket).split('.')[1]!, 'base64url'),
      Buffer.from(ticket.split('.')[1]!, 'base64url'),
      'a respelled ticket decodes to the signature issued',
    );
    for (const bad of [forge(ticket), rename(ticket, 'attacker'), respell(ticket)]) {
      const res = await status(app, bad);
      assert.equal(res.statusCode, 403, res.body);
      assert.equal(errorCode(res), 'TICKET_INVALID');
    }
    // A ticket of the previous hour's sale, signed with the right secret, opens nothing now.
    const earlier = manualClock(start - 3_600_000 + 1000);
    const past = await env.app({ clock: earlier, env: room() });
    const old = await join(past, 'victim');
    const res = await status(app, old.ticket);
    assert.equal(res.statusCode, 403);
    assert.match(res.body, /another sale/);
  });

  it("POST /checkout with the room on: 403 NOT_ADMITTED with the position, TICKET_INVALID for another user's ticket or none, 200 once admitted", async () => {
    const sale = (await join(app, 'buyer')).sale_id;
    const { ticket } = await join(app, 'buyer');
    const checkout = (user: string, t?: string) =>
      app.inject({
        method: 'POST',
        url: `/checkout?user_id=${user}&id=${sale}-00001`,
        headers: t ? { 'x-queue-ticket': t } : {},
      });
    const waiting = await checkout('buyer', ticket);
    assert.equal(waiting.statusCode, 403, waiting.body);
    assert.equal(errorCode(waiting), 'NOT_ADMITTED');
    assert.match(waiting.body, /position \d+/);
    assert.equal(errorCode(await checkout('thief', ticket)), 'TICKET_INVALID');
    assert.equal(errorCode(await checkout('buyer')), 'TICKET_INVALID');

    // Admission runs at 4 a second: a minute lets everyone who joined here in.
    await pass(app, clock, 60_000);
    await waitFor('admission', async () => (json<Standing>(await status(app, ticket)).admitted ? true : undefined));
    const ok = await checkout('buyer', ticket);
    assert.equal(ok.statusCode, 200, ok.body);
    const viaQuery = await app.inject({
      method: 'POST',
      url: `/purchase?code=${json<{ code: string }>(ok).code}&ticket=${encodeURIComponent(ticket)}`,
    });
    assert.equal(viaQuery.statusCode, 200, viaQuery.body);
    const without = await app.inject({ method: 'POST', url: `/purchase?code=${json<{ code: string }>(ok).code}` });
    assert.equal(errorCode(without), 'TICKET_INVALID');

    // ADMISSION_TTL (60 s) after its admission, the ticket opens nothing any more.
    await pass(app, clock, 65_000);
    await waitFor('expiry', async () => ((await status(app, ticket)).statusCode === 403 ? true : undefined));
    const expired = await checkout('buyer', ticket);
    assert.equal(errorCode(expired), 'TICKET_INVALID');
    assert.match(expired.body, /admission expired/);
  });
});

describe('waiting room secret rotation', () => {
  let env: TestEnv;
  before(async () => (env = await testEnv({ WAITING_ROOM_SECRET_GRACE: '600' })));
  after(() => env.close());

  it('a ticket signed with the previous secret is accepted and re-signed during the grace period, refused after it', async () => {
    // Ten minutes into the hour, whatever the time: the test moves 601 s on and
    // must stay in one sale (it failed when run in the last ten minutes of an hour).
    const clock = manualClock(Math.floor(Date.now() / 3_600_000) * 3_600_000 + 600_000);
    const before = await env.app({ clock, env: room() });
    const { ticket } = await join(before, 'patient');
    const rotated = await env.app({
      clock,
      env: room({ WAITING_ROOM_SECRET: OTHER_SECRET, WAITING_ROOM_PREVIOUS_SECRET: SECRET }),
    });
    await counted(rotated);
    const res = await status(rotated, ticket);
    assert.equal(res.statusCode, 200, res.body);
    const resigned = json<Standing>(res).ticket;
    assert.notEqual(resigned, ticket);
    assert.equal((await status(rotated, resigned)).statusCode, 200);
    assert.equal(
      (await join(rotated, 'patient')).ticket,
      resigned,
      'joining again keeps the place, under the new secret',
    );

    clock.advance(601_000);
    await counted(rotated);
    assert.equal(errorCode(await status(rotated, ticket)), 'TICKET_INVALID');
    assert.equal((await status(rotated, resigned)).statusCode, 200);
    const stranger = await env.app({ clock, env: room({ WAITING_ROOM_SECRET: OTHER_SECRET }) });
    await counted(stranger);
    assert.equal(errorCode(await status(stranger, ticket)), 'TICKET_INVALID', 'without the previous secret configured');
  });
});
