import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { createClient } from 'redis';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { itemId, json, REDIS_URL, testEnv, type TestEnv } from './helpers.js';
import { waitFor } from './process.js';
import { openStream, soldInBitmap, type SseClient } from './sse.js';

/** The value of one series in a /metrics scrape (0 when absent). */
async function metric(app: App, series: string): Promise<number> {
  const text = (await app.inject('/metrics')).body;
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

describe('GET /sales/active/events', () => {
  let env: TestEnv;
  let app: App;
  let port: number;
  let sale: string;
  const clock = offsetClock();
  const streams: SseClient[] = [];
  const open = async (headers: Record<string, string> = {}) => {
    const s = await openStream(port, headers);
    streams.push(s);
    return s;
  };
  const buy = async (user: string, index: number) => {
    const checkout = await app.inject({ method: 'POST', url: `/checkout?user_id=${user}&id=${itemId(sale, index)}` });
    const { code } = json<{ code: string }>(checkout);
    const res = await app.inject({ method: 'POST', url: `/purchase?code=${code}` });
    assert.equal(res.statusCode, 200, res.body);
  };

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '20', MAX_STREAMS: '30', MAX_IN_FLIGHT: '2', STREAM_HEARTBEAT_MS: '1000' });
    app = await env.app({ clock });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
  });
  after(async () => {
    for (const s of streams) s.close();
    await env.close();
  });

  it('opens with a `sale` snapshot of the active sale, then tells each purchase as a `sold` event', async () => {
    await buy('ev-a', 3);
    const stream = await open();
    assert.equal(stream.status, 200);
    assert.match(String(stream.headers['content-type']), /^text\/event-stream/);
    // Unframed: the stream ends with its connection, and each event is one plain write.
    assert.equal(stream.headers['transfer-encoding'], undefined);
    assert.equal(stream.headers.connection, 'close');
    const first = await stream.next(() => true);
    assert.equal(first.event, 'sale');
    assert.equal(first.data.sale_id, sale);
    assert.equal(first.data.total_items, 20);
    assert.equal(first.data.items_sold, 1);
    assert.equal(soldInBitmap(first.data.sold_bitmap as string, 3), true);
    assert.equal(soldInBitmap(first.data.sold_bitmap as string, 4), false);

    await buy('ev-a', 4);
    const sold = await stream.next((e) => e.event === 'sold');
    assert.deepEqual(sold.data, { sale_id: sale, items_sold: 2, items_remaining: 18, sold: [4], unsold: [] });
    // The waiting room is off: no `queue` events.
    assert.equal(stream.events.filter((e) => e.event === 'queue').length, 0);
  });

  it('with the Last-Event-ID of this instance resumes with the events missed, and with an unknown one gets a snapshot', async () => {
    const first = await open();
    const snapshot = await first.next((e) => e.event === 'sale');
    first.close();
    await buy('ev-b', 5);
    await buy('ev-b', 6);
    // Another watcher proves the broadcaster has read both purchases.
    const witness = await open();
    await witness.next((e) => e.event === 'sale' && e.data.items_sold === (snapshot.data.items_sold as number) + 2);

    const resumed = await open({ 'last-event-id': snapshot.id! });
    const missed = await resumed.next((e) => e.event === 'sold' && (e.data.sold as number[]).includes(6));
    const before6 = resumed.events.slice(0, resumed.events.indexOf(missed) + 1);
    assert.equal(
      before6.some((e) => e.event === 'sale'),
      false,
      'a resume within the history gets no snapshot',
    );
    assert.deepEqual(before6.flatMap((e) => e.data.sold as number[]).sort(), [5, 6]);

    const unknown = await open({ 'last-event-id': 'elsewhere-12' });
    assert.equal((await unknown.next(() => true)).event, 'sale');
  });

  it('with 20 watchers reads Redis once per broadcast, as with one', async () => {
    for (let i = 0; i < 20; i++) await open();
    const reads = () => metric(app, 'redis_command_duration_seconds_count{command="hlen"}');
    const ticks = () => metric(app, 'sse_broadcast_lag_seconds_count');
    const [reads0, ticks0] = [await reads(), await ticks()];
    await waitFor('8 broadcasts', async () => ((await ticks()) >= ticks0 + 8 ? true : undefined));
    const [reads1, ticks1] = [await reads(), await ticks()];
    // A read in progress at either scrape may count once more than its broadcast.
    assert.ok(reads1 - reads0 <= ticks1 - ticks0 + 1, `${reads1 - reads0} reads for ${ticks1 - ticks0} broadcasts`);
    assert.ok((await metric(app, 'sse_clients')) >= 20);
  });

  it('sends heartbeats on a quiet stream', async () => {
    const stream = await open();
    await waitFor('a heartbeat', async () => (stream.comments > 0 ? true : undefined), 5000);
  });

  it('beyond MAX_STREAMS answers 503 UNAVAILABLE with Retry-After, and streams do not count against MAX_IN_FLIGHT', async () => {
    for (let i = 0; i < 30 && (await metric(app, 'sse_clients')) < 30; i++) await open();
    assert.equal(await metric(app, 'sse_clients'), 30);
    const refused = await openStream(port);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers['retry-after'], '1');
    await refused.ended;
    // MAX_IN_FLIGHT is 2, and 30 streams are open: other requests are still served.
    assert.equal((await fetch(`http://127.0.0.1:${port}/sales/active`)).status, 200);
    for (const s of streams.splice(0)) s.close();
    await waitFor('streams closed', async () => ((await metric(app, 'sse_clients')) === 0 ? true : undefined));
  });

  it('when the next sale opens, tells every watcher with a `rotated` event', async () => {
    const stream = await open();
    const current = await stream.next((e) => e.event === 'sale');
    clock.set(Date.parse(current.data.ends_at as string) + 100);
    const rotated = await stream.next((e) => e.event === 'rotated');
    assert.notEqual(rotated.data.sale_id, sale);
    assert.equal(rotated.data.started_at, current.data.ends_at);
    assert.equal(rotated.data.items_sold, 0);
  });

  it('on close (the SIGTERM drain), ends every stream with a `closing` event', async () => {
    const stream = await open();
    await stream.next((e) => e.event === 'sale');
    await app.close(); // resolves only when no connection is left: the stream does not hold it
    await stream.ended;
    assert.equal(stream.events.at(-1)?.event, 'closing');
  });
});

