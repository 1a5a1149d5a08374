/**
 * The items of the sale, one page at a time: 10,000 items are 209 pages of
 * 48, so the DOM never holds more than 48 cells and a sold event touches at
 * most 48 buttons. Paging stays smooth: a page already seen or prefetched (the
 * next one, fetched while the person looks at this one) renders without a
 * round trip, a page asked for while another is loading wins over it (no
 * late answer overwrites a newer page), and any page is one jump away
 * (First, Previous, a page number, Next, Last).
 */
import { api, type Item, type OnWait } from './api.js';

export const PAGE_SIZE = 48;
/** Pages of item data kept per sale: items never change, only their sold state (from the stream). */
const CACHED_PAGES = 16;

export interface Grid {
  /** A new sale: forget its items, show its first page. */
  reset(saleId: string, total: number): Promise<void>;
  go(page: number): Promise<void>;
  renderStates(): void;
}

export function createGrid(deps: {
  $: (id: string) => HTMLElement;
  isSold(index: number): boolean;
  pick(item: Item): void;
  onWait: OnWait;
  fail(err: unknown): void;
}): Grid {
  const { $ } = deps;
  const pageInput = $('page-input') as HTMLInputElement;
  let sale = '';
  let pages = 1;
  let page = 0;
  let shown = -1; // the request whose page is on screen; a later one replaces it
  const cache = new Map<number, Promise<Item[]>>();

  function fetchPage(p: number): Promise<Item[]> {
    let items = cache.get(p);
    if (!items) {
      items = api.items(sale, p * PAGE_SIZE, PAGE_SIZE, deps.onWait).then((r) => r.items);
      items.catch(() => cache.delete(p)); // a failed page is asked again next time
      cache.set(p, items);
      if (cache.size > CACHED_PAGES) cache.delete(cache.keys().next().value!);
    }
    return items;
  }

  function cell(item: Item, index: number): HTMLLIElement {
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(index);
    const img = document.createElement('img');
    img.src = item.image_url;
    img.alt = '';
    img.loading = 'lazy';
    img.width = img.height = 96;
    const name = document.createElement('span');
    name.textContent = item.name;
    const state = document.createElement('span');
    state.className = 'state';
    button.append(img, name, state);
    button.addEventListener('click', () => deps.pick(item));
    li.append(button);
    return li;
  }

  function renderStates() {
    for (const button of $('grid').querySelectorAll<HTMLButtonElement>('button[data-index]')) {
      const gone = deps.isSold(Number(button.dataset.index));
      button.disabled = gone;
      button.classList.toggle('sold', gone);
      button.querySelector('.state')!.textContent = gone ? 'Sold' : 'Available';
    }
  }

  async function go(next: number) {
    page = Math.max(0, Math.min(next, pages - 1));
    const request = ++shown;
    const forSale = sale;
    const items = await fetchPage(page);
    if (request !== shown || forSale !== sale) return; // the person has moved on
    $('grid').replaceChildren(...items.map((item, i) => cell(item, page * PAGE_SIZE + i)));
    pageInput.value = String(page + 1);
    ($('first') as HTMLButtonElement).disabled = ($('prev') as HTMLButtonElement).disabled = page === 0;
    ($('last') as HTMLButtonElement).disabled = ($('next-page') as HTMLButtonElement).disabled = page >= pages - 1;
    renderStates();
    if (page + 1 < pages) fetchPage(page + 1).catch(() => undefined); // ready before Next is pressed
  }

  const goTo = (target: () => number) => () => void go(target()).catch(deps.fail);
  $('first').addEventListener(
    'click',
    goTo(() => 0),
  );
  $('prev').addEventListener(
    'click',
    goTo(() => page - 1),
  );
  $('next-page').addEventListener(
    'click',
    goTo(() => page + 1),
  );
  $('last').addEventListener(
    'click',
    goTo(() => pages - 1),
  );
  pageInput.addEventListener(
    'change',
    goTo(() => (Math.trunc(Number(pageInput.value)) || 1) - 1),
  );

  return {
    async reset(saleId, total) {
      sale = saleId;
      cache.clear();
      pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
      pageInput.max = String(pages);
      $('pages').textContent = `of ${pages}`;
      await go(0);
    },
    go,
    renderStates,
  };
}
