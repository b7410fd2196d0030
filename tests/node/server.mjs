// Starts `paligemma serve` on a free loopback port for a Node test and stops it afterwards.
// The binary and model come from PG_CLI_PATH and PG_MODEL_DIR (tests/node/run.sh sets them).
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export const CLI = process.env.PG_CLI_PATH;
export const MODEL = process.env.PG_MODEL_DIR;

// Takes extra `serve` flags; resolves to {url, port, logs(), stop()} once /health is 200.
export async function startServer(extraArgs = []) {
  if (!CLI || !MODEL) throw new Error('PG_CLI_PATH and PG_MODEL_DIR must be set (see tests/node/run.sh)');
  const proc = spawn(CLI, ['serve', '--model', MODEL, '--host', '127.0.0.1', '--port', '0', ...extraArgs], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('serve did not start:\n' + stderr)), 30000);
    proc.stderr.on('data', (d) => {
      stderr += d.toString();
      const m = stderr.match(/"port":(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => reject(new Error(`serve exited with ${code}:\n${stderr}`)));
  });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(url + '/health')).status === 200) break;
    } catch (_) { /* not yet */ }
    if (i > 300) throw new Error('serve never became healthy:\n' + stderr);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    logs: () => stderr,
    // Sends SIGTERM; resolves to the exit code (null if a signal ended it).
    stop: () => new Promise((resolve) => {
      if (proc.exitCode !== null) return resolve(proc.exitCode);
      proc.once('exit', (code) => resolve(code));
      proc.kill('SIGTERM');
    }),
  };
}

// Takes generate flags; returns `paligemma generate --json` output as an object.
export function generate(args) {
  const r = spawnSync(CLI, ['generate', '--model', MODEL, ...args, '--json'], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error('generate failed: ' + r.stderr);
  return JSON.parse(r.stdout);
}

export const IMAGE = () => path.join(MODEL, 'image.png');
export const dataUrl = (file) => 'data:image/png;base64,' + readFileSync(file).toString('base64');

// Reads one metric's value from /metrics (the first line that starts with `name `).
export async function metric(url, name) {
  const text = await (await fetch(url + '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}
