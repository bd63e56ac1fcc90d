// End-to-end test of dev mode's provider sandbox in headless Chromium: byoc-api started with no configuration
// at all (dev mode, no provider URL or credential) says so on start and on the settings page, verifies a Twilio
// account, sends test SMS with Twilio's test-number behaviours, connects Google Calendar through the sandbox
// consent page, and answers availability and a booking — with no network and no accounts.
//
// Environment: BYOC_BIN_DIR (folder with the built `byoc-api`, required), CHROMIUM_PATH (default /usr/bin/chromium).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("../tools/node_modules/playwright-core");

const BIN_DIR = process.env.BYOC_BIN_DIR;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

let work;
let api;
let apiOut = "";
let apiErr = "";
let baseUrl;
let token;
let browser;

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

async function waitFor(condition, what) {
  for (let attempt = 0; attempt < 600; attempt += 1) {
    if (condition()) {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${what}:\n${apiOut}\n${apiErr}`);
}

before(async () => {
  assert.ok(BIN_DIR, "BYOC_BIN_DIR must name the folder holding the built byoc-api binary");
  work = mkdtempSync(path.join(tmpdir(), "byoc-e2e-dev-"));
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const env = { PATH: process.env.PATH, HOME: process.env.HOME, BYOC_BIND: `127.0.0.1:${port}`, RUST_LOG: "info" };
  api = spawn(path.join(BIN_DIR, "byoc-api"), [], { env, cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  api.stdout.on("data", (chunk) => (apiOut += chunk));
  api.stderr.on("data", (chunk) => (apiErr += chunk));
  await waitFor(() => /dev token \(24 h\):\s*(\S+)/.test(apiOut), "the dev banner is printed");
  token = apiOut.match(/dev token \(24 h\):\s*(\S+)/)[1];
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
  });
});

after(async () => {
  await browser?.close();
  api?.kill("SIGTERM");
  if (work) {
    rmSync(work, { recursive: true, force: true });
  }
});

async function call(method, route, body, headers = {}) {
  const response = await fetch(`${baseUrl}${route}`, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: response.status, body: await response.json().catch(() => null) };
}

test("dev mode's sandbox is said on start and on the page, and answers Twilio and Google offline", async () => {
  assert.match(apiErr, /WARN/);
  assert.match(apiErr, /DEV MODE SANDBOX/);

  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.goto(`${baseUrl}/dashboard/settings`);
  await page.getByLabel("Bearer token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Credential settings" }).waitFor();
  assert.match(await page.getByTestId("sandbox-banner").textContent(), /DEV MODE SANDBOX/);

  const form = page.locator("#add-twilio");
  await form.getByLabel("Account SID").fill("AC" + "0123456789abcdef".repeat(2));
  await form.getByLabel("Auth Token").fill("sandbox-twilio-auth-token-0123456789");
  await form.getByLabel("Phone number").fill("+15005550006");
  await form.getByLabel("Display name").fill("Sandbox Twilio");
  await form.getByRole("button", { name: "Add Twilio account" }).click();
  await page.getByRole("status").filter({ hasText: "added" }).waitFor();
  await page.getByRole("button", { name: "Verify Sandbox Twilio" }).click();
  await page.getByRole("status").filter({ hasText: "verified" }).waitFor();
  assert.match(await page.locator("#credentials tbody tr", { hasText: "Sandbox Twilio" }).textContent(), /✅ Verified/);

  await page.getByLabel("Send to").fill("+14155550199");
  await page.getByRole("button", { name: "Send test SMS" }).click();
  await page.locator("#test-sms-result", { hasText: "Sent" }).waitFor();
  for (const [number, code] of [["+15005550001", "21211"], ["+15005550009", "21614"]]) {
    await page.getByLabel("Send to").fill(number);
    await page.getByRole("button", { name: "Send test SMS" }).click();
    await page.locator("#test-sms-result", { hasText: code }).waitFor();
  }

  await page.getByRole("link", { name: "Connect Google Calendar" }).click();
  await page.getByRole("heading", { name: "Sandbox Google consent" }).waitFor();
  await page.getByRole("link", { name: "Allow" }).click();
  await page.getByRole("status").filter({ hasText: "Google Calendar connected" }).waitFor();
  await context.close();

  const date = new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10);
  const availability = await call("GET", `/api/calendar/availability?date=${date}&duration=30&timeZone=UTC`);
  assert.equal(availability.status, 200, JSON.stringify(availability.body));
  const [slot] = availability.body.slots;
  assert.ok(slot, "a free slot");
  const booking = { start: slot.start, durationMinutes: 30, summary: "Sandbox visit", attendeeName: "Pat" };
  const booked = await call("POST", "/api/calendar/bookings", booking, { "idempotency-key": "sandbox-e2e-1" });
  assert.equal(booked.status, 201, JSON.stringify(booked.body));
  const after = await call("GET", `/api/calendar/availability?date=${date}&duration=30&timeZone=UTC`);
  assert.ok(!after.body.slots.some((free) => free.start === slot.start), "the booked slot is busy");
});
