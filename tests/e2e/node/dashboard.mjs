#!/usr/bin/env node
// The dashboard, end to end: headless Chromium (playwright-core, Debian's chromium) signs in
// to toolgate's dashboard with an admin token while a real MCP agent (TypeScript SDK
// 1.32.2, Streamable HTTP, a grant's token) calls tools through the gateway.
//
//   GATEWAY=http://127.0.0.1:PORT ADMIN_TOKEN=tga_… AGENT_TOKEN=tg_… SERVER=demo \
//     node dashboard.mjs
//
// Optional: CHROMIUM (default /usr/bin/chromium), SCREENSHOT (a PNG path, written at the end
// and on failure), STEP_TIMEOUT_MS (default 15000).
//
// The server's policy must allow list_patients, hold refund_payment for approval and deny
// delete_patient_record (tests/e2e/test_dashboard.py). Steps:
//   a. sign in (a wrong token first: "unknown or revoked admin token"), token kept in
//      sessionStorage, no cookies;
//   b. the agent lists tools and calls delete_patient_record: denied; the live log shows it;
//   c. the agent calls refund_payment: held; the approval queue shows it; Approve; the call
//      succeeds;
//   d. list_patients set to Deny in the tools view; the agent's next call is denied;
//   e. the status panel shows numbers;
//   f. no console errors, page errors or CSP violations.
// Exit 0 when all passed, 1 on a failed check (with a message), 2 on bad usage.

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { chromium } from "playwright-core";

const DENIED_PREFIX = "[toolgate] denied:";
const REFUND = { payment_id: "pay_5001", amount: 100, reason: "duplicate" };
const STEP = Number(process.env.STEP_TIMEOUT_MS || 15000);
const OVERALL_MS = 150000;

function env(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`dashboard.mjs: ${name} is not set`);
    process.exit(2);
  }
  return value;
}

const GATEWAY = env("GATEWAY").replace(/\/+$/, "");
const ADMIN_TOKEN = env("ADMIN_TOKEN");
const AGENT_TOKEN = env("AGENT_TOKEN");
const SERVER = process.env.SERVER || "demo";
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT || "";

class Failure extends Error {}

let stepNo = 0;
const step = (text) => console.log(`[dashboard] step ${++stepNo}: ${text}`);
const ok = (text) => console.log(`[dashboard]   ok: ${text}`);
const note = (text) => console.log(`[dashboard]   ${text}`);
function check(condition, message) {
  if (!condition) throw new Failure(message);
}

/** Awaits `promise` for at most `ms`, failing with a message naming `what`. */
async function within(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`${what}: nothing within ${ms / 1000} s`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Wraps a Playwright wait so a timeout says what was awaited. */
async function waitFor(what, fn) {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Failure) throw err;
    throw new Failure(`${what}: ${String(err && err.message ? err.message : err).split("\n")[0]}`);
  }
}

function resultText(result) {
  return (result?.content ?? [])
    .filter((b) => b && b.type === "text")
    .map((b) => b.text)
    .join("\n");
}

function brief(value) {
  const text = JSON.stringify(value);
  return text.length > 600 ? `${text.slice(0, 600)}…` : text;
}

// ---------------------------------------------------------------------------------------------

const problems = []; // console errors, page errors
let expected401 = 0;

async function cspViolations(page) {
  try {
    return await page.evaluate(() => window.__toolgateCsp || []);
  } catch {
    return [];
  }
}

async function assertClean(page, where) {
  const csp = await cspViolations(page);
  const all = [...problems, ...csp.map((v) => `CSP violation: ${v}`)];
  check(all.length === 0, `${where}: the page reported errors:\n  ${all.join("\n  ")}`);
}

