// The run page in a real browser: Debian's chromium driven by playwright-core (a browser
// download by playwright would fail here). Started by tests/it/page.rs, which brings up the
// stack (behind an API key, run tokens on) and the vggt and Kolors mirror Spaces, and reads the
// last line this prints (`PAGE RESULT {json}`) to check the runs against the API.
//
// Usage: node page.test.mjs BASE_URL OUT_DIR  (env PAGE_KEY, PAGE_IMAGES (":"-separated),
// PAGE_PERSON, PAGE_GARMENT). Screenshots of each state go to OUT_DIR.

import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const require = createRequire(new URL("../node/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [base, out] = process.argv.slice(2);
const key = process.env.PAGE_KEY;
const images = process.env.PAGE_IMAGES.split(":");
mkdirSync(out, { recursive: true });
const RUN_MS = 120_000;
const result = { screenshots: [], accessibility: {} };
const axeSource = require.resolve("axe-core/axe.min.js");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
});

/** axe-core's WCAG 2 A and AA rules on the page as it is: none may fail. */
async function accessible(page, state) {
  if (!(await page.evaluate(() => "axe" in window))) await page.addScriptTag({ path: axeSource });
  const found = await page.evaluate(async () => {
    const r = await window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } });
    return { passes: r.passes.length, violations: r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 3) })) };
  });
  result.accessibility[state] = found.passes;
  assert.deepEqual(found.violations, [], `accessibility violations in ${state}`);
}

async function shot(page, name, what) {
  const path = `${out}/${name}.png`;
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push({ name: `${name}.png`, what });
}

function step(name) {
  console.log(`page: ${name}`);
}

/** The status the run page shows once it is one of `wanted`. */
async function statusIs(page, wanted, timeout = RUN_MS) {
  const sel = wanted.map((s) => `h1 .status[data-status="${s}"]`).join(", ");
  await page.waitForSelector(sel, { timeout });
  return page.getAttribute("h1 .status", "data-status");
}

