// Drives `cachet serve`'s Anthropic-compatible Messages API with the official
// `@anthropic-ai/sdk` npm package.
//
//   node anthropic_client.test.mjs BASE_URL MODEL [API_KEY]
//
// BASE_URL is the server's root (http://127.0.0.1:PORT), without /v1: the SDK adds
// /v1/messages. With API_KEY the server must have been started with --api-key API_KEY.
// Prints one line per check ("ok - NAME" / "not ok - NAME: WHY") and exits 1 if any failed;
// exits 77 (skip) when POST /v1/messages is a 404, i.e. the endpoint is not implemented yet.
import Anthropic from "@anthropic-ai/sdk";
import {
  Checks,
  Skip,
  describeError,
  expect,
  expectApiError,
  expectEq,
  expectInteger,
  expectString,
  longSystemPrompt,
  parseArgs,
  pickStopString,
  rawRequest,
  show,
} from "./harness.mjs";

const { baseUrl, model, apiKey } = parseArgs("anthropic_client.test.mjs");
// The SDK sends apiKey as X-Api-Key and authToken as Authorization: Bearer; with a key both
// carry it (the server's contract is the Bearer header; Anthropic's own clients send X-Api-Key).
const client = new Anthropic({
  baseURL: baseUrl,
  apiKey: apiKey ?? "none",
  authToken: apiKey ?? null,
  maxRetries: 0,
  timeout: 120 * 1000,
});
const authHeaders = apiKey ? { authorization: `Bearer ${apiKey}`, "x-api-key": apiKey } : {};

// --- is the endpoint there? -------------------------------------------------------------------
{
  let probe;
  try {
    probe = await rawRequest(baseUrl, "POST", "/v1/messages", {
      headers: { ...authHeaders, "anthropic-version": "2023-06-01" },
      body: { model, max_tokens: 1, messages: [{ role: "user", content: "Hi" }] },
    });
  } catch (err) {
    console.log(`not ok - POST /v1/messages: ${describeError(err)}`);
    process.exit(1);
  }
  if (probe.status === 404) {
    console.log("skip - anthropic endpoint not implemented");
    process.exit(77);
  }
}

const checks = new Checks();
const USER = [{ role: "user", content: "Say something about caches." }];
const BASE = { model, messages: USER, temperature: 0 };

function checkUsage(usage, what, { outputTokens } = {}) {
  expect(usage && typeof usage === "object", `${what}: no usage: ${show(usage)}`);
  expectInteger(usage.input_tokens, `${what} usage.input_tokens`);
  expectInteger(usage.output_tokens, `${what} usage.output_tokens`);
  expectInteger(usage.cache_read_input_tokens, `${what} usage.cache_read_input_tokens`);
  expectInteger(usage.cache_creation_input_tokens, `${what} usage.cache_creation_input_tokens`);
  // Anthropic's input_tokens counts the prompt tokens not read from the cache.
  expect(
    usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens > 0,
    `${what}: no prompt tokens counted: ${show(usage)}`,
  );
  if (outputTokens !== undefined) expectEq(usage.output_tokens, outputTokens, `${what} usage.output_tokens`);
}

function textOf(message) {
  expect(Array.isArray(message.content), `content is not an array: ${show(message)}`);
  expect(message.content.length >= 1, `no content blocks: ${show(message)}`);
  expectEq(message.content[0].type, "text", "content[0].type");
  expectString(message.content[0].text, "content[0].text");
  return message.content.map((b) => b.text).join("");
}

await checks.run("messages.create: non-streamed, stop_reason max_tokens, usage", async () => {
  const msg = await client.messages.create({ ...BASE, max_tokens: 5 });
  expectEq(msg.type, "message", "type");
  expectEq(msg.role, "assistant", "role");
  expectString(msg.id, "id");
  expectString(msg.model, "model");
  textOf(msg);
  expectEq(msg.stop_reason, "max_tokens", "stop_reason");
  expectEq(msg.stop_sequence, null, "stop_sequence");
  checkUsage(msg.usage, "message", { outputTokens: 5 });
  const again = await client.messages.create({ ...BASE, max_tokens: 5 });
  expectEq(textOf(again), textOf(msg), "the same greedy request's text");
});

