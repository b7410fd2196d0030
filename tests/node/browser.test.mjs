// The web page of `paligemma serve` end to end in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core): upload an image, stream a caption, detect an
// object and find its box drawn over the image in a screenshot, draw a segmentation mask,
// and show a server error.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { startServer, generate, IMAGE } from './server.mjs';

let server;
let browser;
let page;
const shots = process.env.PG_ARTIFACT_DIR || os.tmpdir();

before(async () => {
  server = await startServer(['--threads', '2', '--compute-threads', '1']);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
  page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  page.on('pageerror', (e) => { throw e; });
  // The page may talk to its own server only.
  await page.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname !== '127.0.0.1' || url.port !== String(server.port)) return route.abort();
    return route.continue();
  });
  await page.goto(server.url + '/');
  await page.waitForSelector('#health.ok');
  await page.setInputFiles('#file', IMAGE());
  await page.waitForSelector('#stage:not([hidden])');
  await page.waitForFunction(() => document.getElementById('preview').naturalWidth > 0);
});

after(async () => {
  await browser?.close();
  assert.equal(await server.stop(), 0);
});

// Runs the form and waits until the page says it is done (or failed).
async function runTask(task, fields = {}) {
  await page.selectOption('#task', task);
  await page.evaluate(() => { document.querySelector('#form details').open = true; });
  for (const [sel, value] of Object.entries(fields)) await page.fill(sel, String(value));
  await page.evaluate(() => { document.body.dataset.state = ''; });
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 60000 });
  return page.evaluate(() => document.body.dataset.state);
}

// Takes a screenshot of the image with its overlay; returns the decoded PNG.
async function stageShot(name) {
  const buf = await page.locator('#stage').screenshot();
  const file = path.join(shots, `pg-web-${name}.png`);
  writeFileSync(file, buf);
  return PNG.sync.read(buf);
}

const isMagenta = (png, x, y) => {
  const i = (png.width * Math.round(y) + Math.round(x)) * 4;
  const [r, g, b] = [png.data[i], png.data[i + 1], png.data[i + 2]];
  return r > 200 && g < 90 && b > 200;
};

test('the page streams a caption equal to generate --greedy', async () => {
  const want = generate(['--image', IMAGE(), '--prompt', 'caption en', '--max-tokens', '12', '--greedy']);
  assert.equal(await runTask('caption', { '#max-tokens': 12, '#temperature': '', '#seed': '' }), 'done');
  assert.equal(await page.textContent('#answer'), want.text);
});

test('detect draws the box over the image', async () => {
  // The tiny model has random weights: look for a seed whose sampled answer holds a box,
  // through the same API the page uses, then let the page run it.
  const image = readFileSync(IMAGE()).toString('base64');
  let seed = -1;
  let box = null;
  for (let s = 0; s < 300 && seed < 0; s++) {
    const r = await fetch(server.url + '/v1/detect', {
      method: 'POST',
      body: JSON.stringify({ image, objects: 'cat', temperature: 2, seed: s, max_tokens: 12 }),
    });
    const j = await r.json();
    // The page draws the first valid object in magenta: it must be large enough to find.
    const first = (j.objects || []).find((o) => o.box && !o.error);
    if (first && first.box.x1 - first.box.x0 > 15 && first.box.y1 - first.box.y0 > 10) { seed = s; box = first.box; }
  }
  assert.ok(seed >= 0, 'no seed gave a box');
  const before = await stageShot('before');
  assert.equal(await runTask('detect', { '#prompt': 'cat', '#max-tokens': 12, '#temperature': 2, '#seed': seed }), 'done');
  assert.ok(Number(await page.getAttribute('#answer', 'data-objects')) >= 1);
  const result = JSON.parse(await page.textContent('#result'));
  assert.deepEqual(result.objects.find((o) => o.box && !o.error).box, box);
  const after = await stageShot('detect');
  // The box's top and left edges, in screenshot pixels: magenta now, and mostly not before.
  const natural = await page.evaluate(() => document.getElementById('preview').naturalWidth);
  const scale = after.width / natural;
  const line = Math.max(2, Math.round(Math.max(natural, result.height) / 150));
  let edge = 0, edgeBefore = 0, samples = 0;
  for (let t = 0.1; t <= 0.9; t += 0.05) {
    const x = (box.x0 + t * (box.x1 - box.x0)) * scale;
    const y = (box.y0 + line / 2) * scale;
    const lx = (box.x0 + line / 2) * scale;
    const ly = (box.y0 + t * (box.y1 - box.y0)) * scale;
    edge += isMagenta(after, x, y) + isMagenta(after, lx, ly);
    edgeBefore += isMagenta(before, x, y) + isMagenta(before, lx, ly);
    samples += 2;
  }
  assert.ok(edge >= 0.9 * samples, `box edge magenta at ${edge} of ${samples} points (screenshots in ${shots})`);
  assert.ok(edgeBefore <= 0.2 * samples, 'the image was magenta there already');
});

test('a segmentation mask is drawn translucent over its box', async () => {
  // A 6x4 mask, left half set, through the page's own drawing code.
  const png = new PNG({ width: 6, height: 4, colorType: 0 });
  for (let y = 0; y < 4; y++) for (let x = 0; x < 6; x++) {
    const i = (y * 6 + x) * 4;
    const v = x < 3 ? 255 : 0;
    png.data[i] = png.data[i + 1] = png.data[i + 2] = v;
    png.data[i + 3] = 255;
  }
  const b64 = PNG.sync.write(png, { colorType: 0 }).toString('base64');
  const result = { objects: [{ label: 'thing', box: { x0: 10, y0: 10, x1: 70, y1: 50 },
    mask: { x0: 10, y0: 10, width: 60, height: 40, area: 1200, png_base64: b64 } }] };
  const n = await page.evaluate((r) => drawObjects(r), result);
  assert.equal(n, 1);
  const pixel = await page.evaluate(() => {
    const c = document.getElementById('overlay');
    const k = c.width / document.getElementById('preview').naturalWidth;  // canvas pixels per image pixel
    const d = c.getContext('2d');
    return [Array.from(d.getImageData(25 * k, 30 * k, 1, 1).data), Array.from(d.getImageData(60 * k, 30 * k, 1, 1).data)];
  });
  assert.ok(pixel[0][3] > 60 && pixel[0][0] > 200 && pixel[0][2] > 200, 'inside the mask: translucent magenta ' + pixel[0]);
  assert.equal(pixel[1][3], 0, 'outside the mask: clear');
  await stageShot('mask');
});

test('a server error shows on the page', async () => {
  assert.equal(await runTask('caption', { '#max-tokens': 100000, '#temperature': '', '#seed': '' }), 'error');
  assert.match(await page.textContent('#status'), /Error: 'max_tokens' is 100000; this server generates at most/);
  await page.fill('#max-tokens', '32');
});
