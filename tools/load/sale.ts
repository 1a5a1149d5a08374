/** What the service says of the sale: the active one at the start, and its state before and after the run. */
import type { SaleState } from './audit.js';
import { backoffMs, type Client } from './client.js';

export interface ActiveSale {
  id: string;
  endsAt: number;
  totalItems: number;
}

export async function activeSale(client: Client, origin: string): Promise<ActiveSale> {
  const res = await client.request('GET', '/sales/active').catch((error: Error) => {
    throw new Error(`cannot reach ${origin}: ${error.message}`);
  });
  if (res.status !== 200) throw new Error(`no active sale at ${origin}: GET /sales/active answered ${describe(res)}`);
  const { id, ends_at, total_items } = res.body;
  const endsAt = Date.parse(String(ends_at));
  if (typeof id !== 'string' || Number.isNaN(endsAt) || typeof total_items !== 'number') {
    throw new Error(`${origin} is not a flash-sale service: GET /sales/active answered ${JSON.stringify(res.body)}`);
  }
  return { id, endsAt, totalItems: total_items };
}

/** The sale's `items_sold` and every item flagged sold, read page by page (1000 is the API's largest page). */
export async function saleState(client: Client, sale: ActiveSale): Promise<SaleState> {
  const get = async (path: string) => {
    const res = await client.request('GET', path);
    if (res.status !== 200) throw new Error(`GET ${path} answered ${describe(res)}`);
    return res.body;
  };
  const { items_sold } = await get(`/sales/${sale.id}`);
  const soldItems = new Set<string>();
  for (let offset = 0; offset < sale.totalItems; offset += 1000) {
    const page = (await get(`/sales/${sale.id}/items?offset=${offset}&limit=1000`)) as {
      items: { id: string; sold: boolean }[];
    };
    for (const item of page.items) if (item.sold) soldItems.add(item.id);
  }
  return { itemsSold: items_sold as number, soldItems };
}

/**
 * The sale's state after the run. The service may be coming back from an
 * outage, so it gets `ms` to answer (with backoff between tries); after that,
 * the error is the answer, for the audit to report.
 */
export async function saleStateAfter(client: Client, sale: ActiveSale, ms = 10_000): Promise<SaleState | Error> {
  const deadline = Date.now() + ms;
  for (let k = 0; ; k++) {
    try {
      return await saleState(client, sale);
    } catch (error) {
      const wait = backoffMs(k);
      if (Date.now() + wait > deadline) return error as Error;
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}

function describe(res: { status: number; body: Record<string, unknown> }): string {
  const error = res.body.error as { code?: string } | undefined;
  return error?.code ? `${res.status} ${error.code}` : String(res.status);
}
