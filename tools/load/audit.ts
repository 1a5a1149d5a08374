/**
 * The end-of-sale audit: what the load tool saw against what the service
 * says. Pure, so a test can feed it a doctored observation.
 */
export interface Bought {
  code: string;
  userId: string;
  itemId: string;
}

export interface SaleState {
  itemsSold: number;
  soldItems: Set<string>;
}

export interface AuditResult {
  ok: boolean;
  confirmed: number;
  problems: string[];
}

/**
 * `exclusive`: the tool was the only buyer of this sale, so every sold item
 * must be one it saw confirmed, and the counts must be equal.
 */
export function audit(bought: Bought[], sale: SaleState, userLimit: number, exclusive: boolean): AuditResult {
  const problems: string[] = [];
  const byItem = new Map<string, string>();
  const perUser = new Map<string, Set<string>>();
  for (const b of bought) {
    const owner = byItem.get(b.itemId);
    if (owner !== undefined && owner !== b.code) problems.push(`item ${b.itemId} was confirmed to two codes`);
    byItem.set(b.itemId, b.code);
    perUser.set(b.userId, (perUser.get(b.userId) ?? new Set()).add(b.itemId));
  }
  for (const [user, items] of perUser) {
    if (items.size > userLimit) problems.push(`user ${user} was confirmed ${items.size} items, limit ${userLimit}`);
  }
  for (const item of byItem.keys()) {
    if (!sale.soldItems.has(item)) problems.push(`item ${item} was confirmed but the service lists it unsold`);
  }
  if (exclusive && sale.itemsSold !== byItem.size) {
    problems.push(`the service counts ${sale.itemsSold} items sold, the tool saw ${byItem.size} confirmed`);
  }
  if (sale.soldItems.size !== sale.itemsSold) {
    problems.push(`items_sold is ${sale.itemsSold} but ${sale.soldItems.size} items are flagged sold`);
  }
  return { ok: problems.length === 0, confirmed: byItem.size, problems };
}
