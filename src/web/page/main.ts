/**
 * The storefront: the active sale, live through one event stream; a page of
 * its items at a time; checkout → purchase → confirmation; my purchases
 * (remembered in this browser, per sale and user). Plain DOM, no framework:
 * the whole page is a few kilobytes.
 */
import { api, ApiError, type Item, type Purchase } from './api.js';
import { decodeBitmap, watch, type SaleSnapshot } from './stream.js';

const PAGE_SIZE = 48;
const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let sale: SaleSnapshot | undefined;
let sold: Uint8Array = new Uint8Array(0);
let clockSkew = 0; // the service's clock minus this browser's
let page = 0;
let items: Item[] = [];
let chosen: { item: Item; code: string } | undefined;

const isSold = (i: number) => ((sold[i >> 3] ?? 0) & (1 << (i & 7))) !== 0;
const indexOf = (itemId: string) => Number(itemId.slice(itemId.lastIndexOf('-') + 1));
const user = () => $<HTMLInputElement>('user-id').value.trim();
const timeOf = (iso: string) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

function say(text: string, error = false) {
  const m = $('message');
  m.textContent = text;
  m.classList.toggle('error', error);
}
const waiting = (s: number) => say(`Many people are buying right now: trying again in ${s} s…`);

function renderHeader() {
  if (!sale) return;
  $('sale-id').textContent = sale.sale_id;
  $('remaining').textContent = String(sale.items_remaining);
  const left = Math.max(0, Date.parse(sale.ends_at) - (Date.now() + clockSkew));
  const m = Math.floor(left / 60_000);
  const s = Math.floor((left % 60_000) / 1000);
  $('ends').textContent = `Ends in ${m}:${String(s).padStart(2, '0')}.`;
  $('next').textContent = `The next sale opens at ${timeOf(sale.next_starts_at)}.`;
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
  const name = document.createElement('span');
  name.textContent = item.name;
  const state = document.createElement('span');
  state.className = 'state';
  button.append(img, name, state);
  button.addEventListener('click', () => void pick(item));
  li.append(button);
  return li;
}

function renderStates() {
  for (const button of $('grid').querySelectorAll<HTMLButtonElement>('button[data-index]')) {
    const index = Number(button.dataset.index);
    const gone = isSold(index);
    button.disabled = gone;
    button.classList.toggle('sold', gone);
    button.querySelector('.state')!.textContent = gone ? 'Sold' : 'Available';
  }
}

async function loadPage() {
  if (!sale) return;
  const total = sale.total_items;
  const pages = Math.max(1, Math.ceil(total / PAGE_SIZE));
  page = Math.min(page, pages - 1);
  const res = await api.items(sale.sale_id, page * PAGE_SIZE, PAGE_SIZE, waiting);
  items = res.items;
  $('grid').replaceChildren(...items.map((item, i) => cell(item, page * PAGE_SIZE + i)));
  $('page').textContent = `Page ${page + 1} of ${pages}`;
  $<HTMLButtonElement>('prev').disabled = page === 0;
  $<HTMLButtonElement>('next-page').disabled = page >= pages - 1;
  renderStates();
}

const mineKey = () => `flashsale:purchases:${sale?.sale_id}:${user()}`;
const mine = (): Purchase['item'][] => JSON.parse(localStorage.getItem(mineKey()) ?? '[]') as Purchase['item'][];
function renderMine() {
  const list = mine().map((item) => {
    const li = document.createElement('li');
    const img = document.createElement('img');
    img.src = item.image_url;
    img.alt = '';
    li.append(img, ` ${item.name}`);
    return li;
  });
  if (list.length === 0) list.push(Object.assign(document.createElement('li'), { textContent: 'Nothing yet.' }));
  $('mine').replaceChildren(...list);
}

function show(panel: 'checkout' | 'confirmation' | undefined) {
  $('checkout').hidden = panel !== 'checkout';
  $('confirmation').hidden = panel !== 'confirmation';
}

/** Checkout: the code for this user and item (the waiting room, when on, comes first: issue 11). */
async function pick(item: Item) {
  if (!$<HTMLFormElement>('user-form').reportValidity()) return;
  say(`Checking out ${item.name}…`);
  try {
    const { code } = await api.checkout(user(), item.id, waiting);
    chosen = { item, code };
    $<HTMLImageElement>('checkout-image').src = item.image_url;
    $('checkout-name').textContent = item.name;
    show('checkout');
    say(`${item.name} is ready: buy it before someone else does.`);
    $('buy').focus();
  } catch (err) {
    fail(err);
  }
}

async function buy() {
  if (!chosen) return;
  const { item, code } = chosen;
  try {
    const bought = await api.purchase(code, waiting);
    localStorage.setItem(mineKey(), JSON.stringify([...mine().filter((i) => i.id !== item.id), bought.item]));
    $<HTMLImageElement>('confirmation-image').src = bought.item.image_url;
    $('confirmation-name').textContent = `${bought.item.name} is yours.`;
    show('confirmation');
    say(`Bought: ${bought.item.name}.`);
    markSold([indexOf(bought.item.id)]);
    renderMine();
  } catch (err) {
    show(undefined);
    fail(err);
  }
  chosen = undefined;
}

function fail(err: unknown) {
  say(err instanceof ApiError ? err.message : 'Something went wrong. Please try again.', true);
}

function markSold(indices: number[], value = true) {
  for (const i of indices) {
    if (i >> 3 >= sold.length) continue;
    if (value) sold[i >> 3]! |= 1 << (i & 7);
    else sold[i >> 3]! &= ~(1 << (i & 7));
  }
  renderStates();
}

function onSnapshot(s: SaleSnapshot, rotated: boolean) {
  const changed = s.sale_id !== sale?.sale_id;
  sale = s;
  clockSkew = Date.parse(s.now) - Date.now();
  sold = decodeBitmap(s.sold_bitmap);
  renderHeader();
  if (rotated) say(`A new sale has opened: ${s.total_items} new items.`);
  if (!changed) return renderStates();
  page = 0;
  show(undefined);
  renderMine();
  loadPage().catch(fail);
}

function start() {
  const input = $<HTMLInputElement>('user-id');
  input.value = localStorage.getItem('flashsale:user') ?? '';
  input.addEventListener('change', () => {
    localStorage.setItem('flashsale:user', user());
    renderMine();
  });
  $('user-form').addEventListener('submit', (e) => e.preventDefault());
  $('buy').addEventListener('click', () => void buy());
  $('cancel').addEventListener('click', () => show(undefined));
  $('prev').addEventListener('click', () => void ((page -= 1), loadPage().catch(fail)));
  $('next-page').addEventListener('click', () => void ((page += 1), loadPage().catch(fail)));
  setInterval(renderHeader, 1000);
  watch({
    snapshot: onSnapshot,
    sold(d) {
      if (!sale || d.sale_id !== sale.sale_id) return;
      sale.items_remaining = d.items_remaining;
      sale.items_sold = d.items_sold;
      renderHeader();
      markSold(d.sold);
      markSold(d.unsold, false);
    },
    soldOut: () => say(`Sold out! The next sale opens at ${sale ? timeOf(sale.next_starts_at) : 'soon'}.`),
    status: (text) => ($('live').textContent = text),
  });
}

start();
