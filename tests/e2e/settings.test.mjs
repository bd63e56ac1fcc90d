// End-to-end tests of the settings page (/dashboard/settings) in headless Chromium (Playwright, system
// Chromium), against a real byoc-api binary with a temporary SQLite database and a fake Twilio API.
//
// Environment: BYOC_BIN_DIR (folder with the built `byoc-api` and `byoc`, required), CHROMIUM_PATH (default
// /usr/bin/chromium), BYOC_E2E_SCREENSHOTS (a folder: save settings-desktop.png and settings-phone.png there).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { createHmac, randomBytes, randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import http from "node:http";
import net from "node:net";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("../tools/node_modules/playwright-core");

const BIN_DIR = process.env.BYOC_BIN_DIR;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const SCREENSHOTS = process.env.BYOC_E2E_SCREENSHOTS;

const GOOD_SID = "AC" + "0123456789abcdef".repeat(2);
const GOOD_TOKEN = "fake-twilio-auth-token-0123456789";
const BAD_TOKEN = "wrong-twilio-auth-token-000000000";
const TWILIO_NUMBER = "+14155550123";
const STRIPE_KEY = "sk_test_51HfakeStripeKeyValue4242";
const STRIPE_ROLLED_KEY = "sk_live_51HrolledStripeKey00009999";
const HUBSPOT_TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555";

let work;
let fakeTwilio;
let api;
let apiLog = "";
let baseUrl;
let browser;
let jwtSecret;
const sentMessages = [];
const people = {};

// ---- fake Twilio (IncomingPhoneNumbers, Messages), Stripe (balance) and HubSpot (account details) ----------

