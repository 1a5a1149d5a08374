/**
 * The waiting room's metrics (joins, polls, rejections by reason, admissions,
 * join-to-admission time, the state gauges) and the adaptive admission mode:
 * the AIMD controller on synthetic inputs, its inputs read from the service's
 * own metrics, and the mode end to end under a controlled clock.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import type { App } from '../src/app.js';
import { createMetrics } from '../src/metrics/metrics.js';
import { createController, createSignals, WINDOW_MS } from '../src/queue/controller.js';
import { json, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';

const SECRET = 'a-secret-of-at-least-32-bytes-000';
const room = (extra: Record<string, string> = {}) => ({ WAITING_ROOM: 'on', WAITING_ROOM_SECRET: SECRET, ...extra });
const HOUR = 3_600_000;

function manualClock(at: number) {
  let now = at;
  return { now: () => now, advance: (ms: number) => void (now += ms) };
}
async function pass(app: App, clock: { advance(ms: number): void }, ms: number) {
  for (let t = 0; t < ms; t += 250) {
    clock.advance(250);
    await app.deps.queue!.admission.tick();
  }
}
/** After the timer's first step (at start-up), stops it: from then on only the test's steps admit and decide. */
async function quiet(app: App) {
  await waitFor('the first counters', async () => (app.deps.queue!.admission.age() < 1000 ? true : undefined));
  app.deps.queue!.admission.stop();
}
/** One sample of the scrape: `name{labels} value` lines as a map. */
async function scrape(app: App) {
  const text = (await app.inject('/metrics')).body;
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(queue_\S+) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return values;
}
const join = async (app: App, user: string) => {
  const res = await app.inject({ method: 'POST', url: `/queue/join?user_id=${user}` });
  assert.equal(res.statusCode, 200, res.body);
  return json<{ ticket: string; sale_id: string; admitted: boolean }>(res);
};

describe('adaptive admission controller (AIMD), on synthetic inputs', () => {
  const quiet = { shedRatio: 0, checkoutP99: 0.05, waiting: 100 };

  it('halves the rate when requests are shed or checkout p99 is over the target, never below a tenth of the base', () => {
    const c = createController({ base: 100, p99TargetSeconds: 0.25 });
    assert.equal(c.decide({ ...quiet, shedRatio: 0.01 }), 50);
    assert.equal(c.decide({ ...quiet, checkoutP99: 0.5 }), 25);
    for (let i = 0; i < 10; i++) c.decide({ ...quiet, shedRatio: 1 });
    assert.equal(c.rate(), 10);
  });

  it('adds a tenth of the base per window while people wait and the service has room, up to ten times the base', () => {
    const c = createController({ base: 100, p99TargetSeconds: 0.25 });
    assert.equal(c.decide(quiet), 110);
    assert.equal(c.decide({ ...quiet, checkoutP99: 0.25 }), 120, 'at the target is not over it');
    assert.equal(c.decide({ ...quiet, waiting: 0 }), 120, 'nobody waiting: nothing to probe for');
    for (let i = 0; i < 200; i++) c.decide(quiet);
    assert.equal(c.rate(), 1000);
  });

  it('a follower takes the rate the leader published, within its bounds', () => {
    const c = createController({ base: 100, p99TargetSeconds: 0.25 });
    c.follow(37.5);
    assert.equal(c.rate(), 37.5);
    c.follow(0); // nothing published yet
    assert.equal(c.rate(), 37.5);
    c.follow(1e9);
    assert.equal(c.rate(), 1000);
  });

  it("reads its inputs from the service's metrics: shed share and checkout p99 of the window since the last read", async () => {
    const metrics = createMetrics();
    const read = createSignals(metrics);
    const labels = { handler: 'checkout', method: 'POST', status_code: '200' };
    const duration = metrics.httpRequestDuration.labels('checkout', 'POST', '200');
    for (let i = 0; i < 98; i++) duration.observe(0.003);
    duration.observe(0.3);
    duration.observe(0.3);
    metrics.httpRequestsTotal.inc(labels, 100);
    metrics.httpRequestsTotal.inc({ handler: 'checkout', method: 'POST', status_code: '503' }, 100);
    metrics.shedTotal.inc({ reason: 'in_flight' }, 100);
    assert.deepEqual(await read(), { shedRatio: 0.5, checkoutP99: 0.5 });
    for (let i = 0; i < 100; i++) duration.observe(0.02);
    metrics.httpRequestsTotal.inc(labels, 100);
    assert.deepEqual(await read(), { shedRatio: 0, checkoutP99: 0.025 }, 'the earlier window is forgotten');
    assert.deepEqual(await read(), { shedRatio: 0, checkoutP99: 0 }, 'an empty window');
  });
});

