// Builds the small test tokenizers of tests/data/tokenizers/<family>/ and their golden
// outputs from Hugging Face `tokenizers` (npm binding @anush008/tokenizers).
//
//   mkdir -p /tmp/hf-tok && cd /tmp/hf-tok && npm install @anush008/tokenizers@0.6.0
//   NODE_PATH=/tmp/hf-tok/node_modules node tests/data/tokenizers/make_goldens.mjs
//
// Each family copies the structure of a real tokenizer.json (normalizer, pre-tokenizer,
// model options, post-processor, decoder, added tokens) with a vocabulary that is either
// derived from the Qwen3 fixture (Apache-2.0: the first merges and the tokens they make)
// or trained here on the public corpus by a small deterministic BPE trainer. The build and
// the tests never run this script; they read its output.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { Tokenizer } = require('@anush008/tokenizers');
const here = path.dirname(fileURLToPath(import.meta.url));

// ---- texts ---------------------------------------------------------------------------
const corpus = fs.readFileSync(path.join(here, 'public_corpus.jsonl'), 'utf8')
  .split('\n').filter((l) => l.length > 0).map((l) => JSON.parse(l));

const hostileBase = [
  '', ' ', '  ', '\t', '\n', '\r\n', ' \r\n ', 'a\r\nb', '\n\n\n', '  leading', 'trailing  ',
  '\tTabbed\ttext\t', 'x\u00a0y', 'ideographic\u3000space', 'zero\u200bwidth', 'line\u2028sep',
  '1234567890123456789', '3.14159265358979', '1,000,000', '٣٤٥ Arabic-Indic digits', '१२३',
  'e\u0301 e\u0300 a\u0308 o\u0302 combining', 'Ǆ ǅ ǆ ﬁ ﬀ ① ² ½ Ⅻ compat', 'İstanbul ΣΊΣΥΦΟΣ',
  '👩‍💻👨‍👩‍👧‍👦🏳️‍🌈 ZWJ', '🇫🇷🇯🇵 flags', '👍🏽 skin', '∑∫√∞ math', '日本語のテキスト、句読点。',
  '中文，标点！“引号”', '한국어 텍스트', 'العربية نص', 'हिन्दी पाठ', 'ภาษาไทย', 'ქართული',
  "it's they're we've I'M YOU'LL she'd", "'s 't", 'snake_case camelCase kebab-case',
  'def f(x):\n    return x**2  # comment\n', '<html><body class="x">hi</body></html>',
  '{"a": [1, 2, {"b": null}]}', 'https://example.com/path?q=1&r=2#frag', 'a\u0000b',
  '▁already▁metaspace', '<0x41> literal byte token text', '<unk> <s> </s> in text',
  'ends with newline\n', '   \n   \n', 'MiXeD CaSe WoRdS', '!!!???...;;;', '--==++__',
  'a'.repeat(300), 'ab '.repeat(100), '😀'.repeat(40), '\u0300\u0301 leading combining',
  '\uFFFD replacement char', 'Ω≈ç√∫˜µ≤≥÷', 'Straße STRASSE straße', 'ﬃ ﬄ ﬅ',
];

function mulberry32(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const pools = [
  'abcdefghijklmnopqrstuvwxyz', 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', '0123456789', ' ', ' ', ' ',
  '  \t\n\r', '.,;:!?\'"()[]{}<>-_/\\@#$%^&*+=|~`', 'éèêëàâäôöûüçñß', 'ÉÈÀÔ',
  '\u0301\u0300\u0308', '中文数据模型推理', 'こんにちはカタカナ', 'Приветмир', 'مرحبا',
  'नमस्ते', '😀🚀🎉', '\u200d', '▁', '\u00a0\u3000',
];

function randomTexts(count, seed, specials) {
  const rand = mulberry32(seed);
  const out = [];
  for (let i = 0; i < count; i++) {
    const len = 1 + Math.floor(rand() * 40);
    let s = '';
    for (let k = 0; k < len; k++) {
      if (specials.length > 0 && rand() < 0.03) {
        s += specials[Math.floor(rand() * specials.length)];
        continue;
      }
      const pool = [...pools[Math.floor(rand() * pools.length)]];
      s += pool[Math.floor(rand() * pool.length)];
    }
    out.push(s);
  }
  return out;
}

// ---- vocabularies --------------------------------------------------------------------
const qwen = JSON.parse(fs.readFileSync(path.join(here, 'qwen3', 'tokenizer.json'), 'utf8'));

// The byte-level alphabet in byte order, then the tokens made by the first `count` merges.
function qwenPrefix(count, extraWholeTokens = 0) {
  const vocab = {};
  let next = 0;
  const add = (t) => { if (!(t in vocab)) vocab[t] = next++; };
  const alphabet = [];
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    alphabet.push(printable ? b : null);
  }
  let extra = 0;
  for (let b = 0; b < 256; b++) add(String.fromCodePoint(alphabet[b] ?? 256 + extra++));
  const merges = qwen.model.merges.slice(0, count);
  for (const [a, b] of merges) add(a + b);
  // Tokens whose merges are left out: reachable only through ignore_merges.
  for (const [a, b] of qwen.model.merges.slice(count, count + extraWholeTokens)) add(a + b);
  return { vocab, merges };
}

