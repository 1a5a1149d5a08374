import type { Sales } from './sales.js';

/**
 * How many items a sale has, from the sales table, or undefined if it never
 * existed. A sale's existence and size never change once created, so a found
 * sale is remembered for good (one entry per sale window there ever was). A
 * missing one is not remembered: the sale of an upcoming window is created any
 * moment, and asking again costs one primary-key lookup, as GET /sales/{id} does.
 */
export function createSaleSizes(sales: Pick<Sales, 'info'>) {
  const known = new Map<string, Promise<number | undefined>>();
  return function totalItems(saleId: string): Promise<number | undefined> {
    let size = known.get(saleId);
    if (!size) {
      size = sales.info(saleId).then((sale) => sale?.total_items);
      known.set(saleId, size); // concurrent requests for one sale share one lookup
      size.then(
        (total) => total === undefined && known.delete(saleId),
        () => known.delete(saleId),
      );
    }
    return size;
  };
}
