/**
 * The watchers of `npm run bench -- --streams`, in their own process (wrk
 * blocks the bench's): opens N streams on GET /sales/active/events, then buys
 * one probe item every 200 ms (items the stampede never touches) and records,
 * for every stream, how long after the purchase was sent its `sold` event (or
 * a snapshot with its bit set) arrived. Talks to the bench over IPC:
 * {ready} once every stream has its first snapshot, {result} on "stop".
 */
import { connect } from 'node:net';

const [base, sale, countArg, firstProbeArg] = process.argv.slice(2) as [string, string, string, string];
const url = new URL(base);
const count = Number(countArg);
let nextProbe = Number(firstProbeArg);
/** Probe item index → when its purchase was sent (performance.now()). */
const sent = new Map<number, number>();
const latencies: number[] = [];
let snapshots = 0;
let ended = 0;

/**
 * One stream on a plain TCP socket: the watchers stand in for browsers on
 * other machines, so on these shared cores they should cost as little as a
 * client can (node:http's client took about a third more CPU). The service
 * sends a stream unframed (no chunked encoding), so after the headers the
 * bytes are the events.
 */
function watch() {
  const seen = new Set<number>();
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  socket.setEncoding('utf8');
  socket.write(`GET /sales/active/events HTTP/1.1\r\nHost: ${url.host}\r\nAccept: text/event-stream\r\n\r\n`);
  let buffer = '';
  let streaming = false;
  let first = true;
  socket.on('data', (chunk: string) => {
    buffer += chunk;
    if (!streaming) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffer.slice(0, end);
      if (!head.startsWith('HTTP/1.1 200') || /^transfer-encoding:/im.test(head)) {
        process.stderr.write(`watchers: unexpected stream answer:\n${head}\n`);
        socket.destroy();
        return;
      }
      buffer = buffer.slice(end + 4);
      streaming = true;
    }
    let end: number;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const event = /^event: (\w+)$/m.exec(frame)?.[1];
      const data = /^data: (.*)$/m.exec(frame)?.[1];
      if (!event || !data) continue;
      if (event === 'sale' && first) {
        first = false;
        if (++snapshots === count) process.send!({ ready: true });
      }
      if (sent.size === 0 || (event !== 'sold' && event !== 'sale')) continue;
      const body = JSON.parse(data) as { sold?: number[]; sold_bitmap?: string };
      const bitmap = body.sold_bitmap ? Buffer.from(body.sold_bitmap, 'base64') : undefined;
      const isSold = (i: number) => ((bitmap![i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
      for (const index of bitmap ? [...sent.keys()].filter(isSold) : body.sold!) {
        const at = sent.get(index);
        if (at === undefined || seen.has(index)) continue;
        seen.add(index);
        latencies.push(performance.now() - at);
      }
    }
  });
  socket.on('error', () => {}); // counted by 'close', which follows
  socket.on('close', () => ended++);
}

async function probe() {
  const index = nextProbe++;
  const user = `probe${index}`;
  const item = `${sale}-${String(index).padStart(5, '0')}`;
  const checkout = await fetch(`${base}/checkout?user_id=${user}&id=${item}`, { method: 'POST' });
  const { code } = (await checkout.json()) as { code: string };
  sent.set(index, performance.now());
  await fetch(`${base}/purchase?code=${code}`, { method: 'POST' });
}

// Open in batches, so the listen backlog is not what is measured.
for (let i = 0; i < count; i++) {
  watch();
  if (i % 250 === 249) await new Promise((r) => setTimeout(r, 20));
}
let probing: NodeJS.Timeout | undefined;
process.on('message', (m: string) => {
  if (m === 'probe') probing = setInterval(() => void probe().catch(() => {}), 200);
  if (m !== 'stop') return;
  clearInterval(probing);
  // Let the last probe's event reach every stream before answering.
  setTimeout(() => {
    const sorted = latencies.sort((a, b) => a - b);
    const q = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
    const expected = sent.size * count;
    process.send!({
      result: { p50: q(0.5), p99: q(0.99), max: sorted.at(-1), received: sorted.length, expected, ended },
    });
    setTimeout(() => process.exit(0), 100);
  }, 1500);
});