describe('GET /sales/active/events, to 2,000 watchers at once', () => {
  let env: TestEnv;
  let app: App;
  let port: number;

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '20', MAX_STREAMS: '2000' });
    app = await env.app();
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as { port: number }).port;
  });
  after(() => env.close());

  it('answers a buyer in the middle of a broadcast, not after every stream is written', async () => {
    const sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    // Plain sockets: 2,000 parsing clients would cost this process more than the service.
    let told = 0;
    let onFirstTold = () => {};
    const watchers = Array.from({ length: 2000 }, () => {
      const state = { snapshot: false, sold: false };
      const s = connect(port, '127.0.0.1', () => s.write('GET /sales/active/events HTTP/1.1\r\nHost: x\r\n\r\n'));
      s.setEncoding('utf8');
      s.on('data', (chunk: string) => {
        state.snapshot ||= chunk.includes('event: sale');
        if (!state.sold && chunk.includes('event: sold')) {
          state.sold = true;
          if (told++ === 0) onFirstTold();
        }
      });
      return { s, state };
    });
    // The buyer's connection is open before the broadcast, as a keep-alive one would be.
    const buyer = connect(port, '127.0.0.1');
    buyer.setEncoding('utf8');
    await new Promise((ready) => buyer.once('connect', ready));
    try {
      await waitFor(
        'every stream has its snapshot',
        async () => watchers.every((w) => w.state.snapshot) || undefined,
        20_000,
      );
      const answered = new Promise<{ answer: string; toldBefore: number }>((done) => {
        // The first stream told of the purchase: the broadcast has begun. A
        // request sent now is refused at once (an item id that is not one),
        // so its answer waits only for the event loop.
        onFirstTold = () => {
          buyer.write(`POST /checkout?user_id=ev-m&id=nope HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n`);
          buyer.once('data', (answer: string) => done({ answer, toldBefore: told }));
        };
      });
      const checkout = await app.inject({ method: 'POST', url: `/checkout?user_id=ev-m&id=${itemId(sale, 7)}` });
      const { code } = json<{ code: string }>(checkout);
      assert.equal((await app.inject({ method: 'POST', url: `/purchase?code=${code}` })).statusCode, 200);
      const { answer, toldBefore } = await answered;
      assert.match(answer, /^HTTP\/1\.1 400 /);
      await waitFor('every stream told of the purchase', async () => told === 2000 || undefined, 20_000);
      // Written in one go, all 2,000 streams would be told before the service
      // read the buyer's request; in slices, the answer comes between them.
      assert.ok(toldBefore < 2000, `the buyer was answered only after ${toldBefore} of 2000 streams were told`);
    } finally {
      buyer.destroy();
      for (const w of watchers) w.s.destroy();
    }
  });
});

