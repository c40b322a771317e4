// The chat page in headless Chromium (Debian's, driven by playwright-core):
// two turns stream into the page, the second reuses the first, and a
// screenshot shows them.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { root, shippedModel, startServer } from "./server_process.mjs";

const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";
let server;
let browser;

before(async () => {
  server = await startServer(["-m", shippedModel, "-t", "2"]);
  browser = await chromium.launch({ executablePath, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

// Fraction of the screenshot's pixels inside `box` that differ from the page
// background: decoded by the browser itself, so no image library is needed.
async function inkFraction(page, png, box) {
  return page.evaluate(async ({ data, box }) => {
    const image = new Image();
    image.src = "data:image/png;base64," + data;
    await image.decode();
    const canvas = document.createElement("canvas");
    canvas.width = image.width;
    canvas.height = image.height;
    const context = canvas.getContext("2d");
    context.drawImage(image, 0, 0);
    const pixels = context.getImageData(box.x, box.y, box.width, box.height).data;
    const background = context.getImageData(1, 1, 1, 1).data;
    let ink = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const difference = Math.abs(pixels[i] - background[0]) + Math.abs(pixels[i + 1] - background[1]) +
        Math.abs(pixels[i + 2] - background[2]);
      if (difference > 48) ink += 1;
    }
    return ink / (pixels.length / 4);
  }, { data: png.toString("base64"), box });
}

test("two turns stream into the page and a screenshot shows them", async () => {
  const page = await browser.newPage({ viewport: { width: 900, height: 700 } });
  const consoleErrors = [];
  page.on("console", (message) => { if (message.type() === "error") consoleErrors.push(message.text()); });
  await page.goto(server.url + "/");
  await page.waitForFunction(() => document.getElementById("model").textContent === "hymba-kjv-tiny");

  await page.click("summary");  // open the settings
  await page.fill("#max_tokens", "24");
  await page.fill("#temperature", "0");
  await page.fill("#input", "Who led Israel out of Egypt?");
  await page.press("#input", "Enter");
  await page.waitForSelector(".assistant[data-state=done]", { timeout: 30000 });
  const first = await page.locator(".assistant").first().innerText();
  assert.match(first, /24 tokens in [\d.]+ s, \d+ prompt tokens \(0 reused\)/);

  await page.fill("#input", "And what did Moses say?");
  await page.press("#input", "Enter");
  await page.waitForFunction(() => document.querySelectorAll(".assistant[data-state=done]").length === 2, null, { timeout: 30000 });
  const second = await page.locator(".assistant").nth(1).innerText();
  const reused = Number(/\((\d+) reused\)/.exec(second)?.[1]);
  assert.ok(reused > 0, "the second turn continues from the first: " + second);
  assert.equal(await page.locator(".user").count(), 2);
  assert.equal(await page.locator(".error").count(), 0);
  assert.deepEqual(consoleErrors, []);

  const screenshot = await page.screenshot({ fullPage: false });
  const out = path.join(root, "build", "chat_page.png");
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, screenshot);
  assert.equal(screenshot.readUInt32BE(16), 900, "screenshot width");
  assert.equal(screenshot.readUInt32BE(20), 700, "screenshot height");
  // The replies' text is on screen: their boxes hold glyphs, an empty region does not.
  const reply = await page.locator(".assistant").first().boundingBox();
  const inReply = await inkFraction(page, screenshot, {
    x: Math.round(reply.x), y: Math.round(reply.y), width: Math.round(reply.width), height: Math.round(reply.height),
  });
  assert.ok(inReply > 0.02, `the first reply's box shows text (ink ${inReply.toFixed(3)})`);
  await page.close();
});

test("a server error is shown in the page, not thrown away", async () => {
  const page = await browser.newPage();
  await page.goto(server.url + "/");
  await page.click("summary");
  await page.fill("#temperature", "7");  // out of range: the server answers 400
  await page.fill("#input", "Hello");
  await page.press("#input", "Enter");
  await page.waitForSelector(".message.error");
  assert.match(await page.locator(".message.error").innerText(), /'temperature' must be in \[0, 2\]/);
  await page.close();
});