// A deterministic BPE trainer (most frequent pair, ties broken by the pair's text).
function trainBpe(words, { merges: count, prefix = '', suffix = '', reserved = [] }) {
  const counts = new Map();
  for (const w of words) if (w.length > 0) counts.set(w, (counts.get(w) ?? 0) + 1);
  const seqs = [...counts.keys()].map((w) => {
    const chars = [...w];
    return chars.map((c, i) => (i > 0 ? prefix : '') + c + (i === chars.length - 1 ? suffix : ''));
  });
  const freqs = [...counts.values()];
  const vocab = {};
  let next = 0;
  const add = (t) => { if (!(t in vocab)) vocab[t] = next++; };
  for (const r of reserved) add(r);
  const alphabet = new Set();
  for (const s of seqs) for (const t of s) alphabet.add(t);
  for (const t of [...alphabet].sort()) add(t);
  const merges = [];
  for (let m = 0; m < count; m++) {
    const pairs = new Map();
    seqs.forEach((s, i) => {
      for (let k = 0; k + 1 < s.length; k++) {
        const key = s[k] + '\u0001' + s[k + 1];
        pairs.set(key, (pairs.get(key) ?? 0) + freqs[i]);
      }
    });
    let best = null, bestCount = 1;
    for (const [key, c] of pairs) {
      if (c > bestCount || (c === bestCount && best !== null && key < best)) { best = key; bestCount = c; }
    }
    if (best === null) break;
    const [a, b] = best.split('\u0001');
    const merged = a + b.slice(prefix.length);
    merges.push([a, b]);
    add(merged);
    for (const s of seqs) {
      for (let k = 0; k + 1 < s.length; k++) {
        if (s[k] === a && s[k + 1] === b) s.splice(k, 2, merged);
      }
    }
  }
  return { vocab, merges };
}

const corpusWords = (pattern) => corpus.flatMap((t) => t.match(pattern) ?? []);

function addedToken(id, content, special, extra = {}) {
  return { id, content, single_word: false, lstrip: false, rstrip: false,
           normalized: !special, special, ...extra };
}

function withIds(vocab, list) {
  // Added tokens take the ids after the model vocabulary unless they are in it.
  let next = Math.max(...Object.values(vocab)) + 1;
  return list.map(([content, special, extra]) =>
    addedToken(content in vocab ? vocab[content] : next++, content, special, extra));
}

const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false };
const llama3Regex = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

function bpeModel(vocab, merges, options = {}) {
  return { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null,
           end_of_word_suffix: null, fuse_unk: false, byte_fallback: false,
           ignore_merges: false, vocab, merges, ...options };
}

function templateBos(bos, bosId, eos = null, eosId = null) {
  const single = [{ SpecialToken: { id: bos, type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }];
  const special_tokens = { [bos]: { id: bos, ids: [bosId], tokens: [bos] } };
  if (eos !== null) {
    single.push({ SpecialToken: { id: eos, type_id: 0 } });
    special_tokens[eos] = { id: eos, ids: [eosId], tokens: [eos] };
  }
  return { type: 'TemplateProcessing', single, pair: [...single, { Sequence: { id: 'B', type_id: 1 } }], special_tokens };
}

const families = {};

{ // GPT-2: ByteLevel pre-tokenizer with its own regex, merges as "a b" strings.
  const { vocab, merges } = qwenPrefix(6000);
  const added = withIds(vocab, [['<|endoftext|>', true]]);
  families.gpt2_style = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: byteLevel, decoder: byteLevel,
    model: bpeModel(vocab, merges.map(([a, b]) => `${a} ${b}`)),
  };
}