function startFakeTwilio() {
  const server = http.createServer((request, response) => {
    const url = new URL(request.url, "http://fake");
    if (url.pathname === "/consent") {
      // Another site (localhost is not the same site as 127.0.0.1) whose link sends the browser back, as
      // Google's consent page does after "Connect Google Calendar".
      response.writeHead(200, { "content-type": "text/html" });
      response.end('<a href="/back-from-google">Allow</a>');
      return undefined;
    }
    if (url.pathname === "/back-from-google") {
      response.writeHead(302, { location: `${baseUrl}/dashboard/settings?google=connected` });
      response.end();
      return undefined;
    }
    const bearer = (request.headers.authorization || "").replace(/^Bearer /, "");
    if (url.pathname === "/v1/balance" || url.pathname === "/account-info/v3/details") {
      response.writeHead(bearer === STRIPE_KEY || bearer === HUBSPOT_TOKEN ? 200 : 401, { "content-type": "application/json" });
      if (bearer === STRIPE_KEY) {
        response.end(JSON.stringify({ object: "balance", livemode: false, available: [], pending: [] }));
      } else if (bearer === HUBSPOT_TOKEN) {
        response.end(JSON.stringify({ portalId: 62515, accountType: "STANDARD" }));
      } else {
        response.end(JSON.stringify({ error: { type: "invalid_request_error", code: "api_key_expired", message: "Expired API Key provided: " + bearer } }));
      }
      return undefined;
    }
    const auth = Buffer.from((request.headers.authorization || "").replace(/^Basic /, ""), "base64").toString();
    const reply = (status, body) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(JSON.stringify(body));
    };
    if (auth !== `${GOOD_SID}:${GOOD_TOKEN}`) {
      return reply(401, {
        code: 20003,
        message: "Authenticate",
        more_info: "https://www.twilio.com/docs/errors/20003",
        status: 401,
      });
    }
    const base = `/2010-04-01/Accounts/${GOOD_SID}`;
    if (request.method === "GET" && url.pathname === `${base}/IncomingPhoneNumbers.json`) {
      return reply(200, {
        incoming_phone_numbers: [
          { phone_number: TWILIO_NUMBER, capabilities: { sms: true, voice: true, mms: false } },
        ],
      });
    }
    if (request.method === "POST" && url.pathname === `${base}/Messages.json`) {
      let body = "";
      request.on("data", (chunk) => (body += chunk));
      request.on("end", () => {
        const form = new URLSearchParams(body);
        sentMessages.push({ to: form.get("To"), from: form.get("From") });
        reply(201, { sid: "SM" + "ab".repeat(16), status: "queued" });
      });
      return undefined;
    }
    return reply(404, { code: 20404, message: "The requested resource was not found", status: 404 });
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// ---- the service and its data -------------------------------------------------------------------------

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

function serviceEnv(extra) {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    RUST_LOG: "warn",
    ...extra,
  };
}

function cli(env, ...args) {
  return execFileSync(path.join(BIN_DIR, "byoc"), args, { env, cwd: work, encoding: "utf8" }).trim();
}

async function waitForHealth(url) {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    try {
      const response = await fetch(`${url}/healthz`);
      if (response.ok) {
        return;
      }
    } catch {
      // not listening yet
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`byoc-api did not become healthy:\n${apiLog}`);
}

before(async () => {
  assert.ok(BIN_DIR, "BYOC_BIN_DIR must name the folder holding the built byoc-api and byoc binaries");
  work = mkdtempSync(path.join(tmpdir(), "byoc-e2e-"));
  fakeTwilio = await startFakeTwilio();
  const port = await freePort();
  baseUrl = `http://127.0.0.1:${port}`;
  const env = serviceEnv({
    DATABASE_URL: `sqlite://${path.join(work, "byoc.db")}`,
    BYOC_MASTER_KEYS: `1:${randomBytes(32).toString("hex")}`,
    BYOC_JWT_SECRET: (jwtSecret = randomBytes(32).toString("hex")),
    BYOC_BIND: `127.0.0.1:${port}`,
    TWILIO_API_BASE: `http://127.0.0.1:${fakeTwilio.address().port}`,
    STRIPE_API_BASE: `http://127.0.0.1:${fakeTwilio.address().port}`,
    HUBSPOT_API_BASE: `http://127.0.0.1:${fakeTwilio.address().port}`,
  });
  cli(env, "migrate");
  const orgA = cli(env, "org", "create", "--name", "Clinic A");
  const orgB = cli(env, "org", "create", "--name", "Clinic B");
  for (const [name, org, role] of [
    ["ownerA", orgA, "owner"],
    ["memberA", orgA, "member"],
    ["ownerB", orgB, "owner"],
  ]) {
    const user = randomUUID();
    cli(env, "member", "add", "--org", org, "--user", user, "--role", role);
    people[name] = { org, user, token: cli(env, "token", "--org", org, "--user", user) };
  }
  api = spawn(path.join(BIN_DIR, "byoc-api"), [], { env, cwd: work, stdio: ["ignore", "pipe", "pipe"] });
  api.stdout.on("data", (chunk) => (apiLog += chunk));
  api.stderr.on("data", (chunk) => (apiLog += chunk));
  await waitForHealth(baseUrl);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
});

after(async () => {
  await browser?.close();
  api?.kill("SIGTERM");
  fakeTwilio?.close();
  if (work) {
    rmSync(work, { recursive: true, force: true });
  }
});

// ---- helpers --------------------------------------------------------------------------------------------

async function signedInPage(who, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("dialog", (dialog) => dialog.accept());
  await page.goto(`${baseUrl}/dashboard/settings`);
  await page.getByLabel("Bearer token").fill(people[who].token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Credential settings" }).waitFor();
  return page;
}

/** An HS256 token for one of `people` that also carries `extra` claims (as a Supabase token carries `email`). */
function tokenWithClaims(who, extra) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  const { org, user } = people[who];
  const body = `${encode({ alg: "HS256", typ: "JWT" })}.${encode({
    sub: user,
    org_id: org,
    exp: Math.floor(Date.now() / 1000) + 600,
    ...extra,
  })}`;
  return `${body}.${createHmac("sha256", jwtSecret).update(body).digest("base64url")}`;
}

function credentialRow(page, name) {
  return page.locator("#credentials tbody tr", { hasText: name });
}

async function fillTwilio(page, { sid, token, phone, name }) {
  const form = page.locator("#add-twilio");
  await form.getByLabel("Account SID").fill(sid);
  await form.getByLabel("Auth Token").fill(token);
  await form.getByLabel("Phone number").fill(phone);
  await form.getByLabel("Display name").fill(name);
  await form.getByRole("button", { name: "Add Twilio account" }).click();
}

async function fillStripe(page, { key, name }) {
  const form = page.locator("#add-stripe");
  await form.getByLabel("Secret key").fill(key);
  await form.getByLabel("Display name").fill(name);
  await form.getByRole("button", { name: "Add Stripe key" }).click();
}

async function fillHubSpot(page, { token, name }) {
  const form = page.locator("#add-hubspot");
  await form.getByLabel("Access token").fill(token);
  await form.getByLabel("Display name").fill(name);
  await form.getByRole("button", { name: "Add HubSpot token" }).click();
}

// ---- tests (in order: they share one service) ------------------------------------------------------------

test("signing in needs a valid token and sets an HttpOnly SameSite=Strict session cookie", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/dashboard/settings`);
  await page.getByLabel("Bearer token").fill("not-a-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").filter({ hasText: "not valid" }).waitFor();

  await page.getByLabel("Bearer token").fill(people.ownerA.token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Credential settings" }).waitFor();
  assert.equal(await page.getByTestId("role").textContent(), "owner");
  const session = (await context.cookies()).find((cookie) => cookie.name === "byoc_session");
  assert.ok(session, "session cookie set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.path, "/");
  await context.close();
});

test("a state-changing API call with the session cookie but without the CSRF header is refused", async () => {
  const page = await signedInPage("ownerA");
  const status = await page.evaluate(async () => {
    const response = await fetch("/api/organization/credentials/twilio", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ accountSid: "x", authToken: "y", phoneNumber: "z", displayName: "w" }),
    });
    return [response.status, (await response.json()).error.code];
  });
  assert.deepEqual(status, [403, "csrf_failed"]);
  await page.context().close();
});

test("a bad Twilio account shows errors beside the fields, from the browser and from the server", async () => {
  const page = await signedInPage("ownerA");
  await fillTwilio(page, { sid: "AC123", token: GOOD_TOKEN, phone: "4155550123", name: "Front desk" });
  assert.match(await page.locator("#accountSid-error").textContent(), /AC followed by 32/);
  assert.match(await page.locator("#phoneNumber-error").textContent(), /international form/);
  assert.equal(await page.getByLabel("Account SID").getAttribute("aria-invalid"), "true");

  // Passes the browser's pattern; the server knows +1 555 555 0100 is no real number.
  await fillTwilio(page, { sid: GOOD_SID, token: GOOD_TOKEN, phone: "+15555550100", name: "Front desk" });
  await page.locator("#phoneNumber-error", { hasText: /\S/ }).waitFor();
  assert.equal(await page.locator("#accountSid-error").textContent(), "");
  assert.equal(await page.getByLabel("Auth Token").inputValue(), "", "the token is not kept in the form");
  assert.ok(!(await page.content()).includes(GOOD_TOKEN), "the token is never echoed into the page");
  assert.equal(await page.locator("#no-credentials").count(), 1, "nothing was stored");
  await page.context().close();
});

test("adding and verifying a Twilio account shows ⚠️ then ✅ with time and key version", async () => {
  const page = await signedInPage("ownerA");
  await fillTwilio(page, { sid: GOOD_SID, token: GOOD_TOKEN, phone: TWILIO_NUMBER, name: "Front desk" });
  await page.getByRole("status").filter({ hasText: "added" }).waitFor();
  const row = credentialRow(page, "Front desk");
  assert.match(await row.textContent(), /⚠️ Needs verification/);
  assert.match(await row.textContent(), /Never/);
  assert.ok(!(await page.content()).includes(GOOD_TOKEN));

  await row.getByRole("button", { name: "Verify Front desk" }).click();
  await page.getByRole("status").filter({ hasText: "verified" }).waitFor();
  const verified = credentialRow(page, "Front desk");
  assert.match(await verified.textContent(), /✅ Verified/);
  assert.match(await verified.locator('td[data-label="Last verified"]').textContent(), /\d{4}-\d\d-\d\d \d\d:\d\d UTC/);
  assert.equal(await verified.locator('td[data-label="Key version"]').textContent(), "v1");
  await page.context().close();
});

test("a credential the provider refuses shows ❌ with the provider's error and what to do", async () => {
  const page = await signedInPage("ownerA");
  await fillTwilio(page, { sid: GOOD_SID, token: BAD_TOKEN, phone: TWILIO_NUMBER, name: "Old line" });
  await page.getByRole("status").filter({ hasText: "added" }).waitFor();
  await credentialRow(page, "Old line").getByRole("button", { name: "Verify Old line" }).click();
  await page.getByRole("status").filter({ hasText: "failed verification" }).waitFor();
  const text = await credentialRow(page, "Old line").textContent();
  assert.match(text, /❌ Verification failed/);
  assert.match(text, /Authenticate/);
  assert.match(text, /Check the Account SID, Auth Token/);
  await page.context().close();
});

test("Stripe and HubSpot: field errors, then added, verified or refused, with hints of four characters", async () => {
  const page = await signedInPage("ownerA");
  await fillStripe(page, { key: "pk_test_51Hpublishable0000", name: "Payments" });
  assert.match(await page.locator("#stripe-secretKey-error").textContent(), /secret key \(sk_live_/);
  assert.equal(await page.locator("#add-stripe").getByLabel("Secret key").getAttribute("aria-invalid"), "true");
  await fillHubSpot(page, { token: "legacy-key-0000", name: "" });
  assert.match(await page.locator("#hubspot-accessToken-error").textContent(), /pat-/);
  assert.match(await page.locator("#hubspot-displayName-error").textContent(), /Enter a name/);
  assert.equal(await page.locator("#displayName-error").textContent(), "", "the Twilio form shows no error");

  await fillStripe(page, { key: STRIPE_KEY, name: "Payments" });
  await page.getByRole("status").filter({ hasText: "Stripe key “Payments” added" }).waitFor();
  assert.match(await credentialRow(page, "Payments").textContent(), /sk_test_…4242/);
  await credentialRow(page, "Payments").getByRole("button", { name: "Verify Payments" }).click();
  await page.getByRole("status").filter({ hasText: "verified" }).waitFor();
  assert.match(await credentialRow(page, "Payments").textContent(), /✅ Verified/);

  await fillStripe(page, { key: STRIPE_KEY, name: "Payments" });
  await page.locator("#stripe-displayName-error", { hasText: /\S/ }).waitFor();
  assert.equal(await page.locator("#add-stripe").getByLabel("Secret key").inputValue(), "", "a sent key is cleared");

  await fillStripe(page, { key: STRIPE_ROLLED_KEY, name: "Rolled key" });
  await page.getByRole("status").filter({ hasText: "added" }).waitFor();
  await credentialRow(page, "Rolled key").getByRole("button", { name: "Verify Rolled key" }).click();
  await page.getByRole("status").filter({ hasText: "failed verification" }).waitFor();
  const refused = await credentialRow(page, "Rolled key").textContent();
  assert.match(refused, /❌ Verification failed/);
  assert.match(refused, /Expired API Key/);
  assert.match(refused, /Check the key in the Stripe dashboard/);
  assert.match(refused, /sk_live_…9999/);

  await fillHubSpot(page, { token: HUBSPOT_TOKEN, name: "CRM" });
  await page.getByRole("status").filter({ hasText: "HubSpot token “CRM” added" }).waitFor();
  assert.match(await credentialRow(page, "CRM").textContent(), /pat-…5555/);
  await credentialRow(page, "CRM").getByRole("button", { name: "Verify CRM" }).click();
  await page.getByRole("status").filter({ hasText: "verified" }).waitFor();
  assert.match(await credentialRow(page, "CRM").textContent(), /✅ Verified/);

  const html = await page.content();
  for (const secret of [STRIPE_KEY, STRIPE_ROLLED_KEY, HUBSPOT_TOKEN]) {
    assert.ok(!html.includes(secret), "no secret in the page");
  }
  await page.context().close();
});

test("Send test SMS goes out through the org's verified Twilio account", async (t) => {
  const probe = await fetch(`${baseUrl}/api/sms/test`, {
    method: "POST",
    headers: { authorization: `Bearer ${people.ownerA.token}`, "content-type": "application/json" },
    body: "{}",
  });
  const code = (await probe.json().catch(() => ({})))?.error?.message;
  if (probe.status === 404 && code === "no such endpoint") {
    t.skip("POST /api/sms/test is not served by this build");
    return;
  }
  const page = await signedInPage("ownerA");
  await page.getByLabel("Send to").fill("12");
  await page.getByRole("button", { name: "Send test SMS" }).click();
  assert.match(await page.locator("#to-error").textContent(), /international form/);
  const before = sentMessages.length;
  await page.getByLabel("Send to").fill("+14155550199");
  await page.getByRole("button", { name: "Send test SMS" }).click();
  await page.locator("#test-sms-result", { hasText: "Sent" }).waitFor();
  assert.equal(sentMessages.length, before + 1);
  assert.deepEqual(sentMessages.at(-1), { to: "+14155550199", from: TWILIO_NUMBER });
  await page.context().close();
});

test("screenshots at desktop and phone width", async (t) => {
  if (!SCREENSHOTS) {
    t.skip("BYOC_E2E_SCREENSHOTS is not set");
    return;
  }
  const desktop = await signedInPage("ownerA", { width: 1280, height: 900 });
  await desktop.screenshot({ path: path.join(SCREENSHOTS, "settings-desktop.png"), fullPage: true });
  await desktop.context().close();
  const phone = await signedInPage("ownerA", { width: 390, height: 844 });
  await phone.screenshot({ path: path.join(SCREENSHOTS, "settings-phone.png"), fullPage: true });
  await phone.context().close();
});

test("a member sees the list read-only: no add, verify, revoke or purge controls", async () => {
  const page = await signedInPage("memberA");
  assert.equal(await page.getByTestId("role").textContent(), "member");
  assert.match(await credentialRow(page, "Front desk").textContent(), /✅ Verified/);
  assert.equal(await page.locator("#add-twilio").count(), 0);
  assert.equal(await page.locator("#add-stripe").count(), 0);
  assert.equal(await page.locator("#add-hubspot").count(), 0);
  assert.equal(await page.locator("#connect-google").count(), 0);
  assert.equal(await page.locator("button[data-action]").count(), 0);
  assert.equal(await page.getByRole("button", { name: /Revoke|Verify|Purge/ }).count(), 0);
  assert.equal(await page.getByRole("button", { name: "Send test SMS" }).count(), 1);
  await page.context().close();
});

test("another organization's owner sees none of it", async () => {
  const page = await signedInPage("ownerB");
  assert.equal(await page.locator("#no-credentials").count(), 1);
  assert.equal(await page.locator("#credentials").count(), 0, "no credential rows");
  assert.equal(await page.locator("#audit").count(), 0, "no audit entries");
  const text = await page.locator("body").innerText();
  assert.ok(!text.includes("Old line") && !text.includes(people.ownerA.org));
  await page.context().close();
});

test("revoking asks for confirmation, then the credential shows as revoked; the audit log lists it all", async () => {
  const page = await signedInPage("ownerA");
  let asked = "";
  page.removeAllListeners("dialog");
  page.once("dialog", (dialog) => {
    asked = dialog.message();
    dialog.dismiss();
  });
  await credentialRow(page, "Front desk").getByRole("button", { name: "Revoke Front desk" }).click();
  assert.match(asked, /Revoke “Front desk”/);
  assert.match(await credentialRow(page, "Front desk").textContent(), /✅ Verified/, "dismissed: nothing changed");

  page.once("dialog", (dialog) => dialog.accept());
  await credentialRow(page, "Front desk").getByRole("button", { name: "Revoke Front desk" }).click();
  await page.getByRole("status").filter({ hasText: "revoked" }).waitFor();
  const row = credentialRow(page, "Front desk");
  assert.match(await row.textContent(), /⛔ Revoked/);
  assert.equal(await row.getByRole("button", { name: /Revoke|Verify/ }).count(), 0);
  assert.equal(await row.getByRole("button", { name: "Purge Front desk" }).count(), 1, "owners may purge");

  const actions = await page.locator("#audit tbody tr td[data-label=Action]").allTextContents();
  assert.ok(actions.length >= 5, `audit entries: ${actions.join(", ")}`);
  for (const expected of [/creat/, /verif/, /deactivat|revok/]) {
    assert.ok(actions.some((action) => expected.test(action)), `${expected} in ${actions.join(", ")}`);
  }
  await page.context().close();
});

test("the header names the organization and the activity names people whose token carried a name or email", async () => {
  // ownerA signs in with a token that carries an email and a Supabase name: their earlier events get the name.
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${baseUrl}/dashboard/settings`);
  await page.getByLabel("Bearer token").fill(
    tokenWithClaims("ownerA", { email: "olivia@clinic-a.example", user_metadata: { full_name: "Olivia <Owner>" } }),
  );
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Credential settings" }).waitFor();
  assert.equal(await page.getByTestId("org-name").textContent(), "Clinic A");
  assert.ok(!(await page.locator("header").innerText()).includes(people.ownerA.org), "no organization id shown");
  const actors = await page.getByTestId("actor").allTextContents();
  assert.ok(actors.length >= 3, `actors: ${actors.join(", ")}`);
  assert.ok(actors.includes("Olivia <Owner>"), `actors: ${actors.join(", ")}`);
  assert.ok(!actors.includes(`user:${people.ownerA.user}`), `actors: ${actors.join(", ")}`);

  // A later token with another email and no name: the next request records it.
  const changed = tokenWithClaims("ownerA", { email: "olivia@new.example" });
  const listed = await fetch(`${baseUrl}/api/organization/credentials`, {
    headers: { authorization: `Bearer ${changed}` },
  });
  assert.equal(listed.status, 200);
  await page.reload();
  const renamed = await page.getByTestId("actor").allTextContents();
  assert.ok(renamed.includes("olivia@new.example"), `actors: ${renamed.join(", ")}`);
  assert.ok(!renamed.includes("Olivia <Owner>"));
  await context.close();

  // Clinic B's owner sees their own organization's name.
  const other = await signedInPage("ownerB");
  assert.equal(await other.getByTestId("org-name").textContent(), "Clinic B");
  await other.context().close();
});

