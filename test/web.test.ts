import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';

import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

import type { App } from '../src/app.js';
import { offsetClock } from '../src/clock.js';
import { itemId, json, testEnv, type TestEnv } from './helpers.js';

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const SCREENSHOT = new URL('../../docs/storefront.png', import.meta.url);
/** Debian's chromium (scripts/install-tools.mjs); the flags keep it off the network and out of the sandbox it cannot have here. */
const CHROMIUM = {
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
};

describe('GET / (the storefront)', () => {
  let env: TestEnv;
  let app: App;
  let base: string;
  let sale: string;
  let browser: Browser;
  const clock = offsetClock();
  const contexts: BrowserContext[] = [];
  const problems: string[] = [];

  /** A new browser (own storage, as another person) on the page, with the user id typed in. */
  async function shopper(userId: string): Promise<Page> {
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    contexts.push(context);
    const page = await context.newPage();
    page.on('pageerror', (err) => problems.push(`${userId}: ${err.message}`));
    page.on('console', (m) => {
      // Chromium logs every non-2xx fetch; the refusals these tests provoke on purpose are expected.
      const expected = /Failed to load resource: the server responded with a status of 409/.test(m.text());
      if (m.type() === 'error' && !expected) problems.push(`${userId}: ${m.text()}`);
    });
    await page.goto(base);
    await page.fill('#user-id', userId);
    await page.press('#user-id', 'Tab');
    await page.waitForFunction((s) => document.getElementById('sale-id')?.textContent === s, sale);
    await page.waitForSelector('#grid button[data-index="0"]');
    return page;
  }
  const cellOf = (page: Page, index: number) => page.locator(`#grid button[data-index="${index}"]`);
  const buyViaApi = async (user: string, index: number) => {
    const checkout = await app.inject({ method: 'POST', url: `/checkout?user_id=${user}&id=${itemId(sale, index)}` });
    const res = await app.inject({ method: 'POST', url: `/purchase?code=${json<{ code: string }>(checkout).code}` });
    assert.equal(res.statusCode, 200, res.body);
  };

  before(async () => {
    env = await testEnv({ SALE_ITEMS: '60', USER_LIMIT: '2' });
    app = await env.app({ clock });
    base = await app.listen({ port: 0, host: '127.0.0.1' });
    sale = json<{ id: string }>(await app.inject('/sales/active')).id;
    browser = await chromium.launch(CHROMIUM);
  });
  after(async () => {
    for (const c of contexts) await c.close();
    await browser?.close();
    await env.close();
  });

  it('answers with security headers (CSP without unsafe-inline, nosniff, frame-ancestors), hashed immutable assets, and a script under 50 KB gzipped', async () => {
    const page = await app.inject('/');
    assert.equal(page.statusCode, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.equal(page.headers['cache-control'], 'no-cache');
    const csp = String(page.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
    assert.equal(page.headers['x-content-type-options'], 'nosniff');
    assert.doesNotMatch(page.body, /<script>|<style>|style="/, 'nothing inline for the CSP to allow');
    const assets = [...page.body.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.equal(assets.length, 2);
    for (const url of assets) {
      assert.match(url, /-[A-Z0-9]{8}\.(js|css)$/, 'named by a content hash');
      const res = await app.inject(url);
      assert.equal(res.statusCode, 200);
      assert.equal(res.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
      if (url.endsWith('.js')) assert.ok(gzipSync(res.rawPayload).length <= 50 * 1024, 'the budget: 50 KB gzipped');
    }
    assert.equal((await app.inject({ method: 'POST', url: '/' })).statusCode, 405);
    assert.equal((await app.inject('/assets/nope.js')).statusCode, 404);
  });

  it('in a browser, shows the active sale, its items and the live stream', async () => {
    const page = await shopper('ann');
    assert.equal(await page.textContent('#remaining'), '60');
    assert.match((await page.textContent('#ends'))!, /^Ends in \d+:\d\d\.$/);
    assert.equal(await page.locator('#grid button').count(), 48);
    await page.waitForFunction(() => document.getElementById('live')?.textContent === 'live');
  });

  it('a user buys an item and sees the confirmation; another browser sees it sold within 1 s', async () => {
    const alice = await shopper('alice');
    const bob = await shopper('bob');
    await cellOf(alice, 5).click();
    await alice.locator('#checkout').waitFor({ state: 'visible' });
    await alice.click('#buy');
    await alice.locator('#confirmation').waitFor({ state: 'visible' });
    const bought = Date.now();
    assert.match((await alice.textContent('#confirmation-name'))!, /is yours\.$/);
    assert.match((await alice.getAttribute('#confirmation-image', 'src'))!, new RegExp(`/items/${itemId(sale, 5)}/`));
    assert.equal(await alice.locator('#mine li img').count(), 1);
    await bob.waitForFunction(
      () => document.querySelector<HTMLButtonElement>('#grid button[data-index="5"]')?.disabled === true,
      undefined,
      { timeout: 1000 },
    );
    assert.ok(Date.now() - bought <= 1000);
    assert.equal(await cellOf(bob, 5).locator('.state').textContent(), 'Sold');
    await alice.screenshot({ path: SCREENSHOT.pathname, fullPage: false });
  });

  it('says "sold" when someone else buys the item first, and "limit reached" when the user has bought their share', async () => {
    const carol = await shopper('carol');
    await cellOf(carol, 7).click();
    await carol.locator('#checkout').waitFor({ state: 'visible' });
    await buyViaApi('dave', 7); // dave is faster
    await carol.click('#buy');
    await carol.waitForFunction(() =>
      /someone else has just bought/.test(document.getElementById('message')!.textContent!),
    );

    await buyViaApi('carol', 8);
    await buyViaApi('carol', 9); // USER_LIMIT is 2
    await cellOf(carol, 10).click();
    await carol.waitForFunction(() => /reached your limit/.test(document.getElementById('message')!.textContent!));
  });

  it('has no serious or critical accessibility violation (axe-core)', async () => {
    const page = await shopper('erin');
    await page.evaluate(AXE);
    const violations = await page.evaluate(async () => {
      const axe = (window as unknown as { axe: { run(): Promise<{ violations: { id: string; impact: string }[] }> } })
        .axe;
      return (await axe.run()).violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
    });
    assert.deepEqual(violations, []);
  });

  it('when the next sale opens, updates the header without a reload', async () => {
    const page = await shopper('frank');
    const ends = json<{ ends_at: string }>(await app.inject('/sales/active')).ends_at;
    clock.set(Date.parse(ends) + 200);
    const next = json<{ id: string }>(await app.inject('/sales/active')).id;
    assert.notEqual(next, sale);
    await page.waitForFunction((s) => document.getElementById('sale-id')?.textContent === s, next, { timeout: 10_000 });
    assert.equal(await page.textContent('#remaining'), '60');
    await page.waitForFunction(() => /new sale has opened/.test(document.getElementById('message')!.textContent!));
  });

  it('logged no console error and threw nothing in any page', () => {
    assert.deepEqual(problems, []);
  });
});