{ // Llama-3: Split with the Llama-3 regex, ByteLevel without regex, ignore_merges, BOS.
  const { vocab, merges } = qwenPrefix(6000, 400);
  const added = withIds(vocab, [
    ['<|begin_of_text|>', true], ['<|end_of_text|>', true], ['<|start_header_id|>', true],
    ['<|end_header_id|>', true], ['<|eot_id|>', true],
    ['<tool>', false, { lstrip: true, rstrip: true, normalized: false }],
    ['word', false, { single_word: true, normalized: false }],
  ]);
  const bos = added[0];
  families.llama3_style = {
    version: '1.0', truncation: null, padding: null, added_tokens: added, normalizer: null,
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { Regex: llama3Regex }, behavior: 'Isolated', invert: false },
      byteLevel] },
    post_processor: { type: 'Sequence', processors: [byteLevel, templateBos(bos.content, bos.id)] },
    decoder: byteLevel,
    model: bpeModel(vocab, merges, { ignore_merges: true }),
  };
}

// Llama-2 / Mistral style: SentencePiece-like vocabulary over "▁"-joined words.
const metaspaceWords = corpusWords(/ ?[^ ]+/gu).map((w) => w.replace(/ /g, '▁'))
  .concat(corpusWords(/[^ ]+/gu).map((w) => '▁' + w));
