/**
 * The storefront: the active sale, live through one event stream; a page of
 * its items at a time (grid.ts); checkout → purchase → confirmation, through
 * the waiting room when it is on (queue.ts); my purchases (remembered in this
 * browser, per sale and user); the signed-in buyer with AUTH=jwt (signin.ts).
 * Plain DOM, no framework: the whole page is a few kilobytes.
 */
import { api, ApiError, credentials, type Item, type Purchase } from './api.js';
import { createGrid } from './grid.js';
import { roomChanged, useTicketOf, withTurn, type Waiting } from './queue.js';
import { signedIn } from './signin.js';
import { decodeBitmap, watch, type SaleSnapshot } from './stream.js';

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;

let sale: SaleSnapshot | undefined;
let sold: Uint8Array = new Uint8Array(0);
let clockSkew = 0; // the service's clock minus this browser's
let chosen: { item: Item; code: string } | undefined;
let picks = 0; // the latest pick wins when several wait for the room at once
let rendered = false;

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
const fail = (err: unknown) => {
  $('queue').hidden = true;
  say(err instanceof ApiError ? err.message : 'Something went wrong. Please try again.', true);
};
const grid = createGrid({ $, isSold, pick: (item) => void pick(item), onWait: waiting, fail });

const room: Waiting = {
  standing(s) {
    $('queue').hidden = false;
    $('queue-position').textContent = `You are number ${s.position} in the waiting room.`;
    $('queue-eta').textContent = `Expected wait: about ${s.eta_seconds} s. This page carries on by itself.`;
  },
  onWait: waiting,
};

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
  $('queue').hidden = true;
  $('checkout').hidden = panel !== 'checkout';
  $('confirmation').hidden = panel !== 'confirmation';
}

/** Checkout: the code for this user and item, after the waiting room when it is on. */
async function pick(item: Item) {
  if (!$<HTMLFormElement>('user-form').reportValidity()) return;
  const pickNo = ++picks;
  say(`Checking out ${item.name}…`);
  try {
    const { code } = await withTurn(user(), room, () => api.checkout(user(), item.id, waiting));
    if (pickNo !== picks) return;
    chosen = { item, code };
    $<HTMLImageElement>('checkout-image').src = item.image_url;
    $('checkout-name').textContent = item.name;
    show('checkout');
    say(`${item.name} is ready: buy it before someone else does.`);
    $('buy').focus();
  } catch (err) {
    if (pickNo === picks) fail(err);
  }
}

async function buy() {
  if (!chosen) return;
  const { item, code } = chosen;
  try {
    const bought = await withTurn(user(), room, () => api.purchase(code, waiting));
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

function markSold(indices: number[], value = true) {
  for (const i of indices) {
    if (i >> 3 >= sold.length) continue;
    if (value) sold[i >> 3]! |= 1 << (i & 7);
    else sold[i >> 3]! &= ~(1 << (i & 7));
  }
  grid.renderStates();
}

function onSnapshot(s: SaleSnapshot, rotated: boolean) {
  const changed = s.sale_id !== sale?.sale_id;
  sale = s;
  clockSkew = Date.parse(s.now) - Date.now();
  sold = decodeBitmap(s.sold_bitmap);
  renderHeader();
  if (rotated) say(`A new sale has opened: ${s.total_items} new items.`);
  if (!changed) return grid.renderStates();
  show(undefined);
  renderMine();
  grid
    .reset(s.sale_id, s.total_items)
    .then(() => {
      // The first render: the sale and its first page of items on screen (measured by test/web.test.ts).
      if (!rendered) performance.mark('flashsale:first-render');
      rendered = true;
    })
    .catch(fail);
}

function start() {
  const input = $<HTMLInputElement>('user-id');
  const buyer = signedIn();
  if (buyer) {
    credentials.token = buyer.token;
    input.value = buyer.sub;
    input.readOnly = true;
    $('user-hint').textContent = 'signed in: your user id comes from your sign-in';
  } else {
    input.value = localStorage.getItem('flashsale:user') ?? '';
    input.addEventListener('change', () => {
      localStorage.setItem('flashsale:user', user());
      useTicketOf(user());
      renderMine();
    });
  }
  useTicketOf(user());
  $('user-form').addEventListener('submit', (e) => e.preventDefault());
  $('buy').addEventListener('click', () => void buy());
  $('cancel').addEventListener('click', () => show(undefined));
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
    room: roomChanged,
    status: (text) => ($('live').textContent = text),
  });
}

start();
