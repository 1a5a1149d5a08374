/**
 * The hot lane's front (issue 16): every connection is read here first, below
 * Node's HTTP server, and the requests the lane takes (lane.ts) are parsed,
 * answered and written here, without Node's HTTP machinery: its parser
 * callbacks, a request and a response stream per request, their events and
 * ticks. That machinery was about a quarter of a sold-out checkout's CPU
 * (docs/ARCHITECTURE.md, "The hot lane").
 *
 * The front reads a strict subset of HTTP/1.1 and no more: a whole request
 * head in what has been read, `GET` or `POST`, an origin-form target,
 * `HTTP/1.1`, header names that are tokens and values of visible ASCII, each
 * header once, no `Connection` but keep-alive, no `Expect` or `Upgrade`. The
 * first request that is anything else, that the lane does not take (a body, a
 * route of Fastify's), or whose head has not all arrived, hands the
 * connection to Node's HTTP server for the rest of its life, with every byte
 * not yet answered put back first: Node parses them as if it had read them
 * itself, and stays the reference for the protocol (errors, limits, timeouts,
 * bodies). So the front refuses nothing; it answers, one at a time and in
 * order, only what it is sure of.
 */
import { STATUS_CODES, type OutgoingHttpHeaders, type Server } from 'node:http';
import type { Socket } from 'node:net';

import { AppError } from '../errors.js';
import { answerOnSocket } from './errors.js';
import type { Lane, LaneRequest, LaneResponse } from './lane.js';

/**
 * A head the front reads, from its first byte to its blank line: the request
 * line and each header line, validated in one pass and with no allocation.
 * Values hold no CR or LF, so the match ends at the head's first blank line.
 */