describe('waiting room metrics', () => {
  const envs: TestEnv[] = [];
  after(() => Promise.all(envs.map((e) => e.close())));
  /** A room of its own: an instance of another test would lead it and publish its own rate. */
  const newEnv = async () => {
    const env = await testEnv({ SALE_ITEMS: '1000', ADMISSION_TTL: '600' });
    envs.push(env);
    return env;
  };

  it('counts joins, polls, admissions and rejections by reason; exports the room state; times join to first admitted checkout once', async () => {
    const clock = manualClock(Math.floor(Date.now() / HOUR) * HOUR + 10_000);
    const app = await (await newEnv()).app({ clock, env: room({ ADMIT_PER_SEC: '2', PREQUEUE_SECONDS: '0' }) });
    await quiet(app);
    const tickets = [];
    for (let i = 0; i < 5; i++) tickets.push(await join(app, `m${i}`));
    await join(app, 'm0');
    // The first step admits the second's worth owed since the sale started 10 s ago: m0 and m1.
    await app.deps.queue!.admission.tick();
    const sale = tickets[0]!.sale_id;
    const forged = `${tickets[0]!.ticket.slice(0, -1)}${tickets[0]!.ticket.endsWith('A') ? 'B' : 'A'}`;
    assert.equal((await app.inject(`/queue/status?ticket=${forged}`)).statusCode, 403);
    const checkout = (user: string, ticket: string) =>
      app.inject({
        method: 'POST',
        url: `/checkout?user_id=${user}&id=${sale}-00001`,
        headers: { 'x-queue-ticket': ticket },
      });
    assert.equal((await checkout('m4', tickets[4]!.ticket)).statusCode, 403); // NOT_ADMITTED
    let m = await scrape(app);
    assert.equal(m.get('queue_joins_total{outcome="new"}'), 5);
    assert.equal(m.get('queue_joins_total{outcome="again"}'), 1);
    assert.equal(m.get('queue_rejections_total{route="status",reason="TICKET_INVALID"}'), 1);
    assert.equal(m.get('queue_rejections_total{route="checkout",reason="NOT_ADMITTED"}'), 1);
    assert.equal(m.get('queue_admission_rate_target'), 2);

    await pass(app, clock, 1000);
    m = await scrape(app);
    assert.equal(m.get('queue_admitted_total'), 4, 'then 1 s at 2 a second');
    assert.equal(m.get('queue_now_serving'), 4);
    assert.equal(m.get('queue_waiting'), 1);
    assert.equal(m.get('queue_admission_leader'), 1);
    assert.equal(m.get('queue_sold_out'), 0);
    assert.equal((await app.inject(`/queue/status?ticket=${encodeURIComponent(tickets[0]!.ticket)}`)).statusCode, 200);
    assert.equal((await scrape(app)).get('queue_polls_total'), 1);

    clock.advance(3000);
    assert.equal((await checkout('m0', tickets[0]!.ticket)).statusCode, 200);
    assert.notEqual((await checkout('m0', tickets[0]!.ticket)).statusCode, 403);
    m = await scrape(app);
    assert.equal(m.get('queue_join_to_admission_seconds_count'), 1, 'the first admitted checkout only');
    assert.equal(m.get('queue_join_to_admission_seconds_sum'), 4, 'joined at +0 s, first checkout at +4 s');
  });

  it('ADMISSION_MODE=adaptive halves admission when the service sheds and grows it back while people wait, and exports its inputs and output', async () => {
    const clock = manualClock(Math.floor(Date.now() / HOUR) * HOUR + 10_000);
    const app = await (
      await newEnv()
    ).app({
      clock,
      env: room({ ADMIT_PER_SEC: '20', PREQUEUE_SECONDS: '0', ADMISSION_MODE: 'adaptive' }),
    });
    await quiet(app);
    await Promise.all(Array.from({ length: 200 }, (_, i) => join(app, `a${i}`)));
    const admission = app.deps.queue!.admission;
    // A first quiet window (the 200 joins, nothing shed) with people waiting: +2 (a tenth of 20).
    await pass(app, clock, WINDOW_MS);
    assert.equal(admission.targetRate(), 22);
    // Synthetic input: a window in which a quarter of the requests were shed.
    app.deps.metrics.httpRequestsTotal.inc({ handler: 'checkout', method: 'POST', status_code: '503' }, 4);
    app.deps.metrics.shedTotal.inc({ reason: 'in_flight' }, 1);
    await pass(app, clock, WINDOW_MS);
    assert.equal(admission.controllerInputs().shedRatio, 0.25);
    assert.equal(admission.targetRate(), 11, 'halved');
    await pass(app, clock, 3 * WINDOW_MS);
    const m = await scrape(app);
    assert.equal(m.get('queue_controller_shed_ratio'), 0);
    assert.equal(m.get('queue_controller_checkout_p99_seconds'), 0);
    assert.equal(m.get('queue_admission_rate_target'), 17, 'three quiet windows: +2 each');
    const admitted = m.get('queue_admitted_total')!;
    await pass(app, clock, WINDOW_MS);
    const more = (await scrape(app)).get('queue_admitted_total')! - admitted;
    assert.ok(more >= 16 && more <= 18, `admitted ${more} in a window at 17 a second`);
  });
});
