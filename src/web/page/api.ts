/**
 * The service's API as the page uses it. Every refusal becomes an ApiError
 * whose `message` is meant for a person; a 429 is retried by itself after
 * its Retry-After.
 */
export interface Item {
  id: string;
  name: string;
  image_url: string;
  sold: boolean;
}
export interface Purchase {
  item: { id: string; name: string; image_url: string };
  purchased_at: string;
}

export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const HUMAN: Record<string, string> = {
  ITEM_SOLD: 'Sorry, someone else has just bought this item.',
  USER_LIMIT_REACHED: 'You have reached your limit of items in this sale.',
  SALE_ENDED: 'This sale has ended: the next one is opening.',
  CODE_NOT_FOUND: 'This checkout is no longer valid; pick the item again.',
  ITEM_NOT_FOUND: 'This item is not in the sale.',
  UNAVAILABLE: 'The shop is unavailable right now. Please try again in a moment.',
};

/** Waits this long, telling the person so, before a rate-limited request is sent again. */
export type OnWait = (seconds: number) => void;

export async function call<T>(method: string, url: string, onWait: OnWait): Promise<T> {
  for (;;) {
    let res: Response;
    try {
      res = await fetch(url, { method });
    } catch {
      throw new ApiError('UNAVAILABLE', HUMAN.UNAVAILABLE!);
    }
    if (res.ok) return (await res.json()) as T;
    const error = await res
      .json()
      .then((b: { error?: { code?: string; message?: string; field?: string } }) => b.error ?? {})
      .catch(() => ({}) as { code?: string; message?: string; field?: string });
    const code = error.code ?? (res.status >= 500 ? 'UNAVAILABLE' : 'INVALID_REQUEST');
    if (code === 'RATE_LIMITED') {
      const seconds = Math.max(1, Number(res.headers.get('retry-after')) || 1);
      onWait(seconds);
      await new Promise((r) => setTimeout(r, seconds * 1000));
      continue;
    }
    const human = error.field === 'user_id' ? `Your user id ${error.message?.replace(/^.*user_id /, '')}.` : undefined;
    throw new ApiError(code, human ?? HUMAN[code] ?? error.message ?? `The shop answered ${res.status}.`);
  }
}

export const api = {
  items: (sale: string, offset: number, limit: number, onWait: OnWait) =>
    call<{ items: Item[]; total: number }>('GET', `/sales/${sale}/items?offset=${offset}&limit=${limit}`, onWait),
  checkout: (user: string, item: string, onWait: OnWait) =>
    call<{ code: string }>('POST', `/checkout?user_id=${encodeURIComponent(user)}&id=${item}`, onWait),
  purchase: (code: string, onWait: OnWait) => call<Purchase>('POST', `/purchase?code=${code}`, onWait),
};
