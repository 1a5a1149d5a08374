/**
 * One broadcaster per instance feeds every live event stream. One timer
 * (STREAM_INTERVAL_MS, at most 4 a second) makes one shared read of the
 * active sale — HLEN of its Redis `sold` hash, and HKEYS only when that count
 * moved — and writes the same serialised event to every stream, so 10,000
 * watchers cost the same reads as one. The writes go out in slices, a turn of
 * the event loop each, so requests are served between them. Nothing on the
 * purchase path changes: the `sold` hash is what purchase-7.lua already writes.
 *
 * Events (each frame serialised once): `sale` (a full snapshot: the sale and a
 * bitmap of its sold items), `sold` (the counts and the item indices sold, or
 * given back, since the last event), `sold_out`, `rotated` (the next sale
 * opened; a snapshot of it), and with the waiting room on `queue` (its state:
 * who is being served, how many wait). A client reading too slowly is dropped once
 * STREAM_CLIENT_BUFFER bytes wait for it, never buffered without limit.
 */
import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { setImmediate as nextTurn } from 'node:timers/promises';

import type { Infra } from '../infra.js';
import { saleKeys } from '../redis/keys.js';
import { randomHex } from '../random.js';
import type { RoomState } from '../queue/room.js';
import type { Sales } from '../sale/sales.js';

/** Bytes that may wait in Node for one client (the kernel's socket buffer comes first) before it is dropped. */
export const STREAM_CLIENT_BUFFER = 64 * 1024;
/** More changes than this in one read are sent as a snapshot: its bitmap is then the smaller frame. */
const MAX_LISTED_CHANGES = 256;
/** Events kept for Last-Event-ID resumes (16 s of history at the fastest interval, 4 a second). */
const REPLAY_EVENTS = 64;
/**
 * Streams written per turn of the event loop. A write costs the service
 * 15–30 µs (most of it the kernel's loopback TCP), so 5,000 streams in one go
 * would hold every request for 0.1 s; in slices of this size a request waits
 * at most a few milliseconds for a broadcast.
 */
const WRITES_PER_TURN = 200;
/** Tells EventSource to reconnect after 1 s when a stream ends (a drain, a dropped client). */
const RETRY_MS = 1000;

/** The waiting room, when it is on: its state, known without I/O (queue/room.ts). */
export interface Room {
  state(): RoomState;
}

type Deps = Pick<Infra, 'config' | 'clock' | 'redis' | 'metrics' | 'log' | 'ids'> & {
  sales: Sales;
  room: Room | undefined;
};

interface SaleState {
  id: string;
  started_at: string;
  ends_at: string;
  total_items: number;
  /** Indices of the items Redis holds as sold. */
  sold: Set<number>;
  /** Whether `sold` has been read from Redis yet: no snapshot goes out before. */
  known: boolean;
  soldOutSent: boolean;
}

interface Client {
  res: ServerResponse;
  /**
   * The stream's connection, written to directly once the headers are out: a
   * stream is unframed, so its bytes are the events, and the response's own
   * write (a cork, and an uncork on the next tick, per call) cost a quarter
   * more user CPU per write (docs/PERFORMANCE.md, "Live event streams").
   */
  socket: Socket;
  /** Waiting for its first snapshot (sent after the next read). */
  pending: boolean;
}