async function main(state) {
  const overall = setTimeout(() => {
    console.error(`[dashboard] FAIL: the whole scenario took over ${OVERALL_MS / 1000} s`);
    process.exit(1);
  }, OVERALL_MS);
  overall.unref();

  step(`launch ${CHROMIUM} (headless)`);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 30000,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  state.browser = browser;
  ok(`chromium ${browser.version()}`);
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  context.setDefaultTimeout(STEP);
  // Runs before the page's own scripts (through the DevTools protocol, so not subject to the
  // page's CSP): records every CSP violation the page sees.
  await context.addInitScript(() => {
    window.__toolgateCsp = [];
    document.addEventListener("securitypolicyviolation", (e) => {
      window.__toolgateCsp.push(`${e.effectiveDirective} blocked ${e.blockedURI || "(inline)"} at ${e.sourceFile}:${e.lineNumber}`);
    });
  });
  const page = await context.newPage();
  state.page = page;
  page.on("console", (msg) => {
    if (msg.type() !== "error") return;
    const url = msg.location()?.url ?? "";
    // The deliberate wrong token of step a: Chromium logs the 401 of /api/v1/whoami.
    if (/status of 401/.test(msg.text()) && url.includes("/api/v1/whoami") && expected401 > 0) {
      expected401 -= 1;
      return;
    }
    problems.push(`console error: ${msg.text()}${url ? ` (${url})` : ""}`);
  });
  page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));

  // --- a. sign in ------------------------------------------------------------------------------
  step(`open ${GATEWAY}/ and see the sign-in form`);
  const response = await page.goto(`${GATEWAY}/`, { waitUntil: "domcontentloaded", timeout: STEP });
  check(response && response.status() === 200, `GET / answered ${response && response.status()}`);
  const csp = (await response.allHeaders())["content-security-policy"] || "";
  check(/script-src 'self'/.test(csp), `GET / has no strict CSP header (got ${JSON.stringify(csp)})`);
  ok(`CSP: ${csp}`);
  const form = page.locator("#signin-form");
  await waitFor("the sign-in form", () => form.waitFor({ state: "visible" }));
  ok("sign-in form shown");

  step("sign in with a wrong token: refused");
  expected401 = 1;
  await page.fill("#token", "tga_this_is_not_a_token");
  await page.click("#signin-submit");
  await waitFor("the message for a wrong token", () =>
    page.locator('[data-role="signin-error"]', { hasText: "unknown or revoked admin token" }).waitFor({ state: "visible" }),
  );
  check(await page.locator("#app").isHidden(), "the dashboard opened with a wrong token");
  ok("'unknown or revoked admin token' shown");

  step("sign in with the admin token");
  await page.fill("#token", ADMIN_TOKEN);
  await page.click("#signin-submit");
  await waitFor("the dashboard after sign-in", () => page.locator("#app").waitFor({ state: "visible" }));
  const who = page.locator('[data-role="whoami"]');
  await waitFor("the signed-in name", () => who.waitFor({ state: "visible" }));
  ok(`signed in as ${await who.textContent()}`);
  const stored = await page.evaluate(() => Object.values(sessionStorage));
  check(stored.includes(ADMIN_TOKEN), "the token is not in sessionStorage");
  check((await context.cookies()).length === 0, "the dashboard set cookies");
  check(!(await page.evaluate(() => Object.values(localStorage))).includes(ADMIN_TOKEN), "the token leaked into localStorage");
  ok("token in sessionStorage only; no cookies");

  // --- b. the agent: list tools, a denied call, seen in the live log --------------------------------
  step(`the agent connects to ${GATEWAY}/mcp/${SERVER} and lists tools`);
  const transport = new StreamableHTTPClientTransport(new URL(`${GATEWAY}/mcp/${SERVER}`), {
    requestInit: { headers: { Authorization: `Bearer ${AGENT_TOKEN}` } },
  });
  const client = new Client({ name: "toolgate-e2e-dashboard", version: "0.0.0" }, { capabilities: {} });
  state.client = client;
  await within(client.connect(transport, { timeout: STEP }), STEP + 1000, "MCP connect");
  const listed = await within(client.listTools(undefined, { timeout: STEP }), STEP + 1000, "tools/list");
  const names = listed.tools.map((t) => t.name);
  check(names.includes("list_patients") && names.includes("refund_payment"), `tools/list lacks list_patients or refund_payment: ${names}`);
  ok(`tools: ${names.join(", ")}`);

  step("the agent calls delete_patient_record: denied");
  const deleted = await within(
    client.callTool({ name: "delete_patient_record", arguments: { patient_id: "pat_1001", reason: "dashboard e2e" } }, undefined, { timeout: STEP }),
    STEP + 1000,
    "delete_patient_record",
  );
  check(deleted.isError === true && resultText(deleted).startsWith(DENIED_PREFIX), `delete_patient_record was not denied: ${brief(deleted)}`);
  ok(resultText(deleted).split("\n")[0]);

  step("the live log shows delete_patient_record / deny");
  const denyRow = page
    .locator("#log-body tr[data-seq]")
    .filter({ has: page.locator(".col-tool", { hasText: /^delete_patient_record$/ }) })
    .filter({ has: page.locator(".col-decision", { hasText: /^deny$/ }) })
    .first();
  await waitFor("a live-log row for delete_patient_record / deny", () => denyRow.waitFor({ state: "visible" }));
  ok(`row seq ${await denyRow.getAttribute("data-seq")}: ${(await denyRow.innerText()).replace(/\s+/g, " ").slice(0, 200)}`);

  // --- c. a held call, approved in the dashboard ----------------------------------------------------
  step("the agent calls refund_payment: held for approval");
  let refundSettled = false;
  const refund = client.callTool({ name: "refund_payment", arguments: REFUND }, undefined, { timeout: 60000 });
  refund.then(
    () => (refundSettled = true),
    () => (refundSettled = true),
  );
  state.pending = refund;
  const approvalRow = page
    .locator("#approvals-body tr[data-approval]")
    .filter({ has: page.locator(".col-tool", { hasText: "refund_payment" }) })
    .first();
  await waitFor("the approval of refund_payment in the queue", () => approvalRow.waitFor({ state: "visible" }));
  const approvalId = await approvalRow.getAttribute("data-approval");
  ok(`approval ${approvalId} shown: ${(await approvalRow.innerText()).replace(/\s+/g, " ").slice(0, 200)}`);
  check(!refundSettled, "refund_payment returned before anyone approved it");
  await waitFor("pending approvals = 1 in the status panel", () =>
    page.waitForFunction(() => document.querySelector('[data-stat="pending_approvals"]')?.textContent.trim() === "1", null, { timeout: STEP }),
  );
  ok("status panel: 1 pending approval");

  step("click Approve");
  await approvalRow.locator('[data-action="approve"]').click();
  const refunded = await within(refund, STEP, "refund_payment after Approve");
  check(!refunded.isError, `refund_payment failed after approval: ${brief(refunded)}`);
  check(!resultText(refunded).startsWith(DENIED_PREFIX), `refund_payment denied after approval: ${brief(refunded)}`);
  ok(`refund_payment resolved: ${resultText(refunded).replace(/\s+/g, " ").slice(0, 160)}`);
  await waitFor("the approved call leaving the queue", () =>
    page.locator(`#approvals-body tr[data-approval="${approvalId}"]`).waitFor({ state: "detached" }),
  );
  ok("the queue no longer shows it");

  // --- d. switch list_patients to Deny --------------------------------------------------------------
  step("servers & tools: list_patients is allowed; set it to Deny");
  await waitFor("the server list", () => page.locator(`#server-list [data-server="${SERVER}"]`).waitFor({ state: "visible" }));
  await page.click(`#server-list [data-server="${SERVER}"]`);
  const toolRow = page.locator(`#tools-body tr[data-tool="list_patients"]`);
  const stateControl = toolRow.locator('[data-role="state"]');
  // The tools were pinned when the agent listed them (after sign-in): reload until shown.
  const deadline = Date.now() + STEP;
  while (!(await toolRow.count())) {
    check(Date.now() < deadline, "list_patients never appeared in the tools view");
    await page.click('[data-action="reload-tools"]');
    await page.waitForTimeout(500);
  }
  await waitFor("list_patients's state control", () => stateControl.waitFor({ state: "visible" }));
  check((await stateControl.inputValue()) === "allow", `list_patients state is ${await stateControl.inputValue()}, not allow`);
  const refundRow = page.locator(`#tools-body tr[data-tool="refund_payment"]`);
  const risk = (await refundRow.locator('[data-role="risk"]').textContent())?.trim();
  const riskClass = await refundRow.locator('[data-role="risk"]').getAttribute("class");
  const category = (await refundRow.locator('[data-role="category"]').textContent())?.trim();
  check(risk && /sev-(low|medium|high|critical)/.test(riskClass || ""), `refund_payment has no risk badge (text ${risk}, class ${riskClass})`);
  check((await refundRow.locator('[data-role="state"]').inputValue()) === "require_approval", "refund_payment's state is not require_approval");
  ok(`refund_payment: risk ${risk} (${riskClass}), category ${category}, state require_approval`);
  await stateControl.selectOption("deny");
  await waitFor("list_patients shown as deny after the change", () =>
    page.waitForFunction(
      () => {
        const row = document.querySelector('#tools-body tr[data-tool="list_patients"]');
        const select = row && row.querySelector('[data-role="state"]');
        return row && row.dataset.state === "deny" && select && select.value === "deny" && !select.disabled;
      },
      null,
      { timeout: STEP },
    ),
  );
  check(await page.locator("#banner").isHidden(), `error banner: ${await page.locator("#banner").innerText().catch(() => "")}`);
  ok("list_patients is now deny (reloaded from the API)");

  step("the agent calls list_patients: denied");
  let listed2 = null;
  const started = Date.now();
  for (let attempt = 1; ; attempt++) {
    listed2 = await within(client.callTool({ name: "list_patients", arguments: {} }, undefined, { timeout: STEP }), STEP + 1000, "list_patients");
    if (listed2.isError === true || Date.now() - started > 5000) break;
    note(`attempt ${attempt}: list_patients still allowed; retrying`);
    await new Promise((r) => setTimeout(r, 500));
  }
  check(listed2.isError === true && resultText(listed2).startsWith(DENIED_PREFIX), `list_patients was not denied after the change: ${brief(listed2)}`);
  ok(resultText(listed2).split("\n").join(" | "));

  // --- e. the status panel --------------------------------------------------------------------------
  step("the status panel shows numbers");
  await waitFor("numbers in the status panel", () =>
    page.waitForFunction(
      () => {
        const text = (name) => document.querySelector(`[data-stat="${name}"]`)?.textContent.trim() ?? "";
        const num = (name) => Number(text(name).replace(/,/g, "").replace(/\s*%$/, ""));
        return (
          /^\d[\d,]*(\.\d+)?$/.test(text("calls_per_minute")) &&
          num("calls") >= 3 &&
          num("denied") >= 2 &&
          /^\d+(\.\d+)? %$/.test(text("deny_pct")) &&
          num("deny_pct") > 0 &&
          text("pending_approvals") === "0" &&
          /delete_patient_record/.test(document.querySelector('[data-role="top-deny-rules"]')?.textContent ?? "")
        );
      },
      null,
      { timeout: STEP },
    ),
  );
  const stats = await page.evaluate(() =>
    Object.fromEntries([...document.querySelectorAll("[data-stat]")].map((n) => [n.dataset.stat, n.textContent.trim()])),
  );
  ok(`${JSON.stringify(stats)}; top deny rules: ${(await page.locator('[data-role="top-deny-rules"]').innerText()).replace(/\s+/g, " ")}`);

  // --- extra: a live-log filter restarts the stream --------------------------------------------------
  step("live log filter decision=deny shows only denials");
  await page.selectOption("#f-decision", "deny");
  await waitFor("only deny rows after filtering", () =>
    page.waitForFunction(
      () => {
        const rows = [...document.querySelectorAll("#log-body tr[data-seq]")];
        const tools = rows.map((r) => r.querySelector(".col-tool")?.textContent);
        return (
          rows.length >= 2 &&
          rows.every((r) => r.querySelector(".col-decision")?.textContent === "deny") &&
          tools.includes("delete_patient_record") &&
          tools.includes("list_patients")
        );
      },
      null,
      { timeout: STEP },
    ),
  );
  ok(`${await page.locator("#log-body tr[data-seq]").count()} deny rows`);
  await page.selectOption("#f-decision", "");

  // --- f. nothing went wrong in the page; the token survives a reload; sign out -----------------------
  step("no console errors, page errors or CSP violations");
  await assertClean(page, "after the scenario");
  ok("clean");

  if (SCREENSHOT) {
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    note(`screenshot: ${SCREENSHOT}`);
  }

  step("reload: still signed in (sessionStorage)");
  await page.reload({ waitUntil: "domcontentloaded" });
  await waitFor("the dashboard after reload", () => page.locator("#app").waitFor({ state: "visible" }));
  await waitFor("a live-log row after reload", () => page.locator("#log-body tr[data-seq]").first().waitFor({ state: "visible" }));
  ok("signed in after reload");

  step("sign out");
  await page.click('[data-action="signout"]');
  await waitFor("the sign-in form after sign-out", () => page.locator("#signin-form").waitFor({ state: "visible" }));
  check((await page.evaluate(() => Object.values(sessionStorage))).length === 0, "sessionStorage not cleared at sign-out");
  check(await page.locator("#app").isHidden(), "the dashboard is still shown after sign-out");
  ok("signed out, token forgotten");
  await page.waitForTimeout(300);
  await assertClean(page, "at the end");
}

// ---------------------------------------------------------------------------------------------

const state = {};
let code = 0;
try {
  await main(state);
  console.log("[dashboard] PASS");
} catch (err) {
  code = 1;
  const message = err instanceof Failure ? err.message : err && err.stack ? err.stack : String(err);
  console.error(`[dashboard] FAIL at step ${stepNo}: ${message}`);
  if (problems.length) console.error(`[dashboard] page errors so far:\n  ${problems.join("\n  ")}`);
  if (state.page) {
    try {
      const banner = await state.page.locator("#banner").innerText({ timeout: 1000 });
      if (banner.trim()) console.error(`[dashboard] error banner: ${banner.replace(/\s+/g, " ")}`);
    } catch {
      // no banner
    }
    if (SCREENSHOT) {
      try {
        await state.page.screenshot({ path: SCREENSHOT, fullPage: true, timeout: 5000 });
        console.error(`[dashboard] screenshot: ${SCREENSHOT}`);
      } catch {
        // best effort
      }
    }
  }
} finally {
  if (state.pending) state.pending.catch(() => {});
  if (state.client) await state.client.close().catch(() => {});
  if (state.browser) await state.browser.close().catch(() => {});
}
process.exit(code);
