/**
 * The live events of GET /sales/active/events, decoded. EventSource resumes
 * by itself (Last-Event-ID); when the service refuses a stream (503 at
 * MAX_STREAMS) it gives up, so the page opens a new one a little later.
 */
export interface SaleSnapshot {
  sale_id: string;
  started_at: string;
  ends_at: string;
  next_starts_at: string;
  total_items: number;
  items_sold: number;
  items_remaining: number;
  sold_bitmap: string;
  now: string;
}
export interface SoldDelta {
  sale_id: string;
  items_sold: number;
  items_remaining: number;
  sold: number[];
  unsold: number[];
}

/** The waiting room's state (with the room on), for the sale people wait for. */
export interface RoomState {
  sale_id: string;
  now_serving: number;
  waiting: number;
  admit_per_sec: number;
  sold_out: boolean;
}

export interface Handlers {
  snapshot(s: SaleSnapshot, rotated: boolean): void;
  sold(d: SoldDelta): void;
  soldOut(): void;
  room(r: RoomState): void;
  status(text: string): void;
}

const REOPEN_MS = 5000;

export function watch(h: Handlers) {
  const source = new EventSource('/sales/active/events');
  const data = <T>(e: Event) => JSON.parse((e as MessageEvent<string>).data) as T;
  source.addEventListener('open', () => h.status('live'));
  source.addEventListener('sale', (e) => h.snapshot(data(e), false));
  source.addEventListener('rotated', (e) => h.snapshot(data(e), true));
  source.addEventListener('sold', (e) => h.sold(data(e)));
  source.addEventListener('sold_out', () => h.soldOut());
  source.addEventListener('queue', (e) => h.room(data(e)));
  source.addEventListener('error', () => {
    if (source.readyState !== EventSource.CLOSED) return h.status('reconnecting…');
    h.status('offline, retrying…');
    setTimeout(() => watch(h), REOPEN_MS);
  });
}

/** The bytes of a snapshot's sold bitmap: item i is sold when bit i%8 of byte i/8 is set. */
export function decodeBitmap(base64: string): Uint8Array {
  const raw = atob(base64);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}
