/**
 * Raw TCP clients, for requests no HTTP client library will send: half-sent,
 * malformed, abandoned or never read.
 */
import { connect, type Socket } from 'node:net';

export interface RawSocket {
  socket: Socket;
  /** Everything received so far. */
  received(): string;
  /** Resolves once the connection is closed, by either side. */
  closed: Promise<void>;
  send(bytes: string): Promise<void>;
}

/** A connected socket that collects what it receives (unless `read` is false: a client that never reads). */
export async function openSocket(port: number, { read = true } = {}): Promise<RawSocket> {
  const socket = connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  let received = '';
  if (read) socket.on('data', (d: Buffer) => (received += d.toString()));
  else socket.pause();
  socket.on('error', () => {}); // a reset is a close too; `closed` reports it
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  return {
    socket,
    received: () => received,
    closed,
    send: (bytes) => new Promise((resolve, reject) => socket.write(bytes, (err) => (err ? reject(err) : resolve()))),
  };
}

/** Sends raw bytes and returns the whole answer (the server closes the connection). */
export async function raw(port: number, request: string): Promise<string> {
  const s = await openSocket(port);
  await s.send(request);
  await s.closed;
  return s.received();
}
