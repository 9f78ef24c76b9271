// Times Hugging Face `tokenizers` (npm binding @anush008/tokenizers) encoding the same text
// as bench_tokenizer, single-threaded, for a side-by-side MB/s number. Not used by the build
// or the tests.
//
//   mkdir -p /tmp/hf-tok && (cd /tmp/hf-tok && npm install @anush008/tokenizers@0.6.0)
//   build/release/bench/bench_tokenizer --write-corpus=/tmp/corpus.json
//   UV_THREADPOOL_SIZE=1 NODE_PATH=/tmp/hf-tok/node_modules \
//     node bench/hf_tokenizers_encode.mjs tests/data/tokenizers/qwen3/tokenizer.json /tmp/corpus.json
import { createRequire } from 'node:module';
import fs from 'node:fs';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');

const [tokenizerPath, corpusPath, roundsArg] = process.argv.slice(2);
const text = JSON.parse(fs.readFileSync(corpusPath, 'utf8'));
const bytes = Buffer.byteLength(text, 'utf8');
const rounds = Number(roundsArg ?? 5);

async function time(tok) {
  const start = process.hrtime.bigint();
  const enc = await tok.encode(text, null, { addSpecialTokens: false });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return { seconds, tokens: enc.getLength() };
}

// One line at a time, as bench_tokenizer's encode_lines; encodeBatch runs serially with
// TOKENIZERS_PARALLELISM=false (set below), so this stays single-threaded.
process.env.TOKENIZERS_PARALLELISM = 'false';
const lines = text.split(/(?<=\n)/);
async function timeLines(tok) {
  const start = process.hrtime.bigint();
  await tok.encodeBatch(lines, { addSpecialTokens: false });
  return Number(process.hrtime.bigint() - start) / 1e9;
}

// Cold: the first encode of a freshly loaded tokenizer (its word cache is empty).
const cold = await time(Tokenizer.fromFile(tokenizerPath));
const tok = Tokenizer.fromFile(tokenizerPath);
await time(tok);  // warm-up
let best = Infinity, total = 0, tokens = 0;
for (let i = 0; i < rounds; i++) {
  const r = await time(tok);
  best = Math.min(best, r.seconds);
  total += r.seconds;
  tokens = r.tokens;
}
let bestLines = Infinity;
for (let i = 0; i < rounds; i++) bestLines = Math.min(bestLines, await timeLines(tok));
const mb = bytes / 1e6;
console.log(`hf-tokenizers ${tokenizerPath}: ${mb.toFixed(2)} MB, ${tokens} tokens`);
console.log(`  warm: mean ${(mb / (total / rounds)).toFixed(2)} MB/s, best ${(mb / best).toFixed(2)} MB/s`);
console.log(`  cold: ${(mb / cold.seconds).toFixed(2)} MB/s`);
console.log(`  lines (${lines.length}, encodeBatch, serial): best ${(mb / bestLines).toFixed(2)} MB/s`);
