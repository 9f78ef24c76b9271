// Drives `cachet serve`'s OpenAI-compatible API with the official `openai` npm package.
//
//   node openai_client.test.mjs BASE_URL MODEL [API_KEY]
//
// BASE_URL is the server's root (http://127.0.0.1:PORT); MODEL the model name it serves. With
// API_KEY the server must have been started with --api-key API_KEY, and the 401 checks run too.
// Prints one line per check ("ok - NAME" / "not ok - NAME: WHY") and exits 1 if any failed.
//
// The model is a random-weight one: its text is gibberish, so the checks are on structure and
// invariants (greedy output is deterministic; streamed equals non-streamed; usage adds up).
import OpenAI from "openai";
import {
  Checks,
  Skip,
  expect,
  expectApiError,
  expectEq,
  expectInteger,
  expectNumber,
  expectString,
  longSystemPrompt,
  parseArgs,
  pickStopString,
  rawRequest,
  show,
  uniqueSuffix,
} from "./harness.mjs";

const { baseUrl, model, apiKey } = parseArgs("openai_client.test.mjs");
const client = new OpenAI({
  baseURL: `${baseUrl}/v1`,
  apiKey: apiKey ?? "none",
  maxRetries: 0,
  timeout: 120 * 1000,
});
const authHeaders = apiKey ? { authorization: `Bearer ${apiKey}` } : {};
const checks = new Checks();

const PROMPT = "The quick brown fox jumps over the lazy dog. Once upon a time";
// Greedy and exactly max_tokens long (vLLM's ignore_eos), so runs can be compared.
const GREEDY = { temperature: 0, ignore_eos: true };

function checkUsage(usage, what, { completionTokens } = {}) {
  expect(usage && typeof usage === "object", `${what}: no usage object`);
  expectInteger(usage.prompt_tokens, `${what} usage.prompt_tokens`, { min: 1 });
  expectInteger(usage.completion_tokens, `${what} usage.completion_tokens`);
  expectEq(
    usage.total_tokens,
    usage.prompt_tokens + usage.completion_tokens,
    `${what} usage.total_tokens (prompt_tokens + completion_tokens)`,
  );
  if (completionTokens !== undefined) {
    expectEq(usage.completion_tokens, completionTokens, `${what} usage.completion_tokens`);
  }
  expect(
    usage.prompt_tokens_details && typeof usage.prompt_tokens_details === "object",
    `${what}: usage.prompt_tokens_details missing: ${show(usage)}`,
  );
  expectInteger(
    usage.prompt_tokens_details.cached_tokens,
    `${what} usage.prompt_tokens_details.cached_tokens`,
  );
  expect(
    usage.prompt_tokens_details.cached_tokens <= usage.prompt_tokens,
    `${what}: cached_tokens ${usage.prompt_tokens_details.cached_tokens} > prompt_tokens ${usage.prompt_tokens}`,
  );
}

function checkIndices(choices, n, what) {
  expect(Array.isArray(choices), `${what}: choices is not an array`);
  expectEq(choices.length, n, `${what} number of choices`);
  const indices = choices.map((c) => c.index).sort((a, b) => a - b);
  expectEq(show(indices), show([...Array(n).keys()]), `${what} choice indices`);
}

// Reads a completions stream: the text per choice index, the finish reasons, the usage chunk.
async function readCompletionStream(stream) {
  const texts = new Map();
  const finish = new Map();
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    expectEq(chunk.object, "text_completion", "stream chunk object");
    for (const choice of chunk.choices ?? []) {
      texts.set(choice.index, (texts.get(choice.index) ?? "") + (choice.text ?? ""));
      if (choice.finish_reason) finish.set(choice.index, choice.finish_reason);
    }
  }
  return { texts, finish, chunks };
}