async function runId(page) {
  await page.waitForURL(/#\/runs\/run_/, { timeout: 30_000 });
  return page.url().match(/#\/runs\/(run_[A-Za-z0-9]+)/)[1];
}

/** Pixels of the 3D canvas that differ from the viewer's empty background (0x20242c). */
async function drawnPixels(page) {
  return page.evaluate(() => {
    const gl = document.querySelector(".viewer canvas");
    const c = document.createElement("canvas");
    c.width = gl.width;
    c.height = gl.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(gl, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let differ = 0;
    for (let i = 0; i < d.length; i += 4) {
      if (Math.abs(d[i] - 0x20) + Math.abs(d[i + 1] - 0x24) + Math.abs(d[i + 2] - 0x2c) > 24) differ++;
    }
    return { differ, total: d.length / 4 };
  });
}

async function pick(page, pipeline) {
  await page.goto(`${base}/#/?pipeline=${pipeline}`);
  await page.waitForSelector('main[data-ready="/"]');
  await page.selectOption("#pipeline", pipeline);
}

try {
  // ---- A desktop browser with the API key entered once.
  // CSP bypassed here only so axe-core can be injected; the cold and phone browsers below keep it.
  const desk = await browser.newContext({ viewport: { width: 1280, height: 900 }, bypassCSP: true });
  const page = await desk.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));

  step("the page asks for the key, keeps it in session storage only");
  await page.goto(`${base}/`);
  await page.waitForSelector("#key-dialog[open]");
  await shot(page, "01-key-dialog", "The page behind keys: its first API call was refused, so it asks for a key.");
  await page.fill("#key-input", key);
  await page.click('#key-dialog button[value="save"]');
  await page.waitForSelector('main[data-ready="/"]');
  assert.equal(await page.evaluate(() => sessionStorage.getItem("spaceport.credential")), key);
  assert.ok(!page.url().includes(key), "the key is not in the URL");

  step("every form control has a label");
  await page.selectOption("#pipeline", "vggt");
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input, select, button")]
      .filter((e) => !(e.labels?.length || e.getAttribute("aria-label") || e.textContent.trim()))
      .map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(unlabelled, []);
  // The first control is reachable from the keyboard.
  await page.keyboard.press("Tab");
  assert.ok(await page.evaluate(() => document.activeElement !== document.body));

  step("a setting out of range: the server's message is shown at its field");
  await page.fill("#setting-conf_thres", "150");
  await page.setInputFiles("#input-images", images);
  await page.click('form button[type="submit"]');
  const fieldError = page.locator('[data-field="settings.conf_thres"] .field-error');
  await fieldError.waitFor({ state: "visible", timeout: 15_000 });
  result.validation_message = await fieldError.textContent();
  assert.match(result.validation_message, /conf_thres/);
  assert.ok(!/#\/runs\//.test(page.url()), "no run was made");
  await accessible(page, "form with an error");
  await shot(page, "02-validation-error", "conf_thres = 150: the server's 400 message shown under the field, no run made.");

  step("a vggt run from the page, uploaded with progress, followed live to succeeded");
  await page.fill("#setting-conf_thres", "40");
  await page.selectOption("#setting-prediction_mode", "pointmap");
  const created = page.waitForResponse((r) => r.url().endsWith("/v1/runs") && r.request().method() === "POST");
  await page.click('form button[type="submit"]');
  const createdRun = await (await created).json();
  result.vggt = await runId(page);
  assert.equal(createdRun.id, result.vggt);
  // The run's token, for the phone below (kept out of the printed result: it is a credential).
  const vggtToken = createdRun.run_token;
  assert.match(vggtToken, /^rt_/);
  await statusIs(page, ["succeeded"]);
  await page.waitForSelector(".viewer[data-drawn] canvas", { timeout: 60_000 });
  await page.waitForTimeout(300);
  result.vggt_pixels = await drawnPixels(page);
  assert.ok(result.vggt_pixels.differ > result.vggt_pixels.total * 0.005, `the scene drew: ${JSON.stringify(result.vggt_pixels)}`);
  const scene = page.locator('tr[data-artifact="scene"]');
  assert.match(await scene.locator("td.hash").textContent(), /^[0-9a-f]{64}$/);
  assert.equal(await scene.locator("a[download]").count(), 1);
  result.logs = (await page.textContent("pre.logs")).trim().split("\n").length;
  await accessible(page, "vggt run succeeded");
  await shot(page, "03-vggt-succeeded", "A vggt run made from the page: succeeded, the point cloud and cameras in the 3D viewer, the Space's logs, the artifacts with size and sha256.");
  result.after_viewer = await page.evaluate(() =>
    performance.getEntriesByType("resource").concat(performance.getEntriesByType("navigation"))
      .filter((r) => r.name.endsWith("/") || r.name.includes("/assets/"))
      .map((r) => ({ name: new URL(r.name).pathname, transfer: r.transferSize, body: r.decodedBodySize })));

  step("cancel from the page");
  await pick(page, "vggt");
  await page.setInputFiles("#input-images", images);
  await page.click('form button[type="submit"]');
  result.cancelled = await runId(page);
  await statusIs(page, ["queued", "submitting", "running"], 30_000);
  await page.click("#cancel");
  await statusIs(page, ["cancelled"], 30_000);
  await shot(page, "04-cancelled", "A vggt run cancelled from the page while the Space worked on it.");

  step("retry from the page makes a new run pointing back");
  await page.click("#retry");
  await page.waitForURL((u) => /#\/runs\/run_/.test(u.hash) && !u.hash.includes(result.cancelled), { timeout: 30_000 });
  result.retried = await runId(page);
  await page.waitForSelector(`a[href="#/runs/${result.cancelled}"]`);

  step("a try-on run shows its result beside the photo sent");
  await pick(page, "kolors-tryon");
  await page.setInputFiles("#input-person", process.env.PAGE_PERSON);
  await page.setInputFiles("#input-garment", process.env.PAGE_GARMENT);
  await page.click('form button[type="submit"]');
  result.tryon = await runId(page);
  await statusIs(page, ["succeeded"]);
  await page.waitForFunction(() => {
    const img = document.querySelector("[data-compare] img.after");
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 30_000 });
  await accessible(page, "try-on result");
  await shot(page, "05-tryon", "A Kolors try-on run: the result image over the person photo, a slider between before and after.");

  step("the runs list: newest first, filtered, updating live");
  await page.goto(`${base}/#/runs`);
  await page.waitForSelector('main[data-ready="/runs"]');
  const ids = await page.$$eval("tr[data-run]", (r) => r.map((x) => x.dataset.run));
  assert.ok(ids.indexOf(result.tryon) < ids.indexOf(result.vggt), "newest first");
  await page.selectOption("#filter-status", "succeeded");
  await page.waitForFunction(() => [...document.querySelectorAll("tr[data-run] .status")].every((s) => s.dataset.status === "succeeded") && document.querySelectorAll("tr[data-run]").length >= 2);
  await page.selectOption("#filter-status", "");
  await page.waitForFunction((id) => document.querySelector(`tr[data-run="${id}"]`), result.cancelled);
  // A run made elsewhere (here by the API) shows up without a reload.
  const elsewhere = await page.evaluate(async (k) => {
    const r = await fetch("/v1/runs", { method: "POST", headers: { Authorization: `Bearer ${k}`, "Content-Type": "application/json" },
      body: JSON.stringify({ pipeline: "vggt", start: "manual", inputs: { images: [{ filename: "a.png", content_type: "image/png", size: 10 }] } }) });
    return (await r.json()).id;
  }, key);
  await page.waitForSelector(`tr[data-run="${elsewhere}"] .status[data-status="created"]`, { timeout: 10_000 });
  result.elsewhere = elsewhere;
  await accessible(page, "runs list");
  await shot(page, "06-runs", "The runs list, newest first, with a run created through the API appearing without a reload.");
  assert.deepEqual(errors, [], "no script errors");

  // ---- Time to interactive: a fresh browser (empty cache) holding the key, opening the form.
  step("time to interactive, cold");
  const cold = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await cold.addInitScript((k) => sessionStorage.setItem("spaceport.credential", k), key);
  const fresh = await cold.newPage();
  await fresh.goto(`${base}/`);
  await fresh.waitForSelector('main[data-ready="/"] #pipeline');
  result.interactive_ms = await fresh.evaluate(() => Math.round(performance.now()));
  result.first_load = await fresh.evaluate(() =>
    performance.getEntriesByType("navigation").concat(performance.getEntriesByType("resource"))
      .filter((r) => new URL(r.name).pathname === "/" || r.name.includes("/assets/"))
      .map((r) => ({ name: new URL(r.name).pathname, transfer: r.transferSize, body: r.decodedBodySize })));
  await cold.close();

  // ---- A phone, holding only the vggt run's token.
  step("a phone with a run token sees that run and its scene");
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true });
  const mob = await phone.newPage();
  await mob.goto(`${base}/#/runs/${result.vggt}`);
  await mob.waitForSelector("#key-dialog[open]");
  await mob.fill("#key-input", vggtToken);
  await mob.click('#key-dialog button[value="save"]');
  await statusIs(mob, ["succeeded"], 30_000);
  await mob.waitForSelector(".viewer[data-drawn] canvas", { timeout: 60_000 });
  await mob.waitForTimeout(300);
  result.phone_pixels = await drawnPixels(mob);
  assert.ok(result.phone_pixels.differ > result.phone_pixels.total * 0.005);
  const overflow = await mob.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no sideways scrolling on a phone (${overflow}px too wide)`);
  await shot(mob, "07-phone-run", "The vggt run on a phone (390×844), opened with its run token only: status, logs and the scene.");
  await phone.close();
  await desk.close();
  console.log("PAGE RESULT " + JSON.stringify(result));
} catch (e) {
  console.error("page: FAILED", e);
  process.exitCode = 1;
} finally {
  await browser.close();
}
