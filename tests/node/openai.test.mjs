// The official `openai` npm client, unchanged, against `paligemma serve`: chat completions
// (one piece and streamed) give the text of `paligemma generate --greedy`, models list,
// API key errors, bad requests, and a stream the client abandons stops its generation.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { startServer, generate, IMAGE, dataUrl, metric } from './server.mjs';

const KEY = 'node-test-key';
let server;
let client;

const messages = (prompt) => [{
  role: 'user',
  content: [
    { type: 'text', text: prompt },
    { type: 'image_url', image_url: { url: dataUrl(IMAGE()) } },
  ],
}];

before(async () => {
  server = await startServer(['--api-key', KEY, '--threads', '2', '--max-tokens-limit', '2000', '--compute-threads', '1']);
  client = new OpenAI({ apiKey: KEY, baseURL: server.url + '/v1', maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const code = await server.stop();
  assert.equal(code, 0, 'serve exits 0 on SIGTERM');
});

test('models.list names the model', async () => {
  const page = await client.models.list();
  assert.deepEqual(page.data.map((m) => m.id), ['tiny-pg1']);
});

test('a completion gives the text of generate --greedy', async () => {
  const want = generate(['--image', IMAGE(), '--prompt', 'caption en', '--max-tokens', '12', '--greedy']);
  const r = await client.chat.completions.create({
    model: 'tiny-pg1', messages: messages('caption en'), max_tokens: 12, temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.equal(r.choices[0].message.content, want.text);
  assert.equal(r.choices[0].finish_reason, 'length');
  assert.equal(r.usage.completion_tokens, want.ids.length);
  assert.equal(r.usage.prompt_tokens, want.prompt_tokens);
});

test('a streamed completion gives the same text, then usage', async () => {
  const want = generate(['--image', IMAGE(), '--prompt', 'caption en', '--max-tokens', '12', '--greedy']);
  const stream = await client.chat.completions.create({
    model: 'tiny-pg1', messages: messages('caption en'), max_tokens: 12, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '';
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    if (!chunk.choices.length) continue;
    text += chunk.choices[0].delta.content ?? '';
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assert.equal(text, want.text);
  assert.equal(finish, 'length');
  assert.equal(usage.completion_tokens, 12);
});

test('sampling parameters reach the sampler (same as the CLI with the same seed)', async () => {
  const want = generate(['--image', IMAGE(), '--prompt', 'caption en', '--max-tokens', '8',
    '--temperature', '1.3', '--top-p', '0.9', '--seed', '9']);
  const r = await client.chat.completions.create({
    model: 'tiny-pg1', messages: messages('caption en'), max_tokens: 8, temperature: 1.3, top_p: 0.9, seed: 9,
  });
  assert.equal(r.choices[0].message.content, want.text);
});

test('a wrong API key is a 401 AuthenticationError', async () => {
  const wrong = new OpenAI({ apiKey: 'nope', baseURL: server.url + '/v1', maxRetries: 0 });
  await assert.rejects(wrong.models.list(), (e) => {
    assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
    assert.equal(e.status, 401);
    return true;
  });
});

test('a bad request is a 400 with the server\'s message', async () => {
  await assert.rejects(
    client.chat.completions.create({ model: 'tiny-pg1', messages: messages('caption en'), max_tokens: 100000 }),
    (e) => {
      assert.ok(e instanceof OpenAI.BadRequestError, String(e));
      assert.equal(e.status, 400);
      assert.match(e.message, /max_tokens/);
      assert.equal(e.code, 'max_tokens_too_large');
      return true;
    });
});

test('abandoning a stream stops its generation', async () => {
  const before = (await metric(server.url, 'pg_generations_cancelled_total{reason="disconnect"}')) ?? 0;
  const stream = await client.chat.completions.create({
    model: 'tiny-pg1', messages: messages('caption en'), max_tokens: 2000, stream: true,
  });
  let chunks = 0;
  for await (const chunk of stream) {
    if (++chunks >= 2) break;  // breaking out aborts the request
  }
  let cancelled = before;
  for (let i = 0; i < 100 && cancelled === before; i++) {
    await new Promise((r) => setTimeout(r, 50));
    cancelled = (await metric(server.url, 'pg_generations_cancelled_total{reason="disconnect"}')) ?? 0;
  }
  assert.equal(cancelled, before + 1);
});