// Reads a chat stream: content per index, whether the first delta of each had the role, the
// finish reasons, all chunks.
async function readChatStream(stream) {
  const content = new Map();
  const firstDeltaRole = new Map();
  const finish = new Map();
  const chunks = [];
  for await (const chunk of stream) {
    chunks.push(chunk);
    expectEq(chunk.object, "chat.completion.chunk", "stream chunk object");
    for (const choice of chunk.choices ?? []) {
      if (!firstDeltaRole.has(choice.index)) firstDeltaRole.set(choice.index, choice.delta?.role);
      content.set(choice.index, (content.get(choice.index) ?? "") + (choice.delta?.content ?? ""));
      if (choice.finish_reason) finish.set(choice.index, choice.finish_reason);
    }
  }
  return { content, firstDeltaRole, finish, chunks };
}

// The last chunk of a stream with include_usage: usage set, no choices; the others without usage.
function checkUsageChunk(chunks, what, options) {
  expect(chunks.length >= 2, `${what}: only ${chunks.length} chunks`);
  const last = chunks[chunks.length - 1];
  expect(Array.isArray(last.choices), `${what}: last chunk has no choices array: ${show(last)}`);
  expectEq(last.choices.length, 0, `${what} number of choices in the usage chunk`);
  checkUsage(last.usage, `${what} usage chunk`, options);
  for (const chunk of chunks.slice(0, -1)) {
    expect(
      chunk.usage === undefined || chunk.usage === null,
      `${what}: a chunk before the last has usage: ${show(chunk)}`,
    );
  }
  return last.usage;
}

// ---------------------------------------------------------------------------------------------

await checks.run("models.list contains the model", async () => {
  const page = await client.models.list();
  const ids = page.data.map((m) => m.id);
  expect(ids.includes(model), `model ${model} not in ${show(ids)}`);
  const entry = page.data.find((m) => m.id === model);
  expectEq(entry.object, "model", "model object");
  expectString(entry.owned_by, "model owned_by");
  const retrieved = await client.models.retrieve(model).catch(() => null);
  if (retrieved) expectEq(retrieved.id, model, "models.retrieve id");
});

await checks.run("completions: non-streamed, finish_reason length, usage", async () => {
  const res = await client.completions.create({ model, prompt: PROMPT, max_tokens: 5, ...GREEDY });
  expectEq(res.object, "text_completion", "object");
  expectString(res.id, "id");
  expectInteger(res.created, "created", { min: 1 });
  expectString(res.model, "model");
  checkIndices(res.choices, 1, "choices");
  expectString(res.choices[0].text, "choices[0].text");
  expectEq(res.choices[0].finish_reason, "length", "choices[0].finish_reason");
  checkUsage(res.usage, "completion", { completionTokens: 5 });
  const again = await client.completions.create({ model, prompt: PROMPT, max_tokens: 5, ...GREEDY });
  expectEq(again.choices[0].text, res.choices[0].text, "the same greedy request's text");
});

await checks.run("completions: prompt as an array of token ids", async () => {
  const ids = [785, 3974, 13876, 38835, 34208, 916, 279, 15678, 5562, 13];
  const res = await client.completions.create({ model, prompt: ids, max_tokens: 4, ...GREEDY });
  checkIndices(res.choices, 1, "choices");
  expectString(res.choices[0].text, "choices[0].text");
  checkUsage(res.usage, "completion", { completionTokens: 4 });
  expectEq(res.usage.prompt_tokens, ids.length, "usage.prompt_tokens");
});

await checks.run("completions: prompt as a list of 2 strings gives 2 choices", async () => {
  const res = await client.completions.create({
    model,
    prompt: ["First prompt: hello there", "Second prompt: something else entirely"],
    max_tokens: 5,
    ...GREEDY,
  });
  checkIndices(res.choices, 2, "choices");
  for (const c of res.choices) {
    expectString(c.text, `choices[${c.index}].text`);
    expectEq(c.finish_reason, "length", `choices[${c.index}].finish_reason`);
  }
  checkUsage(res.usage, "completion", { completionTokens: 10 });
  // Each prompt alone gives the same greedy text as its choice.
  const second = await client.completions.create({
    model,
    prompt: "Second prompt: something else entirely",
    max_tokens: 5,
    ...GREEDY,
  });
  const choice1 = res.choices.find((c) => c.index === 1);
  expectEq(choice1.text, second.choices[0].text, "choice 1's text against the prompt alone");
});

