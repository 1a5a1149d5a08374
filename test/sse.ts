/**
 * A small Server-Sent Events client for tests: opens a stream with node:http,
 * parses its frames, and lets a test wait for the event it expects.
 */
import { request, type IncomingMessage } from 'node:http';

export interface SseEvent {
  id?: string;
  event: string;
  data: Record<string, unknown>;
}

export interface SseClient {
  status: number;
  headers: IncomingMessage['headers'];
  events: SseEvent[];
  /** Comment lines (heartbeats) received. */
  comments: number;
  ended: Promise<void>;
  /** Resolves with the first event (from the start of the stream) matching, waiting up to `ms`. */
  next(match: (e: SseEvent) => boolean, ms?: number): Promise<SseEvent>;
  close(): void;
}

/** Opens /sales/active/events on 127.0.0.1:`to`, or on the Unix socket at path `to`. */
export function openStream(to: number | string, headers: Record<string, string> = {}): Promise<SseClient> {
  const where = typeof to === 'number' ? { host: '127.0.0.1', port: to } : { socketPath: to };
  return new Promise((resolve, reject) => {
    const req = request({ ...where, path: '/sales/active/events', headers }, (res) => {
      const events: SseEvent[] = [];
      const waiters = new Set<() => void>();
      let buffer = '';
      const client: SseClient = {
        status: res.statusCode!,
        headers: res.headers,
        events,
        comments: 0,
        ended: new Promise((done) => res.once('close', () => done())),
        next(match, ms = 5000) {
          return new Promise((found, fail) => {
            const check = () => {
              const hit = events.find(match);
              if (!hit) return false;
              waiters.delete(check);
              clearTimeout(timer);
              found(hit);
              return true;
            };
            const timer = setTimeout(() => {
              waiters.delete(check);
              fail(new Error(`no matching event within ${ms} ms; got ${JSON.stringify(events)}`));
            }, ms);
            if (!check()) waiters.add(check);
          });
        },
        close: () => req.destroy(),
      };
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const fields: Record<string, string> = {};
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) client.comments++;
            const colon = line.indexOf(':');
            if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trimStart();
          }
          if (fields.data !== undefined) {
            events.push({ id: fields.id, event: fields.event ?? 'message', data: JSON.parse(fields.data) });
          }
        }
        for (const w of [...waiters]) w();
      });
      res.on('error', () => {});
      resolve(client);
    });
    req.on('error', reject);
    req.end();
  });
}

/** Whether bit `index` of a snapshot's base64 sold bitmap is set. */
export function soldInBitmap(bitmap: string, index: number): boolean {
  const bytes = Buffer.from(bitmap, 'base64');
  return ((bytes[index >> 3] ?? 0) & (1 << (index & 7))) !== 0;
}
