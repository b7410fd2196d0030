// The web page of `paligemma serve`: pick an image and a task, stream the answer from the
// server's API, and draw the boxes and masks of detect / segment over the image.
'use strict';

const $ = (id) => document.getElementById(id);
// Box colours, one per object; the first is pure magenta so that tests can find it.
const COLORS = ['#ff00ff', '#00c8ff', '#ffb000', '#32d74b', '#ff453a', '#bf5af2'];
const PLACEHOLDERS = {
  caption: 'no prompt needed',
  ask: 'What is in the image?',
  detect: 'objects to find, separated by ";" (e.g. cat ; dog)',
  segment: 'objects to segment, separated by ";"',
  prompt: 'a PaliGemma prompt, e.g. "caption en" or "detect cat"',
};

let imageDataUrl = null;   // the chosen image as a data: URL
let controller = null;     // aborts the running request (Stop)

function setStatus(text, isError = false) {
  $('status').textContent = text;
  $('status').classList.toggle('error', isError);
}

function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = $('api-key').value.trim();
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}

// Loads a File into the preview and keeps it as a data: URL for the requests.
function useFile(file) {
  if (!file) return;
  if (!/^image\/(jpeg|png)$/.test(file.type)) {
    setStatus('Please choose a JPEG or PNG image (got ' + (file.type || 'an unknown type') + ').', true);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    imageDataUrl = reader.result;
    const img = $('preview');
    img.onload = () => {
      $('stage').hidden = false;
      clearOverlay();
      setStatus('Image ' + img.naturalWidth + '×' + img.naturalHeight + ' ready.');
    };
    img.src = imageDataUrl;
  };
  reader.readAsDataURL(file);
}

// Clears the overlay and sizes it to the image: drawing coordinates are image pixels, and
// the canvas has enough pixels of its own for crisp lines on the scaled-up preview.
function clearOverlay() {
  const img = $('preview');
  const canvas = $('overlay');
  const w = img.naturalWidth || 1, h = img.naturalHeight || 1;
  const k = Math.max(1, Math.ceil((img.clientWidth || w) * (window.devicePixelRatio || 1) / w));
  canvas.width = w * k;
  canvas.height = h * k;
  const ctx = canvas.getContext('2d');
  ctx.setTransform(k, 0, 0, k, 0, 0);
  ctx.clearRect(0, 0, w, h);
}

// Takes a data: URL; resolves to the loaded image.
function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('cannot load the mask'));
    img.src = src;
  });
}

// Draws a mask ({x0, y0, width, height, png_base64}: a greyscale PNG, 255 = object) in a
// translucent colour over its pixel rectangle.
async function drawMask(ctx, mask, color) {
  if (!mask || !mask.png_base64 || !(mask.width > 0) || !(mask.height > 0)) return;
  const png = await loadImage('data:image/png;base64,' + mask.png_base64);
  const tmp = document.createElement('canvas');
  tmp.width = mask.width;
  tmp.height = mask.height;
  const tctx = tmp.getContext('2d');
  tctx.drawImage(png, 0, 0, mask.width, mask.height);
  // Grey level -> alpha of the object's colour.
  const data = tctx.getImageData(0, 0, mask.width, mask.height);
  const r = parseInt(color.slice(1, 3), 16), g = parseInt(color.slice(3, 5), 16), b = parseInt(color.slice(5, 7), 16);
  for (let i = 0; i < data.data.length; i += 4) {
    const on = data.data[i] > 127;
    data.data[i] = r; data.data[i + 1] = g; data.data[i + 2] = b;
    data.data[i + 3] = on ? 115 : 0;
  }
  tctx.putImageData(data, 0, 0);
  ctx.drawImage(tmp, mask.x0, mask.y0);
}

// Draws every object of a detect / segment result ({objects: [{label, box: {x0,y0,x1,y1},
// mask?}]}, boxes in pixels of the image); resolves to the number of boxes drawn.
async function drawObjects(result) {
  clearOverlay();
  const objects = (result && Array.isArray(result.objects)) ? result.objects : [];
  const canvas = $('overlay');
  const ctx = canvas.getContext('2d');
  const img = $('preview');
  const line = Math.max(2, Math.round(Math.max(img.naturalWidth, img.naturalHeight) / 150));
  let drawn = 0;
  for (const o of objects) {
    if (!o || !o.box || o.error) continue;
    const color = COLORS[drawn % COLORS.length];
    const { x0, y0, x1, y1 } = o.box;
    if (o.mask) await drawMask(ctx, o.mask, color);
    ctx.strokeStyle = color;
    ctx.lineWidth = line;
    ctx.strokeRect(x0 + line / 2, y0 + line / 2, Math.max(1, x1 - x0 - line), Math.max(1, y1 - y0 - line));
    if (o.label) {
      ctx.font = `${Math.max(10, line * 5)}px sans-serif`;
      ctx.fillStyle = color;
      ctx.fillText(o.label, x0 + line * 2, Math.max(line * 6, y0 - line));
    }
    drawn++;
  }
  return drawn;
}