await checks.run("completions: prompt as a list of 2 token-id arrays", async () => {
  const res = await client.completions.create({
    model,
    prompt: [
      [785, 3974, 13876],
      [9707, 11, 1879, 0],
    ],
    max_tokens: 3,
    ...GREEDY,
  });
  checkIndices(res.choices, 2, "choices");
  checkUsage(res.usage, "completion", { completionTokens: 6 });
  expectEq(res.usage.prompt_tokens, 7, "usage.prompt_tokens (3 + 4)");
});

await checks.run("completions: streamed text equals non-streamed; usage chunk last", async () => {
  const request = { model, prompt: PROMPT, max_tokens: 8, ...GREEDY };
  const plain = await client.completions.create(request);
  const stream = await client.completions.create({
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  const { texts, finish, chunks } = await readCompletionStream(stream);
  expectEq(show([...texts.keys()]), show([0]), "choice indices in the stream");
  expectEq(texts.get(0), plain.choices[0].text, "streamed text");
  expectEq(finish.get(0), "length", "streamed finish_reason");
  const usage = checkUsageChunk(chunks, "stream", { completionTokens: 8 });
  expectEq(usage.prompt_tokens, plain.usage.prompt_tokens, "usage chunk prompt_tokens");
  // Without include_usage: no usage anywhere.
  const bare = await readCompletionStream(await client.completions.create({ ...request, stream: true }));
  expectEq(bare.texts.get(0), plain.choices[0].text, "streamed text without include_usage");
  for (const chunk of bare.chunks) {
    expect(!chunk.usage, `a chunk has usage without include_usage: ${show(chunk)}`);
  }
});

const CHAT = [
  { role: "system", content: "You are a helpful assistant." },
  { role: "user", content: "Say something about caches." },
];

await checks.run("chat: non-streamed", async () => {
  const res = await client.chat.completions.create({
    model,
    messages: CHAT,
    max_tokens: 8,
    ...GREEDY,
  });
  expectEq(res.object, "chat.completion", "object");
  expectString(res.id, "id");
  expectInteger(res.created, "created", { min: 1 });
  checkIndices(res.choices, 1, "choices");
  const choice = res.choices[0];
  expectEq(choice.message.role, "assistant", "message.role");
  expectString(choice.message.content, "message.content");
  expectEq(choice.finish_reason, "length", "finish_reason");
  checkUsage(res.usage, "chat", { completionTokens: 8 });
  const short = await client.chat.completions.create({
    model,
    messages: CHAT,
    max_completion_tokens: 3,
    ...GREEDY,
  });
  expectEq(short.usage.completion_tokens, 3, "usage.completion_tokens with max_completion_tokens 3");
  // (A trailing U+FFFD is an incomplete UTF-8 sequence that the longer output completes.)
  const shortText = short.choices[0].message.content.replace(/\ufffd+$/, "");
  expect(
    choice.message.content.startsWith(shortText),
    `3-token greedy content ${show(short.choices[0].message.content)} is not a prefix of the 8-token one ${show(choice.message.content)}`,
  );
});

await checks.run("chat: streamed (role first, content equals non-streamed, finish_reason)", async () => {
  const request = { model, messages: CHAT, max_tokens: 8, ...GREEDY };
  const plain = await client.chat.completions.create(request);
  const stream = await client.chat.completions.create({
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  const { content, firstDeltaRole, finish, chunks } = await readChatStream(stream);
  expectEq(firstDeltaRole.get(0), "assistant", "first delta's role");
  expectEq(content.get(0), plain.choices[0].message.content, "streamed content");
  const choiceChunks = chunks.filter((c) => c.choices?.length > 0);
  const lastChoice = choiceChunks[choiceChunks.length - 1].choices[0];
  expectEq(lastChoice.finish_reason, "length", "finish_reason on the last choice chunk");
  for (const chunk of choiceChunks.slice(0, -1)) {
    expect(!chunk.choices[0].finish_reason, `finish_reason before the last chunk: ${show(chunk)}`);
  }
  const ids = new Set(chunks.map((c) => c.id));
  expectEq(ids.size, 1, "distinct chunk ids");
  checkUsageChunk(chunks, "stream", { completionTokens: 8 });
});

await checks.run("chat: the SDK's stream helper (beta.chat.completions.stream)", async () => {
  const request = { model, messages: CHAT, max_tokens: 6, ...GREEDY };
  const plain = await client.chat.completions.create(request);
  let deltas = "";
  const runner = client.beta.chat.completions.stream(request);
  runner.on("content", (delta) => {
    deltas += delta;
  });
  const final = await runner.finalChatCompletion();
  expectEq(final.choices[0].message.role, "assistant", "final message role");
  expectEq(final.choices[0].message.content, plain.choices[0].message.content, "final content");
  expectEq(deltas, plain.choices[0].message.content, "content events");
  expectEq(final.choices[0].finish_reason, "length", "final finish_reason");
});

await checks.run("n: 3 with seed and temperature 1 (completions and chat)", async () => {
  const res = await client.completions.create({
    model,
    prompt: PROMPT,
    n: 3,
    seed: 1234,
    temperature: 1,
    max_tokens: 5,
    ignore_eos: true,
  });
  checkIndices(res.choices, 3, "completions choices");
  for (const c of res.choices) expectString(c.text, `choices[${c.index}].text`);
  checkUsage(res.usage, "completions", { completionTokens: 15 });
  const chat = await client.chat.completions.create({
    model,
    messages: CHAT,
    n: 3,
    seed: 1234,
    temperature: 1,
    max_tokens: 5,
    ignore_eos: true,
  });
  checkIndices(chat.choices, 3, "chat choices");
  for (const c of chat.choices) expectEq(c.message.role, "assistant", `choices[${c.index}] role`);
  checkUsage(chat.usage, "chat", { completionTokens: 15 });
  // Streamed, each index gets its own deltas and finish_reason.
  const stream = await client.chat.completions.create({
    model,
    messages: CHAT,
    n: 3,
    seed: 1234,
    temperature: 1,
    max_tokens: 5,
    ignore_eos: true,
    stream: true,
  });
  const { firstDeltaRole, finish } = await readChatStream(stream);
  expectEq(show([...finish.keys()].sort()), show([0, 1, 2]), "streamed indices with finish_reason");
  for (const i of [0, 1, 2]) expectEq(firstDeltaRole.get(i), "assistant", `first delta role of ${i}`);
});

await checks.run("completions: logprobs 2", async () => {
  const res = await client.completions.create({
    model,
    prompt: PROMPT,
    max_tokens: 5,
    logprobs: 2,
    ...GREEDY,
  });
  const lp = res.choices[0].logprobs;
  expect(lp && typeof lp === "object", `choices[0].logprobs: ${show(lp)}`);
  const n = res.usage.completion_tokens;
  expectEq(n, 5, "completion_tokens");
  for (const field of ["tokens", "token_logprobs", "top_logprobs"]) {
    expect(Array.isArray(lp[field]), `logprobs.${field} is not an array: ${show(lp[field])}`);
    expectEq(lp[field].length, n, `logprobs.${field} length`);
  }
  if (lp.text_offset !== undefined) expectEq(lp.text_offset.length, n, "logprobs.text_offset length");
  lp.tokens.forEach((t, i) => expectString(t, `logprobs.tokens[${i}]`));
  lp.token_logprobs.forEach((v, i) => {
    expectNumber(v, `logprobs.token_logprobs[${i}]`);
    expect(v <= 0, `logprobs.token_logprobs[${i}] = ${v} > 0`);
  });
  lp.top_logprobs.forEach((top, i) => {
    expect(top && typeof top === "object" && !Array.isArray(top), `top_logprobs[${i}]: ${show(top)}`);
    const values = Object.values(top);
    expect(values.length >= 1 && values.length <= 3, `top_logprobs[${i}] has ${values.length} keys`);
    values.forEach((v) => expect(typeof v === "number" && v <= 0, `top_logprobs[${i}]: ${show(top)}`));
    // Greedy: the chosen token is the most likely one.
    expect(
      lp.token_logprobs[i] >= Math.max(...values) - 1e-3,
      `greedy token ${i}'s logprob ${lp.token_logprobs[i]} is below its top ${show(top)}`,
    );
  });
});

await checks.run("chat: logprobs true, top_logprobs 2", async () => {
  const res = await client.chat.completions.create({
    model,
    messages: CHAT,
    max_tokens: 5,
    logprobs: true,
    top_logprobs: 2,
    ...GREEDY,
  });
  const content = res.choices[0].logprobs?.content;
  expect(Array.isArray(content), `choices[0].logprobs.content: ${show(res.choices[0].logprobs)}`);
  expectEq(content.length, res.usage.completion_tokens, "logprobs.content length");
  content.forEach((entry, i) => {
    expectString(entry.token, `content[${i}].token`);
    expectNumber(entry.logprob, `content[${i}].logprob`);
    expect(entry.logprob <= 0, `content[${i}].logprob = ${entry.logprob} > 0`);
    expect(entry.bytes === null || Array.isArray(entry.bytes), `content[${i}].bytes: ${show(entry.bytes)}`);
    expect(Array.isArray(entry.top_logprobs), `content[${i}].top_logprobs: ${show(entry.top_logprobs)}`);
    expectEq(entry.top_logprobs.length, 2, `content[${i}].top_logprobs length`);
    for (const top of entry.top_logprobs) {
      expectString(top.token, `content[${i}].top_logprobs[].token`);
      expect(typeof top.logprob === "number" && top.logprob <= 0, `content[${i}].top_logprobs: ${show(top)}`);
    }
    expect(
      entry.logprob >= Math.max(...entry.top_logprobs.map((t) => t.logprob)) - 1e-3,
      `greedy token ${i}'s logprob is below its top_logprobs: ${show(entry)}`,
    );
  });
  // Streamed, each chunk's logprobs.content covers its tokens.
  const stream = await client.chat.completions.create({
    model,
    messages: CHAT,
    max_tokens: 5,
    logprobs: true,
    top_logprobs: 2,
    stream: true,
    ...GREEDY,
  });
  let streamed = 0;
  for await (const chunk of stream) {
    for (const c of chunk.choices ?? []) streamed += c.logprobs?.content?.length ?? 0;
  }
  expectEq(streamed, content.length, "logprobs.content entries over the stream");
});

await checks.run("stop strings end the text before the first occurrence", async () => {
  const request = { model, prompt: PROMPT, max_tokens: 12, ...GREEDY };
  const plain = await client.completions.create(request);
  const text = plain.choices[0].text;
  const stop = pickStopString(text);
  if (stop === null) throw new Error(`greedy output too short for a stop string: ${show(text)}`);
  const expected = text.slice(0, text.indexOf(stop));
  const stopped = await client.completions.create({ ...request, stop: [stop] });
  expectEq(stopped.choices[0].text, expected, `text with stop ${show(stop)} (full text ${show(text)})`);
  expectEq(stopped.choices[0].finish_reason, "stop", "finish_reason");
  // stop as a plain string, streamed.
  const { texts, finish } = await readCompletionStream(
    await client.completions.create({ ...request, stop, stream: true }),
  );
  expectEq(texts.get(0), expected, "streamed text with stop");
  expectEq(finish.get(0), "stop", "streamed finish_reason");
  // Chat too.
  const chatRequest = { model, messages: CHAT, max_tokens: 12, ...GREEDY };
  const chat = await client.chat.completions.create(chatRequest);
  const chatText = chat.choices[0].message.content;
  const chatStop = pickStopString(chatText);
  if (chatStop === null) throw new Error(`greedy chat output too short: ${show(chatText)}`);
  const chatStopped = await client.chat.completions.create({ ...chatRequest, stop: [chatStop] });
  expectEq(
    chatStopped.choices[0].message.content,
    chatText.slice(0, chatText.indexOf(chatStop)),
    `chat content with stop ${show(chatStop)} (full ${show(chatText)})`,
  );
  expectEq(chatStopped.choices[0].finish_reason, "stop", "chat finish_reason");
});

await checks.run("prefix cache: a shared system prompt gives cached_tokens", async () => {
  const system = { role: "system", content: longSystemPrompt() };
  const first = await client.chat.completions.create({
    model,
    messages: [system, { role: "user", content: "Tell me about apples." }],
    max_tokens: 2,
    ...GREEDY,
  });
  checkUsage(first.usage, "first");
  expect(first.usage.prompt_tokens > 150, `system prompt too short: ${first.usage.prompt_tokens} tokens`);
  const secondMessages = [system, { role: "user", content: "What do you know about pears?" }];
  const second = await client.chat.completions.create({ model, messages: secondMessages, max_tokens: 2, ...GREEDY });
  checkUsage(second.usage, "second");
  const cached = second.usage.prompt_tokens_details.cached_tokens;
  expect(
    cached > 0 && cached <= second.usage.prompt_tokens - 1,
    `second request: cached_tokens ${cached} of ${second.usage.prompt_tokens} prompt tokens (want 1..prompt_tokens-1)`,
  );
  // A different cache_salt does not see those blocks...
  const salt = `salt-${uniqueSuffix()}`;
  const salted = await client.chat.completions.create({
    model,
    messages: secondMessages,
    max_tokens: 2,
    cache_salt: salt,
    ...GREEDY,
  });
  expectEq(salted.usage.prompt_tokens_details.cached_tokens, 0, "cached_tokens with a new cache_salt");
  // ...but the same salt again does.
  const saltedAgain = await client.chat.completions.create({
    model,
    messages: [system, { role: "user", content: "And what about plums?" }],
    max_tokens: 2,
    cache_salt: salt,
    ...GREEDY,
  });
  expect(
    saltedAgain.usage.prompt_tokens_details.cached_tokens > 0,
    `the same cache_salt again: cached_tokens ${saltedAgain.usage.prompt_tokens_details.cached_tokens}`,
  );
});

await checks.run("prefix cache: completions repeat a prompt", async () => {
  const prompt = `${longSystemPrompt()} Continue:`;
  await client.completions.create({ model, prompt, max_tokens: 2, ...GREEDY });
  const again = await client.completions.create({ model, prompt, max_tokens: 2, ...GREEDY });
  const cached = again.usage.prompt_tokens_details.cached_tokens;
  expect(
    cached > 0 && cached <= again.usage.prompt_tokens - 1,
    `cached_tokens ${cached} of ${again.usage.prompt_tokens} prompt tokens`,
  );
  // Streamed usage reports it too.
  const stream = await client.completions.create({
    model,
    prompt,
    max_tokens: 2,
    ...GREEDY,
    stream: true,
    stream_options: { include_usage: true },
  });
  const { chunks } = await readCompletionStream(stream);
  const usage = checkUsageChunk(chunks, "stream", { completionTokens: 2 });
  expect(usage.prompt_tokens_details.cached_tokens > 0, `streamed cached_tokens ${show(usage)}`);
});

// --- errors ----------------------------------------------------------------------------------

function checkErrorBody(err, param) {
  expect(err.error && typeof err.error === "object", `no error object in the body: ${show(err.error)}`);
  expectString(err.error.message, "error.message");
  expect(err.error.message.length > 0, "error.message is empty");
  expectEq(err.type, "invalid_request_error", "error.type");
  if (param !== undefined) expectEq(err.param, param, "error.param");
  expect("code" in err.error, `error.code missing: ${show(err.error)}`);
}

await checks.run("error: temperature -1 is a 400 with param temperature", async () => {
  const err = await expectApiError(
    client.chat.completions.create({ model, messages: CHAT, max_tokens: 2, temperature: -1 }),
    OpenAI.BadRequestError,
    400,
  );
  checkErrorBody(err, "temperature");
});

await checks.run("error: n 0 is a 400", async () => {
  const err = await expectApiError(
    client.completions.create({ model, prompt: PROMPT, max_tokens: 2, n: 0 }),
    OpenAI.BadRequestError,
    400,
  );
  checkErrorBody(err, "n");
});

await checks.run("error: max_tokens -5 is a 400", async () => {
  const err = await expectApiError(
    client.completions.create({ model, prompt: PROMPT, max_tokens: -5 }),
    OpenAI.BadRequestError,
    400,
  );
  checkErrorBody(err, "max_tokens");
});

await checks.run("error: a field of the wrong type is a 400", async () => {
  const err = await expectApiError(
    client.chat.completions.create({ model, messages: CHAT, max_tokens: "five" }),
    OpenAI.BadRequestError,
    400,
  );
  checkErrorBody(err, "max_tokens");
});

await checks.run("error: malformed JSON is a 400", async () => {
  const res = await rawRequest(baseUrl, "POST", "/v1/chat/completions", {
    headers: authHeaders,
    body: `{"model": "${model}", "messages": [`,
  });
  expectEq(res.status, 400, `status (body ${show(res.text)})`);
  expect(res.json?.error && typeof res.json.error.message === "string", `body: ${show(res.text)}`);
  expectEq(res.json.error.type, "invalid_request_error", "error.type");
});

await checks.run("error: an unknown model is a 404", async () => {
  const err = await expectApiError(
    client.completions.create({ model: `${model}-does-not-exist`, prompt: PROMPT, max_tokens: 2 }),
    OpenAI.NotFoundError,
    404,
  );
  expectString(err.error?.message, "error.message");
  await expectApiError(
    client.chat.completions.create({ model: "no-such-model", messages: CHAT, max_tokens: 2 }),
    OpenAI.NotFoundError,
    404,
  );
});

await checks.run("error: a 100000-token prompt is a 400 naming the context length", async () => {
  const err = await expectApiError(
    client.completions.create({ model, prompt: Array(100000).fill(5), max_tokens: 5 }),
    OpenAI.BadRequestError,
    400,
  );
  checkErrorBody(err);
  expect(/context/i.test(err.error.message), `message does not mention the context: ${show(err.error.message)}`);
});

await checks.run("the server still answers after the errors", async () => {
  const res = await client.completions.create({ model, prompt: PROMPT, max_tokens: 2, ...GREEDY });
  expectEq(res.usage.completion_tokens, 2, "completion_tokens");
});

await checks.run("error: a wrong API key is a 401", async () => {
  if (!apiKey) throw new Skip("no API_KEY given");
  const wrong = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: "wrong-key", maxRetries: 0 });
  await expectApiError(wrong.models.list(), OpenAI.AuthenticationError, 401);
  await expectApiError(
    wrong.chat.completions.create({ model, messages: CHAT, max_tokens: 2 }),
    OpenAI.AuthenticationError,
    401,
  );
  const none = await rawRequest(baseUrl, "POST", "/v1/completions", {
    body: { model, prompt: PROMPT, max_tokens: 2 },
  });
  expectEq(none.status, 401, `status without an Authorization header (body ${show(none.text)})`);
  expect(none.json?.error && typeof none.json.error.message === "string", `401 body: ${show(none.text)}`);
});

checks.finish();