await checks.run("messages.create: system prompt and content blocks", async () => {
  const asStrings = await client.messages.create({
    ...BASE,
    system: "You are terse.",
    messages: [{ role: "user", content: "Hello there" }],
    max_tokens: 4,
  });
  const asBlocks = await client.messages.create({
    ...BASE,
    system: [{ type: "text", text: "You are terse." }],
    messages: [{ role: "user", content: [{ type: "text", text: "Hello there" }] }],
    max_tokens: 4,
  });
  expectEq(textOf(asBlocks), textOf(asStrings), "text with block content against string content");
  expectEq(
    asBlocks.usage.input_tokens + asBlocks.usage.cache_read_input_tokens + asBlocks.usage.cache_creation_input_tokens,
    asStrings.usage.input_tokens + asStrings.usage.cache_read_input_tokens + asStrings.usage.cache_creation_input_tokens,
    "prompt tokens with block content against string content",
  );
  // A multi-turn conversation ending with the user.
  const turns = await client.messages.create({
    ...BASE,
    messages: [
      { role: "user", content: "Hello" },
      { role: "assistant", content: "Hi." },
      { role: "user", content: "How are you?" },
    ],
    max_tokens: 3,
  });
  textOf(turns);
});

await checks.run("messages.stream: text equals non-streamed; final message", async () => {
  const plain = await client.messages.create({ ...BASE, max_tokens: 8 });
  let text = "";
  const stream = client.messages.stream({ ...BASE, max_tokens: 8 });
  stream.on("text", (delta) => {
    text += delta;
  });
  const final = await stream.finalMessage();
  expectEq(text, textOf(plain), "streamed text");
  expectEq(textOf(final), textOf(plain), "final message text");
  expectEq(final.stop_reason, "max_tokens", "final stop_reason");
  expectEq(final.role, "assistant", "final role");
  // The SDK takes output_tokens and the cache counts of the final message from message_delta.
  checkUsage(final.usage, "final message", { outputTokens: 8 });
});

await checks.run("messages.create stream: true: the event sequence", async () => {
  const plain = await client.messages.create({ ...BASE, max_tokens: 6 });
  const events = [];
  for await (const event of await client.messages.create({ ...BASE, max_tokens: 6, stream: true })) {
    events.push(event);
  }
  const types = events.map((e) => e.type);
  expectEq(types[0], "message_start", "first event");
  expectEq(types[types.length - 1], "message_stop", "last event");
  const start = events[0].message;
  expectEq(start.type, "message", "message_start message.type");
  expectEq(start.role, "assistant", "message_start message.role");
  expectString(start.id, "message_start message.id");
  expect(Array.isArray(start.content) && start.content.length === 0, `message_start content: ${show(start.content)}`);
  expectEq(start.stop_reason, null, "message_start stop_reason");
  expect(start.usage && Number.isInteger(start.usage.input_tokens), `message_start usage: ${show(start.usage)}`);
  // message_start, then per block start / deltas / stop, then message_delta, message_stop.
  const body = types.slice(1, -2);
  expectEq(types[types.length - 2], "message_delta", "second-to-last event");
  expectEq(body[0], "content_block_start", "second event");
  expectEq(body[body.length - 1], "content_block_stop", "event before message_delta");
  let text = "";
  let open = null;
  for (const e of events.slice(1, -2)) {
    if (e.type === "content_block_start") {
      expectEq(open, null, "content_block_start inside an open block");
      open = e.index;
      expectEq(e.content_block.type, "text", "content_block_start content_block.type");
      expectEq(e.content_block.text, "", "content_block_start content_block.text");
    } else if (e.type === "content_block_delta") {
      expectEq(e.index, open, "content_block_delta index");
      expectEq(e.delta.type, "text_delta", "delta.type");
      text += e.delta.text;
    } else if (e.type === "content_block_stop") {
      expectEq(e.index, open, "content_block_stop index");
      open = null;
    } else {
      throw new Error(`unexpected event ${e.type} between the blocks`);
    }
  }
  expectEq(text, textOf(plain), "text_delta concatenation");
  const delta = events[events.length - 2];
  expectEq(delta.delta.stop_reason, "max_tokens", "message_delta stop_reason");
  expect(delta.usage && delta.usage.output_tokens === 6, `message_delta usage: ${show(delta.usage)}`);
});