test("the activity card says the record verifies, filters by action and day, and says what it refuses", async () => {
  const page = await signedInPage("ownerA");
  await page.getByTestId("chain-status").filter({ hasText: "verifies" }).waitFor();
  assert.match(
    await page.getByTestId("chain-status").textContent(),
    /✅ The activity record verifies: \d+ event\(s\), none changed or removed/,
  );
  const all = await page.locator("#audit tbody tr td[data-label=Action]").allTextContents();
  assert.ok(all.some((action) => action !== "created"), `actions: ${all.join(", ")}`);

  const filters = page.locator("#activity-filters");
  await filters.getByLabel("Action").fill("created");
  await filters.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL(/action=created/);
  const created = await page.locator("#audit tbody tr td[data-label=Action]").allTextContents();
  assert.ok(created.length >= 1, "at least one credential was created");
  assert.ok(created.every((action) => action === "created"), `actions: ${created.join(", ")}`);
  assert.equal(await filters.getByLabel("Action").inputValue(), "created", "the form keeps the filter");

  // A day range that holds nothing, then one that does not parse.
  await filters.getByLabel("From").fill("2001-01-01");
  await filters.getByLabel("To").fill("2001-01-02");
  await filters.getByRole("button", { name: "Filter" }).click();
  await page.getByTestId("no-activity").filter({ hasText: "No activity matches." }).waitFor();
  await page.goto(`${baseUrl}/dashboard/settings?from=yesterday`);
  assert.match(await page.getByTestId("activity-error").textContent(), /from date must be a day as YYYY-MM-DD/);
  assert.ok((await page.locator("#audit tbody tr").count()) >= 1, "the unfiltered activity is shown");

  await page.goto(`${baseUrl}/dashboard/settings?action=created`);
  await page.getByRole("link", { name: "Clear" }).click();
  await page.waitForURL(`${baseUrl}/dashboard/settings`);
  await page.context().close();
});

