// The official openai package against hymba serve on the shipped model:
// chat and text completions, streamed and not, logprobs, usage, errors.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import OpenAI from "openai";
import { shippedModel, startServer } from "./server_process.mjs";

let server;
let client;

before(async () => {
  server = await startServer(["-m", shippedModel, "--parallel", "4", "--api-key", "test-key", "-t", "2"]);
  client = new OpenAI({ baseURL: server.url + "/v1", apiKey: "test-key", maxRetries: 0 });
});

after(async () => {
  assert.equal(await server.stop(), 0, "hymba serve exits cleanly on SIGTERM");
});

const messages = [
  { role: "system", content: "Answer in the words of the King James Bible." },
  { role: "user", content: "Who led Israel out of Egypt?" },
];

test("models.list names the served model", async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), ["hymba-kjv-tiny"]);
});

test("chat.completions.create, not streamed", async () => {
  const completion = await client.chat.completions.create({ model: "hymba-kjv-tiny", messages, max_tokens: 16, temperature: 0 });
  assert.match(completion.id, /^chatcmpl-/);
  assert.equal(completion.object, "chat.completion");
  assert.equal(completion.choices.length, 1);
  assert.equal(completion.choices[0].message.role, "assistant");
  assert.ok(completion.choices[0].message.content.length > 0);
  assert.equal(completion.choices[0].finish_reason, "length");
  assert.equal(completion.usage.completion_tokens, 16);
  assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + 16);
});

test("chat.completions.create, streamed, equals the unstreamed reply", async () => {
  const request = { model: "hymba-kjv-tiny", messages, max_tokens: 16, temperature: 0 };
  const whole = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } });
  let text = "";
  const ids = new Set();
  let roles = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    ids.add(chunk.id);
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      if (choice.delta.role) roles += 1;
      text += choice.delta.content ?? "";
      if (choice.finish_reason) finish = choice.finish_reason;
    }
  }
  assert.equal(ids.size, 1, "every chunk has the same id");
  assert.equal(roles, 1, "the role comes once, first");
  assert.equal(finish, "length");
  assert.equal(text, whole.choices[0].message.content);
  assert.equal(usage.completion_tokens, 16);
  assert.ok(usage.prompt_tokens_details.cached_tokens > 0, "the same prompt again continues from the saved state");
});

test("a follow-up turn reuses the first exchange", async () => {
  const first = await client.chat.completions.create({ model: "m", messages, max_tokens: 12, temperature: 0 });
  const followUp = [...messages, first.choices[0].message, { role: "user", content: "And where did they go?" }];
  const second = await client.chat.completions.create({ model: "m", messages: followUp, max_tokens: 12, temperature: 0 });
  assert.ok(second.usage.prompt_tokens_details.cached_tokens >= first.usage.prompt_tokens);
});

test("completions.create with logprobs, streamed and not", async () => {
  const request = { model: "m", prompt: "And God said unto Moses,", max_tokens: 8, temperature: 0, logprobs: 3 };
  const whole = await client.completions.create(request);
  assert.equal(whole.object, "text_completion");
  const logprobs = whole.choices[0].logprobs;
  assert.equal(logprobs.tokens.length, 8);
  assert.equal(logprobs.tokens.join(""), whole.choices[0].text, "the text continues the prompt, leading space and all");
  for (let i = 0; i < 8; i++) {
    assert.ok(logprobs.token_logprobs[i] <= 0);
    const alternatives = Object.values(logprobs.top_logprobs[i]);
    assert.equal(alternatives.length, 3);
    assert.equal(Math.max(...alternatives), logprobs.token_logprobs[i], "greedy picks the most likely token");
  }
  let text = "";
  for await (const chunk of await client.completions.create({ ...request, stream: true })) text += chunk.choices[0]?.text ?? "";
  assert.equal(text, whole.choices[0].text);
});

test("chat logprobs carry token text and bytes", async () => {
  const completion = await client.chat.completions.create({
    model: "m", messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2,
  });
  const content = completion.choices[0].logprobs.content;
  assert.equal(content.length, 4);
  for (const token of content) {
    assert.deepEqual(token.bytes, [...Buffer.from(token.token, "utf8")]);
    assert.equal(token.top_logprobs.length, 2);
  }
});

test("errors arrive as OpenAI API errors", async () => {
  await assert.rejects(
    client.completions.create({ model: "m", prompt: "x".repeat(20000), max_tokens: 1 }),
    (error) => error instanceof OpenAI.BadRequestError && error.code === "context_length_exceeded" &&
      /maximum context length is 2048 tokens, but the prompt has \d+ tokens/.test(error.message),
  );
  await assert.rejects(
    client.chat.completions.create({ model: "m", messages, temperature: 5 }),
    (error) => error instanceof OpenAI.BadRequestError && error.param === "temperature",
  );
  const anonymous = new OpenAI({ baseURL: server.url + "/v1", apiKey: "wrong", maxRetries: 0 });
  await assert.rejects(anonymous.models.list(), (error) => error instanceof OpenAI.AuthenticationError);
});