const HEAD = /(?:GET|POST) \/[!-~]* HTTP\/1\.1(?:\r\n[!#$%&'*+.^_`|~0-9A-Za-z-]+:[\t -~]*)*(?=\r\n\r\n)/y;

/**
 * The request whose head is text[from, end) (`end`: where its blank line
 * starts), if it is one the front reads; else undefined. The text is latin1:
 * one character a byte, so a byte outside ASCII fails the pattern.
 */
function parseHead(text: string, from: number, end: number, socket: Socket): LaneRequest | undefined {
  HEAD.lastIndex = from;
  if (!HEAD.test(text) || HEAD.lastIndex !== end) return undefined;
  const space = text.indexOf(' ', from);
  const url = text.slice(space + 1, text.indexOf(' ', space + 1));
  const headers: Record<string, string> = {};
  let eol = text.indexOf('\r\n', space);
  while (eol < end) {
    const start = eol + 2;
    eol = text.indexOf('\r\n', start);
    const colon = text.indexOf(':', start);
    const name = text.slice(start, colon).toLowerCase();
    const value = text.slice(colon + 1, eol).trim(); // the pattern let only spaces and tabs around it
    if (Object.hasOwn(headers, name) || name === '__proto__' || name === 'expect' || name === 'upgrade')
      return undefined;
    if (name === 'connection' && value.toLowerCase() !== 'keep-alive') return undefined;
    headers[name] = value;
  }
  return { method: text.slice(from, space), url, headers, socket };
}

/** `Date: …\r\n`, as Node's server writes it, made once a second. */
let dateLine = '';
let dateExpires = 0;
function date() {
  const now = Date.now();
  if (now >= dateExpires) {
    dateLine = `Date: ${new Date(now).toUTCString()}\r\n`;
    dateExpires = now - (now % 1000) + 1000;
  }
  return dateLine;
}

interface FrontState {
  lane: Lane;
  /** The end of every keep-alive answer's head, as Node's server writes it. */
  keepAlive: string;
  keepAliveTimeoutMs: number;
  closing: boolean;
  /** The connections the front has, by socket: undefined until their first bytes name a lane route. */
  owned: Map<Socket, Connection | undefined>;
}

/** One connection while the front has it; it is its own LaneResponse (one answer at a time). */
class Connection implements LaneResponse {
  /** Bytes read after a request whose answer is pending (latin1), served once it is written. */
  private unread = '';
  private busy = false;
  /** Inside serve(): an answer written now lets serve() go on, rather than starting it again. */
  private serving = false;
  private paused = false;
  private served = 0;
  /** The client has sent its FIN: close once the answers owed are written. */
  private ended = false;
  private head = '';
  private readonly onData = (chunk: Buffer) => this.read(chunk);
  private readonly onEnd = () => {
    this.ended = true;
    if (!this.busy) this.socket.end();
  };
  private readonly onTimeout = () => this.timeout();
  private readonly onError = () => this.socket.destroy();
  private readonly onClose = () => this.front.owned.delete(this.socket);

  constructor(
    private readonly front: FrontState,
    private readonly socket: Socket,
    private readonly toNode: () => void,
  ) {
    socket.on('data', this.onData);
    socket.on('end', this.onEnd);
    socket.on('timeout', this.onTimeout);
    socket.on('error', this.onError);
    socket.on('close', this.onClose);
  }

  get idle() {
    return !this.busy;
  }

  writeHead(status: number, headers: OutgoingHttpHeaders) {
    let head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\n`;
    for (const name in headers) head += `${name}: ${headers[name] as string}\r\n`;
    const closing = this.front.closing || this.ended;
    this.head = head + date() + (closing ? 'Connection: close\r\n\r\n' : this.front.keepAlive);
    return this;
  }

  end(body: string) {
    const { socket } = this;
    this.busy = false;
    if (this.served++ === 0) socket.setTimeout(this.front.keepAliveTimeoutMs);
    if (socket.destroyed) return;
    socket.write(this.head + body);
    if (this.front.closing || this.ended) {
      this.unread = '';
      socket.end();
    } else if (!this.serving) this.next();
  }

  /** Stops serving: what remains of `text` and everything after it goes to Node's HTTP server. */
  private handOff(rest: string) {
    const { socket } = this;
    this.front.owned.delete(socket);
    socket.removeListener('data', this.onData);
    socket.removeListener('end', this.onEnd);
    socket.removeListener('timeout', this.onTimeout);
    socket.removeListener('error', this.onError);
    socket.removeListener('close', this.onClose);
    socket.setTimeout(0);
    if (rest) socket.unshift(Buffer.from(rest, 'latin1'));
    if (this.paused) {
      this.paused = false;
      socket.resume();
    }
    this.toNode();
  }

  private read(chunk: Buffer) {
    this.receive(chunk.toString('latin1'));
  }

  receive(latin1: string) {
    const text = this.unread + latin1;
    this.unread = '';
    if (this.busy) this.wait(text);
    else this.serve(text);
  }

  /** Holds what has been read until the pending answer is written, reading no more meanwhile. */
  private wait(text: string) {
    this.unread = text;
    if (!this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  private serve(text: string) {
    const { socket } = this;
    this.serving = true;
    let at = 0;
    while (at < text.length) {
      const end = text.indexOf('\r\n\r\n', at);
      // The request line's "METHOD /path", before the query, names a lane route, or nothing is parsed:
      // a connection for anything else (a page, a stream) goes to Node's server leaving no garbage.
      const query = text.indexOf('?', at);
      const request =
        end < 0 || query < 0 || query > end || !this.front.lane.routes(text.slice(at, query))
          ? undefined
          : parseHead(text, at, end, socket);
      this.busy = true;
      if (!request || !this.front.lane.take(request, this)) {
        this.busy = false;
        this.serving = false;
        return this.handOff(text.slice(at));
      }
      at = end + 4;
      if (!socket.writable) break; // closed, or closing after this answer
      // An answer still to come, or a client not reading its answers: the rest waits.
      if (this.busy || socket.writableNeedDrain) {
        this.wait(text.slice(at));
        if (!this.busy) socket.once('drain', () => this.next());
        break;
      }
    }
    this.serving = false;
  }

  /** After an answer: serves what was read meanwhile, and reads on. */
  private next() {
    const { socket } = this;
    if (socket.writableNeedDrain) {
      this.wait(this.unread);
      socket.once('drain', () => this.next());
      return;
    }
    const text = this.unread;
    this.unread = '';
    if (this.paused) {
      this.paused = false;
      socket.resume();
    }
    if (text) this.serve(text);
    if (this.ended && !this.busy && this.front.owned.has(socket)) socket.end();
  }

  /** Node's timeouts, for a connection that is not busy: a silent new one gets 408, an idle kept-alive one is closed. */
  private timeout() {
    if (this.busy) return;
    if (this.served === 0) answerOnSocket(this.socket, new AppError('REQUEST_TIMEOUT'));
    else this.socket.destroy();
  }
}

export function createFront(lane: Lane) {
  const front: FrontState = { lane, keepAlive: '', keepAliveTimeoutMs: 0, closing: false, owned: new Map() };
  return {
    /**
     * Puts the front before Node's HTTP server on every connection the server
     * accepts, with the server's timeouts: `requestTimeoutMs` for a new
     * connection's first request, `keepAliveTimeoutMs` between requests.
     */
    install(server: Server, timeouts: { keepAliveTimeoutMs: number; requestTimeoutMs: number }) {
      front.keepAliveTimeoutMs = timeouts.keepAliveTimeoutMs;
      front.keepAlive = `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(timeouts.keepAliveTimeoutMs / 1000)}\r\n\r\n`;
      const listeners = server.listeners('connection') as ((socket: Socket) => void)[];
      if (listeners.length !== 1) throw new Error('the front must be installed on a new HTTP server');
      const [node] = listeners as [(socket: Socket) => void];
      server.removeListener('connection', node);
      const toNode = (socket: Socket) => node.call(server, socket);

      // Until its first bytes, a connection has these listeners, shared by all
      // (`this` is the socket): a connection for anything but the lane (a
      // page, an event stream) goes to Node's server having cost no object.
      function silent(this: Socket) {
        answerOnSocket(this, new AppError('REQUEST_TIMEOUT')); // as Node's server answers a silent one
      }
      function broken(this: Socket) {
        this.destroy();
      }
      function ended(this: Socket) {
        this.end();
      }
      function gone(this: Socket) {
        front.owned.delete(this);
      }
      function first(this: Socket, chunk: Buffer) {
        this.removeListener('data', first);
        this.removeListener('timeout', silent);
        this.removeListener('error', broken);
        this.removeListener('end', ended);
        this.removeListener('close', gone);
        const text = chunk.toString('latin1');
        const query = text.indexOf('?');
        const line = text.indexOf('\r\n');
        if (query < 0 || line < 0 || query > line || !lane.routes(text.slice(0, query))) {
          front.owned.delete(this);
          this.setTimeout(0);
          this.unshift(chunk);
          return toNode(this);
        }
        const connection = new Connection(front, this, () => toNode(this));
        front.owned.set(this, connection);
        connection.receive(text);
      }
      server.prependListener('connection', (socket: Socket) => {
        front.owned.set(socket, undefined);
        socket.setTimeout(timeouts.requestTimeoutMs);
        socket.on('data', first);
        socket.on('timeout', silent);
        socket.on('error', broken);
        socket.on('end', ended);
        socket.on('close', gone);
      });
    },
    /** Whether the front still has this connection (Node's server does not know it yet). */
    owns: (socket: Socket) => front.owned.has(socket),
    /** The drain: idle connections close now, the others once their answer is written. */
    close() {
      front.closing = true;
      for (const [socket, connection] of front.owned) if (!connection || connection.idle) socket.destroy();
    },
  };
}

export type Front = ReturnType<typeof createFront>;
