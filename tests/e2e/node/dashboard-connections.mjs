#!/usr/bin/env node
// The dashboard's upstream connections, end to end in headless Chromium (playwright-core,
// Debian's chromium): an admin signs in, sees identity IDENTITY "not connected" at SERVER
// (a server with `auth = "oauth"`), clicks Connect, opens the authorization link in the
// same browser, signs in at the authorization server (oidc-provider's HTML forms) as
// IDENTITY and allows; the browser lands on toolgate's /oauth/callback ("Connected"); the
// dashboard then shows the identity connected with its upstream subject; Disconnect turns it
// back. No console errors, page errors or CSP violations on the dashboard.
//
//   GATEWAY=http://127.0.0.1:PORT ADMIN_TOKEN=tga_… SERVER=prot IDENTITY=alice \
//     node dashboard-connections.mjs
//
// Optional: CHROMIUM (default /usr/bin/chromium), SCREENSHOT (a PNG path). Exit 0 when all
// passed, 1 on a failed check, 2 on bad usage.

import { chromium } from "playwright-core";

const STEP = 15000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard-connections.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const GATEWAY = env("GATEWAY").replace(/\/+$/, "");
const ADMIN_TOKEN = env("ADMIN_TOKEN");
const SERVER = env("SERVER");
const IDENTITY = env("IDENTITY");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT || "";

class Failure extends Error {}
let stepNo = 0;
const step = (text) => console.log(`[connections] step ${++stepNo}: ${text}`);
const ok = (text) => console.log(`[connections]   ok: ${text}`);
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

const problems = [];

async function main(state) {
  step(`launch ${CHROMIUM} (headless)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage", "--disable-background-networking"],
  });
  state.browser = browser;
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  context.setDefaultTimeout(STEP);
  await context.addInitScript(() => {
    window.__toolgateCsp = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__toolgateCsp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "(inline)"}`);
    });
  });
  const page = await context.newPage();
  state.page = page;
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error: ${msg.text()}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));

  step("sign in to the dashboard");
  await page.goto(`${GATEWAY}/`, { waitUntil: "domcontentloaded" });
  await page.fill("#token", ADMIN_TOKEN);
  await page.click("#signin-submit");
  await page.locator("#app").waitFor({ state: "visible" });
  ok("signed in");

  const row = page.locator(`#connections-body tr[data-server="${SERVER}"][data-identity="${IDENTITY}"]`);
  const stateCell = row.locator('[data-role="connection-state"]');
  step(`the connections panel shows ${IDENTITY} not connected to ${SERVER}`);
  await page.locator("#connections").waitFor({ state: "visible" });
  await stateCell.filter({ hasText: /^not connected$/ }).waitFor({ state: "visible" });
  ok("not connected");

  step("Connect: the authorization link appears");
  await row.locator('[data-action="connect"]').click();
  const link = page.locator('[data-role="authorization-url"]');
  await link.waitFor({ state: "visible" });
  const href = await link.getAttribute("href");
  check(href && href.includes("code_challenge=") && href.includes("resource="), `authorization link lacks PKCE or resource: ${href}`);
  ok(`link to ${new URL(href).origin}`);

  step(`consent in the browser as ${IDENTITY}`);
  const consent = await context.newPage();
  await consent.goto(href, { waitUntil: "domcontentloaded" });
  await consent.fill('input[name="login"]', IDENTITY);
  await consent.click('button:has-text("Sign in")');
  await consent.locator('button:has-text("Allow")').waitFor({ state: "visible" });
  await consent.click('button:has-text("Allow")');
  await consent.waitForURL((u) => u.toString().startsWith(`${GATEWAY}/oauth/callback`));
  await consent.locator("h1", { hasText: "Connected" }).waitFor({ state: "visible" });
  ok(`back on ${GATEWAY}/oauth/callback: Connected`);
  await consent.close();

  step("the dashboard shows the connection with its upstream subject");
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.locator("#app").waitFor({ state: "visible" });
  await stateCell.filter({ hasText: /^connected$/ }).waitFor({ state: "visible" });
  const cells = await row.locator("td").allInnerTexts();
  check(cells[3] === IDENTITY, `upstream subject shown is ${JSON.stringify(cells[3])}, expected ${IDENTITY}`);
  check(!/eyJ/.test(await page.content()), "a token shows in the page");
  ok(`connected as ${cells[3]}; no token in the page`);
  if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT, fullPage: true });

  step("Disconnect");
  await row.locator('[data-action="disconnect"]').click();
  await stateCell.filter({ hasText: /^not connected$/ }).waitFor({ state: "visible" });
  ok("not connected again");

  step("no console errors, page errors or CSP violations");
  const csp = await page.evaluate(() => window.__toolgateCsp || []);
  const all = [...problems, ...csp.map((v) => `CSP violation: ${v}`)];
  check(all.length === 0, `the page reported errors:\n  ${all.join("\n  ")}`);
  ok("clean");
}

const state = {};
let code = 0;
try {
  await main(state);
  console.log("[connections] PASS");
} catch (err) {
  code = 1;
  const message = err instanceof Failure ? err.message : err && err.stack ? err.stack : String(err);
  console.error(`[connections] FAIL at step ${stepNo}: ${message}`);
  if (state.page && SCREENSHOT) {
    await state.page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 5000 }).catch(() => {});
  }
} finally {
  if (state.browser) await state.browser.close().catch(() => {});
}
process.exit(code);
