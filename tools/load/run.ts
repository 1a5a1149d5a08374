/**
 * The load engine: N simulated users, each browsing, checking out and buying
 * over one keep-alive undici pool, for a fixed time. Latencies go into one
 * HDR histogram per endpoint.
 */
import * as hdr from 'hdr-histogram-js';
import { Pool } from 'undici';

import type { Bought } from './audit.js';
import { behaviourOf, popularIndex, type Profile } from './profiles.js';

export type Endpoint = 'items' | 'checkout' | 'purchase';

export interface EndpointStats {
  statuses: Record<string, number>;
  histogram: hdr.Histogram;
}

export interface RunResult {
  saleId: string;
  totalItems: number;
  seconds: number;
  stats: Record<Endpoint, EndpointStats>;
  bought: Bought[];
}

export interface RunOptions {
  url: string;
  profile: Profile;
  users: number;
  duration: number;
  connections?: number;
  onTick?: (elapsed: number, requests: number, errors: number) => void;
}

export async function run(options: RunOptions): Promise<RunResult> {
  const pool = new Pool(options.url, { connections: options.connections ?? Math.min(options.users, 128) });
  const request = async (method: 'GET' | 'POST', path: string) => {
    const res = await pool.request({ method, path });
    return { status: res.statusCode, headers: res.headers, body: (await res.body.json()) as Record<string, unknown> };
  };
  const sale = (await request('GET', '/sales/active')).body as { id: string; total_items: number; ends_at: string };
  const stats = Object.fromEntries(
    (['items', 'checkout', 'purchase'] as Endpoint[]).map((e) => [
      e,
      {
        statuses: {},
        histogram: hdr.build({
          lowestDiscernibleValue: 1,
          highestTrackableValue: 60_000_000,
          numberOfSignificantValueDigits: 3,
        }),
      },
    ]),
  ) as Record<Endpoint, EndpointStats>;
  const bought = new Map<string, Bought>();
  let requests = 0;
  let errors = 0;

  const timed = async (endpoint: Endpoint, method: 'GET' | 'POST', path: string) => {
    const t0 = process.hrtime.bigint();
    const res = await request(method, path).catch(() => ({
      status: 0,
      headers: {},
      body: {} as Record<string, unknown>,
    }));
    const s = stats[endpoint];
    s.histogram.recordValue(Number((process.hrtime.bigint() - t0) / 1000n));
    s.statuses[res.status] = (s.statuses[res.status] ?? 0) + 1;
    requests++;
    if (res.status === 0 || res.status >= 500) errors++;
    if (res.status === 429) {
      // Well-behaved clients wait as long as the service asks.
      const wait = Number((res.headers as Record<string, unknown>)['retry-after'] ?? 1);
      await new Promise((r) => setTimeout(r, wait * 1000));
    }
    return res;
  };

  const started = Date.now();
  const deadline = started + options.duration * 1000;
  const ticker = setInterval(() => options.onTick?.((Date.now() - started) / 1000, requests, errors), 1000);
  const pad = (i: number) => String(i).padStart(Math.max(5, String(sale.total_items - 1).length), '0');
  await Promise.all(
    Array.from({ length: options.users }, async (_, u) => {
      const behaviour = behaviourOf(options.profile, u, options.users);
      const userId = `load-${process.pid}-${u}`;
      while (Date.now() < deadline) {
        const index = popularIndex(sale.total_items);
        await timed('items', 'GET', `/sales/${sale.id}/items?offset=${Math.max(0, index - 10)}&limit=20`);
        if (Math.random() >= behaviour.checkout) continue;
        const itemId = `${sale.id}-${pad(index)}`;
        const co = await timed('checkout', 'POST', `/checkout?user_id=${userId}&id=${itemId}`);
        const code = co.body.code as string | undefined;
        if (!code || Math.random() >= behaviour.purchase) continue;
        const pu = await timed('purchase', 'POST', `/purchase?code=${code}`);
        if (pu.status === 200) bought.set(code, { code, userId, itemId });
      }
    }),
  );
  clearInterval(ticker);
  await pool.close();
  return {
    saleId: sale.id,
    totalItems: sale.total_items,
    seconds: (Date.now() - started) / 1000,
    stats,
    bought: [...bought.values()],
  };
}

/** What the service says of the sale: its count and every item flagged sold. */
export async function saleState(url: string, saleId: string, totalItems: number) {
  const get = async (path: string) => (await fetch(`${url}${path}`)).json() as Promise<Record<string, unknown>>;
  const sale = await get(`/sales/${saleId}`);
  const soldItems = new Set<string>();
  for (let offset = 0; offset < totalItems; offset += 1000) {
    const page = (await get(`/sales/${saleId}/items?offset=${offset}&limit=1000`)) as {
      items: { id: string; sold: boolean }[];
    };
    for (const item of page.items) if (item.sold) soldItems.add(item.id);
  }
  return { itemsSold: sale.items_sold as number, soldItems };
}