describe('GET /sales/active/events, to a client that stops reading', () => {
  let env: TestEnv;
  let app: App;
  const socket = join(tmpdir(), `flashsale-events-${process.pid}.sock`);

  before(async () => {
    // 100,000 items: each snapshot is 17 KB, so a stalled client's buffers fill within seconds.
    env = await testEnv({ SALE_ITEMS: '100000', DEPENDENCY_TIMEOUT_MS: '10000', RECONCILE_INTERVAL_MS: '3600000' });
    app = await env.app();
    // On TCP the kernel's send buffer grows to tcp_wmem's maximum (4 MB here)
    // before Node queues a byte; a Unix socket's holds about 200 KB, so the
    // service's own bound is reached within seconds.
    await app.listen({ path: socket });
  });
  after(() => env.close());

  it('drops it once its buffer is full, while a reading client keeps its stream', async () => {
    const sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    const reader = await openStream(socket);
    const stalled = connect(socket, () =>
      stalled.write('GET /sales/active/events HTTP/1.1\r\nHost: localhost\r\n\r\n'),
    );
    stalled.pause();
    stalled.on('error', () => {});
    // More than 256 items change per read, so every broadcast is a full snapshot.
    const redis = await createClient({ url: REDIS_URL }).connect();
    const sold = `${env.env.REDIS_PREFIX}:{${sale}}:sold`;
    let next = 0;
    const dropped = () => metric(app, 'sse_clients_dropped_total{reason="slow_client"}');
    try {
      await waitFor(
        'the stalled client dropped',
        async () => {
          const fields: string[] = [];
          for (let i = 0; i < 300; i++) fields.push(String(next++), `c|1|${Date.now()}`);
          await redis.sendCommand(['HSET', sold, ...fields]);
          return (await dropped()) === 1 ? true : undefined;
        },
        30_000,
      );
    } finally {
      await redis.close();
      stalled.destroy();
    }
    assert.equal(await metric(app, 'sse_clients'), 1);
    assert.ok(reader.events.filter((e) => e.event === 'sale').length > 1);
    reader.close();
  });
});

describe('GET /sales/active/events with the waiting room on', () => {
  let env: TestEnv;
  let app: App;
  let stream: SseClient | undefined;

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '20', ADMIT_PER_SEC: '2', STREAM_INTERVAL_MS: '250' });
    app = await env.app({
      env: { WAITING_ROOM: 'on', WAITING_ROOM_SECRET: 'a-secret-of-at-least-32-bytes-000', PREQUEUE_SECONDS: '0' },
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
  });
  after(async () => {
    stream?.close();
    await env.close();
  });

  it('tells every watcher the room as it moves in `queue` events: who is served, how many wait, the rate, sold out', async () => {
    const port = (app.server.address() as { port: number }).port;
    const sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    stream = await openStream(port);
    const first = await stream.next((e) => e.event === 'queue');
    assert.deepEqual(first.data, { sale_id: sale, now_serving: 0, waiting: 0, admit_per_sec: 2, sold_out: false });
    // A new watcher gets the room's state right after its snapshot, before anything moves.
    const late = await openStream(port);
    try {
      await late.next((e) => e.event === 'queue');
      assert.deepEqual(
        late.events.map((e) => e.event),
        ['sale', 'queue'],
      );
    } finally {
      late.close();
    }

    for (const user of ['rq-1', 'rq-2', 'rq-3']) {
      const res = await app.inject({ method: 'POST', url: `/queue/join?user_id=${user}` });
      assert.equal(res.statusCode, 200, res.body);
    }
    // Admitted at 2 a second: the three are served within a few seconds, each step told as it happens.
    const served = await stream.next((e) => e.event === 'queue' && e.data.now_serving === 3, 10_000);
    assert.deepEqual(served.data, { sale_id: sale, now_serving: 3, waiting: 0, admit_per_sec: 2, sold_out: false });
    const moves = stream.events.filter((e) => e.event === 'queue');
    assert.ok(
      moves.some((e) => (e.data.waiting as number) > 0),
      JSON.stringify(moves),
    );
    // One event per change, not one per round.
    const states = moves.map((e) => JSON.stringify(e.data));
    assert.equal(new Set(states).size, states.length, JSON.stringify(states));
  });
});