// Reads a server-sent event stream, calling onData(json) for each "data:" event.
async function readEvents(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;  // comments (": keep-alive") and others
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        onData(JSON.parse(data));
      }
    }
  }
}

function samplingFields(body) {
  const max = parseInt($('max-tokens').value, 10);
  if (max > 0) body.max_tokens = max;
  const t = $('temperature').value;
  if (t !== '') body.temperature = parseFloat(t);
  const seed = $('seed').value;
  if (seed !== '') body.seed = parseInt(seed, 10);
  return body;
}

// Takes the task and prompt; returns [url, body] of the streaming request.
function buildRequest(task, prompt) {
  if (task === 'prompt') {
    return ['/v1/chat/completions', samplingFields({
      messages: [{ role: 'user', content: [
        { type: 'text', text: prompt },
        { type: 'image_url', image_url: { url: imageDataUrl } },
      ] }],
      stream: true,
    })];
  }
  const body = samplingFields({ image: imageDataUrl, stream: true, language: $('language').value.trim() || 'en' });
  if (task === 'segment') body.mask_format = 'png';
  if (task === 'ask') body.question = prompt;
  if (task === 'detect' || task === 'segment') body.objects = prompt;
  return ['/v1/' + task, body];
}

async function run(event) {
  event.preventDefault();
  if (!imageDataUrl) {
    setStatus('Choose an image first.', true);
    return;
  }
  const task = $('task').value;
  const prompt = $('prompt').value.trim();
  if ((task === 'ask' || task === 'detect' || task === 'segment' || task === 'prompt') && !prompt) {
    setStatus('Type ' + (task === 'ask' ? 'a question' : task === 'prompt' ? 'a prompt' : 'the objects') + ' first.', true);
    return;
  }
  const [url, body] = buildRequest(task, prompt);
  $('answer').textContent = '';
  $('result').textContent = '';
  clearOverlay();
  controller = new AbortController();
  $('run').disabled = true;
  $('stop').disabled = false;
  setStatus('Running…');
  document.body.dataset.state = 'running';
  const t0 = performance.now();
  try {
    const response = await fetch(url, { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: controller.signal });
    if (!response.ok) {
      let message = response.status + ' ' + response.statusText;
      try { message = (await response.json()).error.message || message; } catch (_) { /* not JSON */ }
      throw new Error(message);
    }
    let failure = null;
    let result = null;
    await readEvents(response, (data) => {
      if (data.error) { failure = data.error.message || 'error'; return; }
      if (data.text !== undefined) $('answer').textContent += data.text;
      if (data.choices && data.choices[0] && data.choices[0].delta && data.choices[0].delta.content) {
        $('answer').textContent += data.choices[0].delta.content;
      }
      if (data.result) result = data.result;
    });
    if (failure) throw new Error(failure);
    if (result) {
      $('result').textContent = JSON.stringify(result, null, 2);
      const n = await drawObjects(result);
      $('answer').dataset.objects = String(n);
    }
    setStatus('Done in ' + ((performance.now() - t0) / 1000).toFixed(2) + ' s.');
    document.body.dataset.state = 'done';
  } catch (err) {
    if (err.name === 'AbortError') {
      setStatus('Stopped.');
    } else {
      setStatus('Error: ' + err.message, true);
    }
    document.body.dataset.state = 'error';
  } finally {
    controller = null;
    $('run').disabled = false;
    $('stop').disabled = true;
  }
}

function updatePrompt() {
  const task = $('task').value;
  $('prompt').placeholder = PLACEHOLDERS[task];
  $('prompt').disabled = task === 'caption';
  $('prompt-label').firstChild.textContent = task === 'ask' ? 'Question' : (task === 'detect' || task === 'segment') ? 'Objects' : 'Prompt';
}

async function checkHealth() {
  const pill = $('health');
  try {
    const r = await fetch('/health');
    const j = await r.json();
    pill.textContent = r.ok ? 'ready: ' + j.model : j.status;
    pill.className = 'pill ' + (r.ok ? 'ok' : '');
    if (!r.ok) setTimeout(checkHealth, 1000);
  } catch (_) {
    pill.textContent = 'server unreachable';
    pill.className = 'pill bad';
    setTimeout(checkHealth, 3000);
  }
}

function init() {
  const drop = $('drop');
  $('file').addEventListener('change', (e) => useFile(e.target.files[0]));
  ['dragenter', 'dragover'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add('over'); }));
  ['dragleave', 'drop'].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.remove('over'); }));
  drop.addEventListener('drop', (e) => useFile(e.dataTransfer.files[0]));
  $('task').addEventListener('change', updatePrompt);
  $('form').addEventListener('submit', run);
  $('stop').addEventListener('click', () => controller && controller.abort());
  const saved = window.localStorage && localStorage.getItem('pg-api-key');
  if (saved) $('api-key').value = saved;
  $('api-key').addEventListener('change', () => localStorage.setItem('pg-api-key', $('api-key').value));
  updatePrompt();
  checkHealth();
}

init();