const bytesTokens = Array.from({ length: 256 }, (_, b) =>
  `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
const spm = trainBpe(metaspaceWords, { merges: 1500, reserved: ['<unk>', '<s>', '</s>', ...bytesTokens] });
const llamaDecoder = { type: 'Sequence', decoders: [
  { type: 'Replace', pattern: { String: '▁' }, content: ' ' }, { type: 'ByteFallback' },
  { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] };
const llamaAdded = [addedToken(0, '<unk>', true, { normalized: false }),
  addedToken(1, '<s>', true, { normalized: false }), addedToken(2, '</s>', true, { normalized: false })];

families.llama2_style = {
  version: '1.0', truncation: null, padding: null, added_tokens: llamaAdded,
  normalizer: { type: 'Sequence', normalizers: [
    { type: 'Prepend', prepend: '▁' }, { type: 'Replace', pattern: { String: ' ' }, content: '▁' }] },
  pre_tokenizer: null, post_processor: templateBos('<s>', 1), decoder: llamaDecoder,
  model: bpeModel(spm.vocab, spm.merges, { unk_token: '<unk>', fuse_unk: true, byte_fallback: true }),
};

{ // Newer Mistral/Llama files: Metaspace pre-tokenizer (prepend "first", no split).
  families.mistral_style = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [...llamaAdded, ...withIds(spm.vocab, [['[INST]', true, { normalized: false }],
      ['[/INST]', true, { normalized: false }]])],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: templateBos('<s>', 1),
    decoder: { type: 'Sequence', decoders: [
      { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
      { type: 'ByteFallback' }, { type: 'Fuse' }] },
    model: bpeModel(spm.vocab, spm.merges, { unk_token: '<unk>', fuse_unk: true, byte_fallback: true }),
  };
}

{ // Components A: NFKC + Lowercase + Strip + regex Replace; Whitespace + individual Digits;
  // continuing_subword_prefix; no decoder; BertProcessing; a normalized added token.
  const words = corpus.map((t) => t.normalize('NFKC').toLowerCase())
    .flatMap((t) => t.match(/[\p{L}\p{N}\p{M}_]+|[^\p{L}\p{N}\p{M}_\s]+/gu) ?? [])
    .flatMap((w) => (/\p{N}/u.test(w) ? [...w] : [w]));
  const { vocab, merges } = trainBpe(words, { merges: 800, prefix: '##', reserved: ['[UNK]', '[CLS]', '[SEP]'] });
  families.components_a = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [addedToken(0, '[UNK]', true, { normalized: false }),
      addedToken(1, '[CLS]', true, { normalized: false }),
      addedToken(2, '[SEP]', true, { normalized: false, lstrip: true }),
      ...withIds(vocab, [['<MyTok>', false, { normalized: true }]])],
    normalizer: { type: 'Sequence', normalizers: [
      { type: 'NFKC' }, { type: 'Lowercase' }, { type: 'Strip', strip_left: true, strip_right: true },
      { type: 'Replace', pattern: { Regex: '\\s+' }, content: ' ' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Whitespace' }, { type: 'Digits', individual_digits: true }] },
    post_processor: { type: 'BertProcessing', sep: ['[SEP]', 2], cls: ['[CLS]', 1] },
    decoder: null,
    model: bpeModel(vocab, merges, { unk_token: '[UNK]', continuing_subword_prefix: '##' }),
  };
}

{ // Components B: NFD + StripAccents; Split behaviors (incl. invert), Punctuation,
  // WhitespaceSplit, Metaspace "always" with split; end_of_word_suffix; BPEDecoder.
  const words = corpus.map((t) => t.normalize('NFD').replace(/\p{Mn}/gu, ''))
    .flatMap((t) => t.split(/\s+/u)).filter((w) => w.length > 0);
  const { vocab, merges } = trainBpe(words, { merges: 800, suffix: '</w>', reserved: ['<unk>'] });
  families.components_b = {
    version: '1.0', truncation: null, padding: null,
    added_tokens: withIds(vocab, [['<sep>', true, { normalized: false, rstrip: true }]]),
    normalizer: { type: 'Sequence', normalizers: [{ type: 'NFD' }, { type: 'StripAccents' }] },
    pre_tokenizer: { type: 'Sequence', pretokenizers: [
      { type: 'Split', pattern: { String: '-' }, behavior: 'MergedWithPrevious', invert: false },
      { type: 'Split', pattern: { Regex: '\\d+' }, behavior: 'Contiguous', invert: false },
      { type: 'Split', pattern: { Regex: '[aeiou]' }, behavior: 'MergedWithNext', invert: true },
      { type: 'Split', pattern: { String: 'x' }, behavior: 'Removed', invert: false },
      { type: 'Punctuation', behavior: 'Isolated' }, { type: 'WhitespaceSplit' }] },
    post_processor: null,
    decoder: { type: 'BPEDecoder', suffix: '</w>' },
    model: bpeModel(vocab, merges, { unk_token: '<unk>', end_of_word_suffix: '</w>' }),
  };
}

// ---- goldens -------------------------------------------------------------------------
async function writeCases(tok, texts, file) {
  const lines = [];
  for (const text of texts) {
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const encS = await tok.encode(text, null, { addSpecialTokens: true });
    const ids = enc.getIds();
    const decoded = await tok.decode(ids, false);
    lines.push(JSON.stringify({ text, ids, ids_with_special: encS.getIds(), decoded }));
  }
  fs.writeFileSync(file, lines.join('\n') + '\n');
}

const only = process.argv[2];
for (const [name, json] of Object.entries(families)) {
  if (only && name !== only) continue;
  const dir = path.join(here, name);
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'tokenizer.json');
  fs.writeFileSync(file, JSON.stringify(json));
  const tok = Tokenizer.fromFile(file);
  const specials = json.added_tokens.map((t) => t.content);
  await writeCases(tok, corpus, path.join(dir, 'public_cases.jsonl'));
  await writeCases(tok, [...hostileBase, ...specials.map((s) => `x ${s} y${s}z  ${s}\n`)],
                   path.join(dir, 'hostile_cases.jsonl'));
  await writeCases(tok, randomTexts(300, 7 + name.length, specials), path.join(dir, 'random_cases.jsonl'));
  console.log(`${name}: ${Object.keys(json.model.vocab).length} tokens, ${json.model.merges.length} merges`);
}
// Qwen3 itself: the hostile and random texts (its public_cases.jsonl came with the fixture).
if (!only || only === 'qwen3') {
  const tok = Tokenizer.fromFile(path.join(here, 'qwen3', 'tokenizer.json'));
  const specials = qwen.added_tokens.map((t) => t.content);
  await writeCases(tok, [...hostileBase, ...specials.slice(0, 8).map((s) => `x ${s} y${s}z  ${s}\n`)],
                   path.join(here, 'qwen3', 'hostile_cases.jsonl'));
  await writeCases(tok, randomTexts(300, 99, specials), path.join(here, 'qwen3', 'random_cases.jsonl'));
}