await checks.run("prefix cache: a repeated system prompt gives cache_read_input_tokens", async () => {
  const system = longSystemPrompt();
  const first = await client.messages.create({
    ...BASE,
    system,
    messages: [{ role: "user", content: "Tell me about apples." }],
    max_tokens: 2,
  });
  checkUsage(first.usage, "first");
  const second = await client.messages.create({
    ...BASE,
    system,
    messages: [{ role: "user", content: "What do you know about pears?" }],
    max_tokens: 2,
  });
  checkUsage(second.usage, "second");
  expect(second.usage.cache_read_input_tokens > 0, `second request's usage: ${show(second.usage)}`);
  // Streamed: message_start's usage reports the cache read too.
  const stream = client.messages.stream({
    ...BASE,
    system,
    messages: [{ role: "user", content: "And plums?" }],
    max_tokens: 2,
  });
  let startUsage;
  stream.on("streamEvent", (event) => {
    // A copy: the SDK's message snapshot (event.message) is updated by later events.
    if (event.type === "message_start") startUsage = JSON.parse(JSON.stringify(event.message.usage));
  });
  const final = await stream.finalMessage();
  expect(startUsage?.cache_read_input_tokens > 0, `message_start usage: ${show(startUsage)}`);
  expect(final.usage.cache_read_input_tokens > 0, `final message usage: ${show(final.usage)}`);
});

await checks.run("stop_sequences end the text before the first occurrence", async () => {
  const plain = await client.messages.create({ ...BASE, max_tokens: 12 });
  const text = textOf(plain);
  if (plain.stop_reason !== "max_tokens") {
    throw new Skip(`greedy output ended early (${plain.stop_reason}): no text to take a stop from`);
  }
  const stop = pickStopString(text);
  if (stop === null) throw new Error(`greedy output too short for a stop sequence: ${show(text)}`);
  const expected = text.slice(0, text.indexOf(stop));
  const stopped = await client.messages.create({ ...BASE, max_tokens: 12, stop_sequences: [stop] });
  expectEq(stopped.stop_reason, "stop_sequence", "stop_reason");
  expectEq(stopped.stop_sequence, stop, "stop_sequence");
  const stoppedText = stopped.content.map((b) => b.text).join("");
  expectEq(stoppedText, expected, `text with stop ${show(stop)} (full text ${show(text)})`);
  const stream = client.messages.stream({ ...BASE, max_tokens: 12, stop_sequences: [stop] });
  const final = await stream.finalMessage();
  expectEq(final.stop_reason, "stop_sequence", "streamed stop_reason");
  expectEq(final.stop_sequence, stop, "streamed stop_sequence");
  expectEq(final.content.map((b) => b.text).join(""), expected, "streamed text");
});

function checkAnthropicErrorBody(err) {
  // Anthropic's shape: {"type": "error", "error": {"type": "invalid_request_error", "message": ...}}
  const body = err.error;
  expect(body && typeof body === "object", `no JSON error body: ${show(body)}`);
  expectEq(body.type, "error", "body.type");
  expectEq(body.error?.type, "invalid_request_error", "body.error.type");
  expectString(body.error?.message, "body.error.message");
}

await checks.run("error: max_tokens 0 is a 400", async () => {
  const err = await expectApiError(
    client.messages.create({ ...BASE, max_tokens: 0 }),
    Anthropic.BadRequestError,
    400,
  );
  checkAnthropicErrorBody(err);
});

await checks.run("error: a missing max_tokens is a 400", async () => {
  const err = await expectApiError(
    client.messages.create({ ...BASE }),
    Anthropic.BadRequestError,
    400,
  );
  checkAnthropicErrorBody(err);
});

await checks.run("error: an unknown model is a 404", async () => {
  await expectApiError(
    client.messages.create({ ...BASE, model: `${model}-does-not-exist`, max_tokens: 2 }),
    Anthropic.NotFoundError,
    404,
  );
});

await checks.run("error: a wrong API key is a 401; X-Api-Key alone is accepted", async () => {
  if (!apiKey) throw new Skip("no API_KEY given");
  const wrong = new Anthropic({ baseURL: baseUrl, apiKey: "wrong-key", authToken: "wrong-key", maxRetries: 0 });
  await expectApiError(wrong.messages.create({ ...BASE, max_tokens: 2 }), Anthropic.AuthenticationError, 401);
  // Anthropic's clients send the key as X-Api-Key (ANTHROPIC_API_KEY), not as a Bearer token.
  const xApiKeyOnly = new Anthropic({ baseURL: baseUrl, apiKey, authToken: null, maxRetries: 0 });
  const msg = await xApiKeyOnly.messages.create({ ...BASE, max_tokens: 2 });
  textOf(msg);
});

checks.finish();
