// Load test: C concurrent streaming clients each send R chat requests to
// `hymba serve`; every reply must arrive without error and, sampling greedily,
// equal the same request served alone (measured first, one at a time).
// Prints p50/p99 latency, time to first token and aggregate tokens/s.
//
//   node tests/server/load_test.mjs [--clients 16] [--requests 50] [--max-tokens 24]
//        [--prompts 200] [--model DIR|FILE | --url http://host:port] [--parallel N] [--threads T]
//        [--no-baseline] [--json]
import { parseArgs } from "node:util";
import { shippedModel, startServer } from "./server_process.mjs";

const { values: options } = parseArgs({
  options: {
    clients: { type: "string", default: "16" },
    requests: { type: "string", default: "50" },
    "max-tokens": { type: "string", default: "24" },
    prompts: { type: "string", default: "200" },
    model: { type: "string", default: shippedModel },
    url: { type: "string" },
    parallel: { type: "string" },
    threads: { type: "string", default: "0" },
    "prompt-words": { type: "string", default: "12" },
    "no-baseline": { type: "boolean", default: false },
    json: { type: "boolean", default: false },
  },
});
const clients = Number(options.clients);
const perClient = Number(options.requests);
const maxTokens = Number(options["max-tokens"]);
const distinct = Number(options.prompts);

const words = ("and god said let there be light and there was light and god saw the light that it was good " +
  "and god divided the light from the darkness in the beginning was the word").split(" ");
// Distinct, deterministic prompts; more requests than prompts repeat some, as
// clients repeating a question do.
function prompt(index) {
  const picked = [];
  let state = index * 2654435761 % 4294967296;
  for (let i = 0; i < Number(options["prompt-words"]); i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    picked.push(words[state % words.length]);
  }
  return `Request ${index}: ${picked.join(" ")}`;
}

async function chat(url, index) {
  const started = performance.now();
  const response = await fetch(url + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      messages: [{ role: "user", content: prompt(index) }],
      max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true },
    }),
  });
  if (!response.ok) throw new Error(`request ${index}: HTTP ${response.status}: ${await response.text()}`);
  const decoder = new TextDecoder();
  let buffer = "", text = "", firstToken = null, usage = null, done = false, ids = new Set();
  for await (const bytes of response.body) {
    buffer += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      if (!frame.startsWith("data: ")) throw new Error(`request ${index}: bad frame ${frame}`);
      const data = frame.slice(6);
      if (data === "[DONE]") { done = true; continue; }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(`request ${index}: ${chunk.error.message}`);
      ids.add(chunk.id);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices) {
        if (choice.delta.content) {
          if (firstToken === null) firstToken = performance.now() - started;
          text += choice.delta.content;
        }
      }
    }
  }
  if (!done || !usage || ids.size !== 1) throw new Error(`request ${index}: incomplete stream`);
  return { text, tokens: usage.completion_tokens, cached: usage.prompt_tokens_details.cached_tokens,
           seconds: (performance.now() - started) / 1000, firstToken: (firstToken ?? 0) / 1000 };
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const server = options.url ? null : await startServer([
  "-m", options.model, "--parallel", options.parallel ?? String(clients), "-t", options.threads,
  "--max-queue", String(clients * 2),
]);
const url = options.url ?? server.url;
let failures = 0;
try {
  const alone = new Map();
  if (!options["no-baseline"]) {
    for (let i = 0; i < Math.min(distinct, clients * perClient); i++) alone.set(i, (await chat(url, i)).text);
  }
  const results = [];
  const errors = [];
  const started = performance.now();
  await Promise.all(Array.from({ length: clients }, async (_, client) => {
    for (let r = 0; r < perClient; r++) {
      const index = (client * perClient + r) % distinct;
      try {
        const result = await chat(url, index);
        results.push(result);
        if (alone.has(index) && alone.get(index) !== result.text) {
          errors.push(`request ${index}: under load "${result.text}" but alone "${alone.get(index)}"`);
        }
      } catch (error) {
        errors.push(error.message);
      }
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const latencies = results.map((r) => r.seconds).sort((a, b) => a - b);
  const firstTokens = results.map((r) => r.firstToken).sort((a, b) => a - b);
  const tokens = results.reduce((sum, r) => sum + r.tokens, 0);
  const summary = {
    clients, requests: clients * perClient, completed: results.length, errors: errors.length,
    mismatches_checked: alone.size > 0, cached_prompt_tokens: results.reduce((sum, r) => sum + r.cached, 0),
    seconds: Number(seconds.toFixed(2)), generated_tokens: tokens, tokens_per_second: Number((tokens / seconds).toFixed(1)),
    latency_p50_s: Number(percentile(latencies, 50).toFixed(3)), latency_p99_s: Number(percentile(latencies, 99).toFixed(3)),
    first_token_p50_s: Number(percentile(firstTokens, 50).toFixed(3)), first_token_p99_s: Number(percentile(firstTokens, 99).toFixed(3)),
  };
  if (options.json) {
    console.log(JSON.stringify(summary));
  } else {
    console.log(`| clients | requests | errors | generated tokens | aggregate tokens/s | latency p50 | latency p99 | first token p50 | first token p99 |`);
    console.log(`|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
    console.log(`| ${clients} | ${results.length}/${clients * perClient} | ${errors.length} | ${tokens} | ${summary.tokens_per_second} | ` +
      `${summary.latency_p50_s} s | ${summary.latency_p99_s} s | ${summary.first_token_p50_s} s | ${summary.first_token_p99_s} s |`);
  }
  for (const error of errors.slice(0, 10)) console.error("load test: " + error);
  failures = errors.length + (results.length === clients * perClient ? 0 : 1);
} finally {
  if (server) await server.stop();
}
process.exit(failures === 0 ? 0 : 1);