test("a login link from the SaaS's site opens the page without a token, once", async () => {
  const asked = await fetch(`${baseUrl}/api/dashboard/login-links`, {
    method: "POST",
    headers: { authorization: `Bearer ${people.memberA.token}` },
  });
  assert.equal(asked.status, 201);
  const { url, expiresAt } = await asked.json();
  const left = Date.parse(expiresAt) - Date.now();
  assert.ok(left > 0 && left <= 60_000, `expires in ${left} ms`);
  const link = new URL(url);
  assert.equal(link.pathname, "/dashboard/login");
  const target = `${baseUrl}${link.pathname}${link.search}`;

  // The SaaS frontend, on another site (localhost, not 127.0.0.1), sends its user over with a plain link.
  const saas = http.createServer((request, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(`<!doctype html><a href="${target}">Credential settings</a>`);
  });
  await new Promise((resolve) => saas.listen(0, "127.0.0.1", resolve));
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`http://localhost:${saas.address().port}/`);
    await page.getByRole("link", { name: "Credential settings" }).click();
    await page.getByRole("heading", { name: "Credential settings" }).waitFor();
    assert.equal(new URL(page.url()).pathname, "/dashboard/settings");
    assert.equal(await page.getByTestId("role").textContent(), "member");
    assert.equal(await page.getByTestId("org-name").textContent(), "Clinic A");
    assert.ok(!(await page.content()).includes(people.memberA.token), "no token in the page");
    const session = (await context.cookies()).find((cookie) => cookie.name === "byoc_session");
    assert.ok(session?.httpOnly, "an HttpOnly session cookie");
    await context.close();
  } finally {
    saas.close();
  }

  // The link is used up: opened again it says so and opens nothing.
  const context = await browser.newContext();
  const page = await context.newPage();
  const again = await page.goto(target);
  assert.equal(again.status(), 410);
  await page.getByRole("alert").filter({ hasText: "already used" }).waitFor();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.ok(!(await context.cookies()).some((cookie) => cookie.name === "byoc_session"));
  await context.close();
});