export function createBroadcaster(deps: Deps) {
  const { config, clock, redis, metrics, log, ids, sales, room } = deps;
  // Event ids are "<token>-<seq>": a Last-Event-ID from another instance, or
  // from before a restart, names another token and gets a snapshot.
  const token = randomHex(4);
  let seq = 0;
  const backlog: { seq: number; frame: Buffer }[] = [];
  const clients = new Set<Client>();
  let sale: SaleState | undefined;
  let timer: NodeJS.Timeout | undefined;
  let lastHeartbeat = Date.now();
  /** The room's last `queue` event (its state and frame), repeated to each new stream after its snapshot. */
  let roomSent: { key: string; frame: Buffer } | undefined;
  let closing = false;

  const frame = (event: string, data: unknown, id = `${token}-${seq}`) =>
    Buffer.from(`id: ${id}\nevent: ${event}\ndata: ${JSON.stringify(data)}\n\n`);

  function snapshot(s: SaleState) {
    const bitmap = Buffer.alloc(Math.ceil(s.total_items / 8));
    for (const i of s.sold) bitmap[i >> 3]! |= 1 << (i & 7);
    return {
      ...counts(s),
      started_at: s.started_at,
      ends_at: s.ends_at,
      next_starts_at: s.ends_at,
      total_items: s.total_items,
      // Bit i (byte i/8, bit i%8) set: item i is sold. 10,000 items: 1,668 characters.
      sold_bitmap: bitmap.toString('base64'),
      now: new Date(clock.now()).toISOString(),
    };
  }
  const counts = (s: SaleState) => ({
    sale_id: s.id,
    items_sold: s.sold.size,
    items_remaining: s.total_items - s.sold.size,
  });

  function write(client: Client, data: Buffer): boolean {
    if (client.socket.writableLength > STREAM_CLIENT_BUFFER) {
      drop(client, 'slow_client');
      return false;
    }
    client.socket.write(data);
    return true;
  }

  function drop(client: Client, reason: 'slow_client' | 'shutdown') {
    clients.delete(client);
    metrics.sseClientsDropped.inc({ reason });
    // A slow client's queue is freed now; a drained one gets what was queued.
    if (reason === 'slow_client') client.res.destroy();
    else client.res.end();
  }

  /**
   * Writes one frame to each of `targets` still open, yielding to the event
   * loop between slices so that requests are served meanwhile; returns how
   * many were written. Ticks run one after another, so a client's events
   * still arrive in order.
   */
  async function writeAll(targets: Client[], bytes: Buffer): Promise<number> {
    let sent = 0;
    for (let i = 0; i < targets.length; i++) {
      if (i > 0 && i % WRITES_PER_TURN === 0) await nextTurn();
      const client = targets[i]!;
      if (clients.has(client) && write(client, bytes)) sent++;
    }
    return sent;
  }

  /** Sends one event to every up-to-date client and keeps it for resumes; returns its frame. */
  async function broadcast(event: string, data: unknown): Promise<Buffer> {
    seq++;
    const bytes = frame(event, data);
    // Kept first: a stream resuming while this one is written replays it.
    backlog.push({ seq, frame: bytes });
    if (backlog.length > REPLAY_EVENTS) backlog.shift();
    const sent = await writeAll(
      [...clients].filter((c) => !c.pending),
      bytes,
    );
    metrics.sseEventsSent.inc({ event }, sent);
    return bytes;
  }

  /** With the waiting room on: a `queue` event whenever its state moved since the last one. */
  async function tellRoom(r: Room) {
    const state = r.state();
    const key = JSON.stringify(state);
    if (key !== roomSent?.key) roomSent = { key, frame: await broadcast('queue', state) };
  }

  async function load(): Promise<SaleState> {
    const active = await sales.active();
    const info = await sales.info(active.id);
    if (!info) throw new Error(`sale ${active.id} is not in PostgreSQL`);
    const { id, started_at, ends_at, total_items } = info;
    return { id, started_at, ends_at, total_items, sold: new Set(), known: false, soldOutSent: false };
  }

  /** The one shared read: which items Redis holds as sold (undefined while the sale is not loaded there). */
  async function readSold(s: SaleState): Promise<Set<number> | undefined> {
    const keys = saleKeys(config.REDIS_PREFIX, s.id);
    if (!(await redis.loaded(keys))) return undefined;
    // The hash holds a placeholder field "|" besides one field per sold item.
    const size = (await redis.command<number>('hlen', ['HLEN', keys.sold])) - 1;
    if (size === s.sold.size) return s.sold;
    const fields = await redis.command<string[]>('hkeys', ['HKEYS', keys.sold]);
    return new Set(fields.filter((f) => f !== '|').map(Number));
  }

  async function tick() {
    const started = performance.now();
    if (clients.size === 0) return; // nobody to tell: no read
    if (!sale || sale.id !== ids.windowContaining(clock.now()).id) {
      const next = await load();
      // Clients that watched the previous sale hear of the next one; the new
      // sale's sold items follow as soon as they are read.
      if (sale) await broadcast('rotated', snapshot(next));
      sale = next;
    }
    if (room) await tellRoom(room);
    const sold = await readSold(sale);
    if (!sold) return; // not loaded in Redis yet (a new sale, a Redis restart): the scheduler loads it
    if (!sale.known) {
      sale.known = true;
      if (sold.size > 0) {
        sale.sold = sold;
        await broadcast('sale', snapshot(sale));
      }
    } else if (sold !== sale.sold) {
      const added = [...sold].filter((i) => !sale!.sold.has(i));
      const removed = [...sale.sold].filter((i) => !sold.has(i));
      sale.sold = sold;
      if (added.length + removed.length > MAX_LISTED_CHANGES) await broadcast('sale', snapshot(sale));
      // `unsold`: reservations PostgreSQL never confirmed, given back by the reconciler.
      else await broadcast('sold', { ...counts(sale), sold: added, unsold: removed });
    }
    if (!sale.soldOutSent && sale.sold.size >= sale.total_items) {
      sale.soldOutSent = true;
      await broadcast('sold_out', counts(sale));
    }
    const fresh = [...clients].filter((c) => c.pending);
    if (fresh.length > 0) {
      for (const client of fresh) client.pending = false;
      metrics.sseEventsSent.inc({ event: 'sale' }, await writeAll(fresh, frame('sale', snapshot(sale))));
      if (roomSent) metrics.sseEventsSent.inc({ event: 'queue' }, await writeAll(fresh, roomSent.frame));
    }
    if (Date.now() - lastHeartbeat >= config.STREAM_HEARTBEAT_MS) {
      lastHeartbeat = Date.now();
      await writeAll([...clients], HEARTBEAT);
    }
    metrics.sseBroadcastLag.observe((performance.now() - started) / 1000);
  }
  /**
   * The next read starts STREAM_INTERVAL_MS after this one started, not after
   * it ended: a broadcast written in slices while a stampede is served takes
   * a few hundred milliseconds, which would otherwise add to every event's wait.
   */
  function schedule(delay = config.STREAM_INTERVAL_MS) {
    timer = setTimeout(() => {
      const started = Date.now();
      tick()
        .catch((err: unknown) => log.warn({ err }, 'event broadcast skipped: could not read the sale'))
        .finally(() => !closing && schedule(Math.max(0, config.STREAM_INTERVAL_MS - (Date.now() - started))));
    }, delay);
  }

  return {
    start: () => schedule(),
    /** Whether another stream may open now. */
    accepting: () => !closing && clients.size < config.MAX_STREAMS,
    size: () => clients.size,
    /**
     * Adds a stream whose headers are written. With a Last-Event-ID this
     * broadcaster still holds the events after, they are replayed at once;
     * otherwise the client gets a snapshot after the next read.
     */
    add(res: ServerResponse, lastEventId: string | undefined) {
      res.write(`retry: ${RETRY_MS}\n\n`); // sends the headers with it
      const client: Client = { res, socket: res.socket!, pending: true };
      const [from, after] = (lastEventId ?? '').split('-');
      const n = Number(after);
      const oldest = backlog[0]?.seq ?? seq + 1;
      if (from === token && Number.isInteger(n) && n <= seq && n >= oldest - 1) {
        client.pending = false;
        for (const e of backlog) if (e.seq > n) client.socket.write(e.frame);
      }
      clients.add(client);
      res.once('close', () => clients.delete(client));
    },
    /** Ends every stream with a final `closing` event, so none holds a drain; refuses new ones. */
    close() {
      closing = true;
      clearTimeout(timer);
      const bye = frame('closing', { reason: 'shutdown' });
      let sent = 0;
      for (const client of clients) {
        if (!write(client, bye)) continue;
        sent++;
        drop(client, 'shutdown');
      }
      metrics.sseEventsSent.inc({ event: 'closing' }, sent);
    },
  };
}

const HEARTBEAT = Buffer.from(': heartbeat\n\n');

export type Broadcaster = ReturnType<typeof createBroadcaster>;