test("Connect Google Calendar links to the OAuth start and shows the result on return", async () => {
  const page = await signedInPage("ownerA");
  assert.equal(await page.getByRole("link", { name: "Connect Google Calendar" }).getAttribute("href"), "/api/auth/google/start");
  await page.goto(`${baseUrl}/dashboard/settings?google=connected`);
  await page.getByRole("status").filter({ hasText: "Google Calendar connected" }).waitFor();
  await page.goto(`${baseUrl}/dashboard/settings?google=error&reason=access_denied`);
  await page.getByRole("status").filter({ hasText: "could not be connected (access_denied)" }).waitFor();

  // Returning from another site: that navigation carries no SameSite=Strict cookie (Sec-Fetch-Site: cross-site);
  // the page's same-site reload does, so the result shows signed in rather than the sign-in form.
  await page.goto(`http://localhost:${fakeTwilio.address().port}/consent`);
  await page.getByRole("link", { name: "Allow" }).click();
  await page.getByRole("status").filter({ hasText: "Google Calendar connected" }).waitFor();
  assert.equal(await page.getByTestId("role").textContent(), "owner");
  await page.context().close();
});

test("keyboard users can reach the forms and see the focus", async () => {
  const page = await signedInPage("ownerA");
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  await page.getByLabel("Account SID").focus();
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.equal(outline, "solid");
  await page.context().close();
});

test("signing out ends the session", async () => {
  const page = await signedInPage("ownerA");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  const cookies = await page.context().cookies();
  assert.ok(!cookies.some((cookie) => cookie.name === "byoc_session"));
  await page.context().close();
});
