#!/usr/bin/python3
"""Generate snippets.json: small Jinja snippets with the exact output Python's jinja2 gives.

Run with Debian's interpreter, which has python3-jinja2 (3.1.2):

    /usr/bin/python3 snippets_source.py            # writes snippets.json next to this file
    /usr/bin/python3 snippets_source.py --out FILE
    /usr/bin/python3 snippets_source.py --show     # also print every case and its result

Each case is (name, template, variables). The name's prefix (up to the first '.') is its
feature group. The environment is the one Hugging Face transformers builds for chat templates:

  * jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
    extensions=[jinja2.ext.loopcontrols]); everything else is jinja2's default (autoescape
    off, keep_trailing_newline=False, plain Undefined for missing names and attributes).
  * filter tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False)
    = json.dumps(x, ...) -- this replaces jinja2's own tojson (no HTML escaping).
  * global raise_exception(message) raises jinja2.exceptions.TemplateError(message).
  * global strftime_now(format) = datetime(2024, 7, 26).strftime(format) (transformers uses
    datetime.now(); the fixed date keeps the outputs deterministic).

Variables are JSON values only; each case is rendered with json.loads(json.dumps(vars)), so
what snippets.json stores is exactly what was rendered.

Output format (a JSON list, in the order of CASES):

  {"name", "template", "vars", "output"}                          rendered fine
  {"name", "template", "vars", "error", "error_type", "phase"}    raised

"error" is str(exception), "error_type" the exception class name, and "phase" is "parse"
when env.from_string() raised (lexing, parsing or compiling: TemplateSyntaxError, and
TemplateAssertionError for an unknown filter or test outside a conditional) or "render"
when template.render() raised.

The case list is checked: names are unique, and a case listed in EXPECT_ERROR must raise
(with that error_type and phase) while every other case must render. The script exits
non-zero otherwise.
"""

import argparse
import json
import os
import sys
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
FIXED_NOW = datetime(2024, 7, 26, 0, 0, 0)


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def strftime_now(format):
    return FIXED_NOW.strftime(format)


def make_env():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


USERS = [{"name": "ann", "age": 30, "role": "user"},
         {"name": "Bob", "age": 25, "role": "assistant"},
         {"name": "cy", "role": "user"}]
MSGS = [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
        {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]

CASES = [
    # ---------------------------------------------------------------- whitespace control
    ("ws.plain_text", "Hello, world!", {}),
    ("ws.plain_text_trailing_newline", "Hello\n", {}),
    ("ws.plain_text_two_trailing_newlines", "Hello\n\n", {}),
    ("ws.plain_text_leading_newline", "\nHello", {}),
    ("ws.empty_template", "", {}),
    ("ws.minus_block_both", "a  \n  {%- if true -%}  \n  b  \n  {%- endif -%}  \n  c", {}),
    ("ws.minus_block_left_only", "a \n {%- if true %}b{% endif %}", {}),
    ("ws.minus_block_right_only", "{% if true -%}  \n\n  b{% endif %}", {}),
    ("ws.minus_variable", "a  \n  {{- 'x' -}}  \n  b", {}),
    ("ws.minus_variable_left", "a  {{- 'x' }}  b", {}),
    ("ws.minus_comment", "a  \n  {#- note -#}  \n  b", {}),
    ("ws.trim_blocks_newline_after_block", "{% if true %}\nyes\n{% endif %}\nafter", {}),
    ("ws.trim_blocks_only_one_newline", "{% if true %}\n\nyes{% endif %}", {}),
    ("ws.trim_blocks_not_spaces_then_newline", "{% if true %}  \nyes{% endif %}", {}),
    ("ws.trim_blocks_newline_after_comment", "{# c #}\nline", {}),
    ("ws.no_trim_after_variable", "{{ 'x' }}\n{{ 'y' }}\n", {}),
    ("ws.lstrip_indented_block_tag", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("ws.lstrip_tab_indent", "a\n\t\t{% if true %}\nb\n\t{% endif %}\nc", {}),
    ("ws.lstrip_not_before_variable", "a\n    {{ 'x' }}\nc", {}),
    ("ws.lstrip_not_after_text_on_line", "a\n  x {% if true %}y{% endif %}\nc", {}),
    ("ws.lstrip_indented_comment", "a\n    {# c #}\nb", {}),
    ("ws.lstrip_unicode_whitespace", "a\n\u3000{% if true %}b{% endif %}", {}),
    ("ws.lstrip_at_template_start", "   {% if true %}x{% endif %}", {}),
    ("ws.plus_disables_lstrip", "a\n    {%+ if true %}b{% endif %}", {}),
    ("ws.plus_disables_trim", "{% if true +%}\nb{% endif %}", {}),
    ("ws.crlf_text", "a\r\nb\r\n", {}),
    ("ws.crlf_trim_blocks", "{% if true %}\r\nyes\r\n{% endif %}\r\nafter", {}),
    ("ws.crlf_lstrip", "a\r\n  {% if true %}\r\nb\r\n  {% endif %}\r\nc", {}),
    ("ws.crlf_in_string_literal", "{{ 'x\r\ny' }}", {}),
    ("ws.crlf_in_variable_kept", "{{ s }}", {"s": "a\r\nb"}),
    ("ws.block_at_start", "{% if true %}\nfirst{% endif %}", {}),
    ("ws.minus_at_start", "{%- if true %}x{% endif %}", {}),
    ("ws.variable_at_start_and_end", "{{ 'a' }}{{ 'b' }}", {}),
    ("ws.loop_lines", "{% for x in xs %}\n{{ x }}\n{% endfor %}\n", {"xs": [1, 2]}),
    ("ws.loop_indented_lines", "<\n  {% for x in xs %}\n  - {{ x }}\n  {% endfor %}\n>", {"xs": [1, 2]}),
    ("ws.raw_block", "{% raw %}{{ x }} {% if %}{% endraw %}", {}),
    ("ws.raw_block_trim", "{% raw %}\n{{ a }}\n{% endraw %}\nz", {}),
    ("ws.raw_block_minus", "x  {%- raw -%}  {{ a }}  {%- endraw -%}  y", {}),
    ("ws.comment_inline", "a{# anything {{ x }} {% if %} #}b", {}),
    ("ws.comment_multiline", "a{# line1\nline2 #}b", {}),
    ("ws.literal_braces_via_string", "{{ '{{' }} x {{ '}}' }}", {}),

    # ---------------------------------------------------------------- output of values
    ("out.none_literal", "{{ none }}|{{ None }}", {}),
    ("out.none_var", "{{ x }}", {"x": None}),
    ("out.bools", "{{ true }} {{ false }} {{ True }} {{ b }}", {"b": False}),
    ("out.ints", "{{ 0 }} {{ -7 }} {{ 42 }} {{ n }}", {"n": 123456789}),
    ("out.bigint", "{{ 2 ** 64 }}", {}),
    ("out.float_one", "{{ 1.0 }}", {}),
    ("out.float_tenth", "{{ 0.1 }}", {}),
    ("out.float_small_exp", "{{ 1e-05 }} {{ 0.0001 }}", {}),
    ("out.float_1e16", "{{ 1e16 }}", {}),
    ("out.float_1e15", "{{ 1e15 }}", {}),
    ("out.float_2_5", "{{ 2.5 }}", {}),
    ("out.float_neg_zero", "{{ -0.0 }} {{ z }}", {"z": -0.0}),
    ("out.float_third", "{{ 1 / 3 }}", {}),
    ("out.float_vars", "{{ a }} {{ b }} {{ c }}", {"a": 1.0, "b": 1e16, "c": 3.14}),
    ("out.float_sum", "{{ 0.1 + 0.2 }}", {}),
    ("out.string", "{{ s }}", {"s": "héllo \"q\" 'a'"}),
    ("out.list", "{{ xs }}", {"xs": [1, "a", None, True, 2.5]}),
    ("out.list_empty", "{{ [] }} {{ {} }}", {}),
    ("out.dict", "{{ d }}", {"d": {"a": 1, "b": "x"}}),
    ("out.nested", "{{ d }}", {"d": {"k": [1, {"z": None}], "e": []}}),
    ("out.list_str_quotes", "{{ xs }}", {"xs": ["it's", "say \"hi\"", "both ' \"", "back\\slash"]}),
    ("out.list_str_escapes", "{{ xs }}", {"xs": ["a\nb", "t\tb", "\u0001", "é", "\u00a0"]}),
    ("out.undefined_var", "[{{ nope }}]", {}),
    ("out.undefined_dict_attr", "[{{ d.nope }}][{{ d['nope'] }}]", {"d": {"a": 1}}),
    ("out.undefined_list_index", "[{{ xs[5] }}]", {"xs": [1]}),
    ("out.attr_of_none", "[{{ x.y }}][{{ x['y'] }}]", {"x": None}),

    # ---------------------------------------------------------------- operators
    ("op.add_int", "{{ 1 + 2 }}", {}),
    ("op.add_float", "{{ 1 + 1.5 }}", {}),
    ("op.add_str", "{{ 'ab' + 'cd' }}", {}),
    ("op.add_list", "{{ [1] + [2, 3] }}", {}),
    ("op.sub", "{{ 5 - 7 }} {{ 2.5 - 1 }}", {}),
    ("op.mul", "{{ 3 * 4 }} {{ 1.5 * 2 }}", {}),
    ("op.mul_str_int", "{{ 'ab' * 3 }}|{{ 2 * 'x' }}|{{ '-' * 0 }}", {}),
    ("op.mul_list_int", "{{ [0] * 3 }}", {}),
    ("op.truediv", "{{ 7 / 2 }} {{ 4 / 2 }}", {}),
    ("op.floordiv", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 // -2 }} {{ 7.5 // 2 }}", {}),
    ("op.mod", "{{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 5.5 % 2 }}", {}),
    ("op.pow", "{{ 2 ** 10 }} {{ 2 ** -1 }} {{ 2.0 ** 2 }}", {}),
    ("op.concat_tilde", "{{ 'a' ~ 1 ~ none ~ true ~ 1.0 }}", {}),
    ("op.concat_undefined", "[{{ 'a' ~ nope ~ 'b' }}]", {}),
    ("op.str_percent_format", "{{ '%s-%d' % ('a', 3) }}", {}),
    ("op.eq_ne", "{{ 1 == 1 }} {{ 1 != 1 }} {{ 'a' == 'a' }} {{ [1] == [1] }}", {}),
    ("op.eq_int_float", "{{ 1 == 1.0 }} {{ 1 < 1.5 }} {{ true == 1 }}", {}),
    ("op.compare_ints", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 4 >= 5 }}", {}),
    ("op.compare_strings", "{{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ 'abc' < 'abd' }} {{ 'ab' < 'abc' }}", {}),
    ("op.compare_chain", "{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }}", {}),
    ("op.in_string", "{{ 'b' in 'abc' }} {{ 'x' in 'abc' }} {{ '' in 'abc' }}", {}),
    ("op.in_list", "{{ 2 in [1, 2] }} {{ 3 not in [1, 2] }}", {}),
    ("op.in_dict_keys", "{{ 'k' in d }} {{ 'v' in d }} {{ 'v' not in d }}", {"d": {"k": "v"}}),
    ("op.or_returns_operand", "{{ 0 or 'x' }}|{{ 'a' or 'b' }}|{{ none or 0 }}", {}),
    ("op.and_returns_operand", "[{{ '' and 1 }}]|{{ 1 and 2 }}|{{ [] and 1 }}", {}),
    ("op.not", "{{ not 0 }} {{ not 'a' }} {{ not [] }} {{ not nope }}", {}),
    ("op.cond_expr", "{{ 'y' if 1 else 'n' }} {{ 'y' if 0 else 'n' }}", {}),
    ("op.cond_expr_no_else", "[{{ 'y' if false }}]", {}),
    ("op.precedence_mul", "{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }}", {}),
    ("op.precedence_pow_left_assoc", "{{ 2 ** 3 ** 2 }}", {}),
    ("op.precedence_unary_minus_pow", "{{ -2 ** 2 }}", {}),
    ("op.precedence_filter_minus", "{{ xs|length - 1 }}", {"xs": [1, 2, 3]}),
    ("op.precedence_unary_minus_filter", "{{ -x|abs }}", {"x": 3}),
    ("op.precedence_not_is", "{{ not x is defined }} {{ not nope is defined }}", {"x": 1}),
    ("op.precedence_tilde_plus", "{{ 'a' ~ 1 + 2 }}", {}),  # ~ binds tighter than +: ('a' ~ 1) + 2
    ("op.precedence_tilde_mul", "{{ 'a' ~ 2 * 3 }} {{ 'n=' ~ (1 + 2) }}", {}),
    ("op.precedence_and_or", "{{ true or false and false }} {{ (true or false) and false }}", {}),
    ("op.error_str_plus_int", "{{ 'a' + 1 }}", {}),
    ("op.error_undefined_plus_str", "{{ nope + 'a' }}", {}),
    ("op.error_undefined_attr_of_undefined", "{{ nope.x }}", {}),
    ("op.error_compare_int_str", "{{ 1 < 'a' }}", {}),
    ("op.error_div_zero", "{{ 1 / 0 }}", {}),

    # ---------------------------------------------------------------- literals
    ("lit.list", "{{ [1, 'two', 3.0] }}", {}),
    ("lit.tuple", "{{ (1, 2) }} {{ (1,) }} {{ () }}", {}),
    ("lit.dict", "{{ {'a': 1, \"b\": [2]} }}", {}),
    ("lit.nested", "{{ {'x': [1, {'y': (2, 3)}]} }}", {}),
    ("lit.trailing_comma", "{{ [1, 2,] }} {{ {'a': 1,} }}", {}),
    ("lit.escape_newline_tab", "{{ 'a\\nb' }}|{{ \"c\\td\" }}", {}),
    ("lit.escape_quote", "{{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }}", {}),
    ("lit.escape_unicode", "{{ 'caf\\u00e9' }} {{ '\\x41' }}", {}),
    ("lit.non_ascii_literal", "{{ 'héllo ✓' }}", {}),
    ("lit.escape_backslash", "{{ 'a\\\\b' }}", {}),
    ("lit.adjacent_strings", "{{ 'ab' 'cd' \"ef\" }}", {}),
    ("lit.numbers", "{{ 1_000 }} {{ 0.5 }} {{ 1.5e3 }}", {}),

    # ---------------------------------------------------------------- access
    ("acc.attr_vs_item", "{{ d.k }} {{ d['k'] }}", {"d": {"k": "v"}}),
    ("acc.item_key_named_like_method", "{{ d['items'] }} {{ d.get('items') }} {{ d['keys'] }}",
     {"d": {"items": "I", "keys": "K"}}),
    ("acc.nested", "{{ m.content[0].text }} {{ m['content'][0]['text'] }}",
     {"m": {"content": [{"text": "hi"}]}}),
    ("acc.item_with_variable_key", "{{ d[k] }}", {"d": {"a": 1}, "k": "a"}),
    ("acc.list_index", "{{ xs[0] }} {{ xs[-1] }} {{ xs[-3] }}", {"xs": [1, 2, 3]}),
    ("acc.list_index_out_of_range", "[{{ xs[3] }}][{{ xs[-4] }}]", {"xs": [1, 2, 3]}),
    ("acc.dot_number", "{{ xs.0 }} {{ xs.2 }}", {"xs": ["a", "b", "c"]}),
    ("acc.string_index", "{{ s[0] }} {{ s[-1] }} {{ s[1] }}", {"s": "héllo"}),
    ("acc.slice_list", "{{ xs[1:] }} {{ xs[:-1] }} {{ xs[::-1] }} {{ xs[::2] }} {{ xs[5:1:-1] }}",
     {"xs": [0, 1, 2, 3, 4, 5, 6]}),
    ("acc.slice_out_of_range", "{{ xs[10:] }} {{ xs[-10:2] }}", {"xs": [0, 1, 2]}),
    ("acc.slice_string", "{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[::2] }}|{{ s[5:1:-1] }}",
     {"s": "abcdefg"}),
    ("acc.slice_string_non_ascii", "{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-2:] }}", {"s": "héllo wörld ✓"}),
    ("acc.messages_slice", "{% for m in messages[1:] %}{{ m.role }},{% endfor %}", {"messages": MSGS}),

    # ---------------------------------------------------------------- statements
    ("stmt.if_elif_else", "{% for x in [1, 2, 3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %};{% endfor %}", {}),
    ("stmt.if_truthiness", "{% for v in vals %}{% if v %}T{% else %}F{% endif %}{% endfor %}",
     {"vals": [0, 1, "", "0", [], [0], {}, {"a": 1}, None, 0.0, False, " "]}),
    ("stmt.if_undefined", "{% if nope %}T{% else %}F{% endif %}", {}),
    ("stmt.for_list", "{% for x in xs %}{{ x }},{% endfor %}", {"xs": [1, 2, 3]}),
    ("stmt.for_string", "{% for c in 'hé✓' %}[{{ c }}]{% endfor %}", {}),
    ("stmt.for_else_empty", "{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", {"xs": []}),
    ("stmt.for_else_nonempty", "{% for x in xs %}{{ x }}{% else %}empty{% endfor %}", {"xs": [1]}),
    ("stmt.for_undefined", "[{% for x in nope %}{{ x }}{% else %}none{% endfor %}]", {}),
    ("stmt.for_dict_keys", "{% for k in d %}{{ k }},{% endfor %}", {"d": {"b": 1, "a": 2, "c": 3}}),
    ("stmt.for_dict_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("stmt.for_items_filter", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": 2}}),
    ("stmt.for_tuple_unpack_list", "{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }},{% endfor %}", {}),
    ("stmt.for_if_filter_loop_vars",
     "{% for x in xs if x is odd %}{{ loop.index }}/{{ loop.length }}:{{ x }}{{ '' if loop.last else ',' }}{% endfor %}",
     {"xs": [1, 2, 3, 4, 5]}),
    ("stmt.for_if_filter_else", "{% for x in xs if x > 10 %}{{ x }}{% else %}none{% endfor %}", {"xs": [1, 2]}),
    ("stmt.loop_index", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }} {% endfor %}", {}),
    ("stmt.loop_revindex", "{% for x in 'abc' %}{{ loop.revindex }}{{ loop.revindex0 }} {% endfor %}", {}),
    ("stmt.loop_first_last", "{% for x in 'abc' %}{{ loop.first }}/{{ loop.last }} {% endfor %}", {}),
    ("stmt.loop_length", "{% for x in xs %}{{ loop.length }}{% endfor %}", {"xs": [5, 6, 7]}),
    ("stmt.loop_previtem_nextitem",
     "{% for x in 'abc' %}[{{ loop.previtem }}|{{ x }}|{{ loop.nextitem }}]{% endfor %}", {}),
    ("stmt.loop_previtem_is_defined",
     "{% for x in 'ab' %}{{ loop.previtem is defined }}{{ loop.nextitem is defined }} {% endfor %}", {}),
    ("stmt.loop_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b') }}{% endfor %}", {}),
    ("stmt.break", "{% for x in range(10) %}{% if x == 3 %}{% break %}{% endif %}{{ x }}{% endfor %}", {}),
    ("stmt.continue", "{% for x in range(6) %}{% if x is even %}{% continue %}{% endif %}{{ x }}{% endfor %}", {}),
    ("stmt.break_loop_last", "{% for x in range(3) %}{{ loop.last }}{% break %}{% endfor %}", {}),
    ("stmt.nested_loops_shadow",
     "{% for a in [1, 2] %}{% for b in 'xy' %}{{ a }}{{ b }}{{ loop.index }} {% endfor %}|{{ loop.index }}|{% endfor %}", {}),
    ("stmt.nested_loops_outer_saved",
     "{% for a in [1, 2] %}{% set outer = loop %}{% for b in 'xy' %}{{ outer.index }}.{{ loop.index }} {% endfor %}{% endfor %}", {}),
    ("stmt.scope_set_in_for_not_leaking",
     "{% for x in [1, 2] %}{% set inner = x %}{% endfor %}[{{ inner }}]", {}),
    ("stmt.scope_set_in_for_not_persisting",
     "{% set total = 0 %}{% for x in [1, 2, 3] %}{% set total = total + x %}{{ total }},{% endfor %}{{ total }}", {}),
    ("stmt.scope_read_then_set_in_for",
     "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = x + 10 %}{{ x }};{% endfor %}{{ x }}", {}),
    ("stmt.scope_loop_var_after_loop", "{% for x in [1, 2] %}{% endfor %}[{{ x }}]", {}),
    ("stmt.scope_loop_var_shadows_outer", "{% set x = 'outer' %}{% for x in [1] %}{{ x }}{% endfor %}{{ x }}", {}),
    ("stmt.scope_set_in_if", "{% if true %}{% set y = 5 %}{% endif %}{{ y }}", {}),
    ("stmt.scope_set_overrides_var", "{% set x = 2 %}{{ x }}", {"x": 1}),
    ("stmt.namespace_persists",
     "{% set ns = namespace(total=0, seen=false) %}{% for x in [1, 2, 3] %}{% set ns.total = ns.total + x %}{{ ns.total }},{% endfor %}{{ ns.total }}",
     {}),
    ("stmt.namespace_flag_in_loop",
     "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }}",
     {"messages": MSGS}),
    ("stmt.set_tuple", "{% set a, b = 1, 2 %}{{ a }}-{{ b }}", {}),
    ("stmt.set_tuple_from_list", "{% set a, b = xs %}{{ b }}{{ a }}", {"xs": ["x", "y"]}),
    ("stmt.set_block", "{% set x %}hello {{ 1 + 1 }}{% endset %}[{{ x }}]", {}),
    ("stmt.set_block_multiline", "{% set x %}\n  line\n{% endset %}[{{ x }}]", {}),
    ("stmt.set_block_filter", "{% set x | upper %}abc{% endset %}{{ x }}", {}),
    ("stmt.filter_block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}),
    ("stmt.macro_positional", "{% macro m(a, b) %}{{ a }}-{{ b }}{% endmacro %}{{ m(1, 2) }}", {}),
    ("stmt.macro_keyword", "{% macro m(a, b) %}{{ a }}-{{ b }}{% endmacro %}{{ m(b=2, a=1) }}", {}),
    ("stmt.macro_default",
     "{% macro m(a, b='dflt', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, c=3) }}", {}),
    ("stmt.macro_missing_arg", "{% macro m(a, b) %}[{{ a }}][{{ b }}]{% endmacro %}{{ m(1) }}", {}),
    ("stmt.macro_called_twice", "{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) }}{{ m(2) }}", {}),
    ("stmt.macro_reads_toplevel",
     "{% set g = 'G' %}{% macro m() %}{{ g }}{{ v }}{% endmacro %}{{ m() }}", {"v": "V"}),
    ("stmt.macro_newlines", "{% macro m(x) %}\n  [{{ x }}]\n{% endmacro %}\n{{ m(1) }}|", {}),
    ("stmt.macro_trim_filter", "{% macro m(x) %}\n  [{{ x }}]\n{% endmacro %}{{ m(1) | trim }}|", {}),
    ("stmt.macro_in_expression", "{% macro m(x) %}{{ x }}{% endmacro %}{{ m('a') ~ '!' }} {{ m('a') == 'a' }} {{ m('ab')|length }}", {}),
    ("stmt.macro_set_inside_not_leaking",
     "{% macro m() %}{% set z = 1 %}{{ z }}{% endmacro %}{{ m() }}[{{ z }}]", {}),
    ("stmt.macro_error_too_many_args", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}", {}),

    # ---------------------------------------------------------------- filters
    ("filt.trim", "[{{ '  a b \n\t'|trim }}]", {}),
    ("filt.trim_chars", "[{{ 'xxaxbxx'|trim('x') }}][{{ '-_a_-'|trim('_-') }}]", {}),
    ("filt.trim_unicode_whitespace", "[{{ s|trim }}]", {"s": "\u3000\u00a0 a \u2003\n"}),
    ("filt.trim_zero_width_space_kept", "[{{ s|trim|length }}]", {"s": "\u200ba\u200b"}),
    ("filt.length", "{{ 'abc'|length }} {{ [1, 2]|length }} {{ {'a': 1}|length }} {{ ''|length }}", {}),
    ("filt.length_non_ascii", "{{ s|length }} {{ s|count }}", {"s": "héllo ✓"}),
    ("filt.length_undefined", "{{ nope|length }}", {}),
    ("filt.upper_lower", "{{ 'Héllo'|upper }} {{ 'HÉLLO'|lower }}", {}),
    ("filt.title", "{{ s|title }}", {"s": "hello world-foo o'neil"}),
    ("filt.title_mixed_case", "{{ 'hELLO wORLD'|title }}", {}),
    ("filt.capitalize", "{{ 'hELLO wORLD'|capitalize }}", {}),
    ("filt.replace", "{{ 'a-b-c'|replace('-', '+') }}", {}),
    ("filt.replace_count", "{{ 'aaaa'|replace('a', 'b', 2) }}", {}),
    ("filt.replace_newline", "{{ s|replace('\\n', ' ') }}", {"s": "a\nb\nc"}),
    ("filt.join", "{{ [1, 2, 3]|join }}|{{ ['a', 'b']|join(', ') }}", {}),
    ("filt.join_attribute", "{{ users|join(', ', attribute='name') }}", {"users": USERS}),
    ("filt.join_mixed", "{{ [1, none, 'a', 2.5, true]|join('|') }}", {}),
    ("filt.default_undefined", "{{ nope|default('d') }} {{ nope|d('d2') }}", {}),
    ("filt.default_none", "{{ x|default('d') }}", {"x": None}),
    ("filt.default_empty", "[{{ x|default('d') }}] [{{ x|default('d', true) }}] [{{ x|d('d', boolean=true) }}]", {"x": ""}),
    ("filt.default_defined", "{{ x|default('d') }}", {"x": 0}),
    ("filt.first_last", "{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|first }} {{ 'abc'|last }}", {}),
    ("filt.first_empty", "[{{ []|first }}][{{ []|last }}]", {}),
    ("filt.list", "{{ 'abc'|list }} {{ d|list }} {{ (1, 2)|list }}", {"d": {"a": 1, "b": 2}}),
    ("filt.reverse_list", "{{ xs|reverse|list }} {{ xs|reverse|join(',') }}", {"xs": [1, 2, 3]}),
    ("filt.reverse_string", "{{ 'héllo'|reverse }}", {}),
    ("filt.unique", "{{ [3, 1, 3, 2, 1]|unique|list }}", {}),
    ("filt.unique_case_insensitive", "{{ ['a', 'A', 'b', 'B', 'a']|unique|list }} {{ ['a', 'A']|unique(case_sensitive=true)|list }}", {}),
    ("filt.items", "{{ d|items|list }}", {"d": {"b": 1, "a": 2}}),
    ("filt.dictsort", "{{ d|dictsort }}", {"d": {"b": 1, "A": 3, "a": 2}}),
    ("filt.dictsort_by_value", "{{ d|dictsort(by='value') }}", {"d": {"b": 1, "c": 3, "a": 2}}),
    ("filt.dictsort_reverse", "{{ d|dictsort(reverse=true) }}", {"d": {"b": 1, "c": 3, "a": 2}}),
    ("filt.select_odd", "{{ [1, 2, 3, 4, 5]|select('odd')|list }}", {}),
    ("filt.select_truthy", "{{ [0, 1, '', 'a', none, []]|select|list }}", {}),
    ("filt.select_none", "{{ [1, none, 2]|select('none')|list }} {{ [1, none, 2]|reject('none')|list }}", {}),
    ("filt.select_defined", "{{ [1, nope, 2]|select('defined')|list }}", {}),
    ("filt.reject_odd", "{{ [1, 2, 3, 4]|reject('odd')|list }}", {}),
    ("filt.select_with_arg", "{{ [1, 2, 3, 4, 6]|select('divisibleby', 3)|list }} {{ [1, 2, 3]|select('==', 2)|list }}", {}),
    ("filt.selectattr_truthy", "{{ users|selectattr('age')|map(attribute='name')|list }}", {"users": USERS}),
    ("filt.selectattr_equalto", "{{ users|selectattr('role', 'equalto', 'user')|map(attribute='name')|join(',') }}", {"users": USERS}),
    ("filt.selectattr_defined", "{{ users|selectattr('age', 'defined')|list|length }} {{ users|rejectattr('age', 'defined')|map(attribute='name')|first }}", {"users": USERS}),
    ("filt.rejectattr_equalto", "{{ messages|rejectattr('role', 'equalto', 'system')|map(attribute='content')|join(' ') }}", {"messages": MSGS}),
    ("filt.rejectattr_truthy", "{{ users|rejectattr('age')|map(attribute='name')|list }}", {"users": USERS}),
    ("filt.selectattr_count_in_if", "{% if messages|selectattr('role', 'eq', 'user')|list|length > 1 %}multi{% endif %}", {"messages": MSGS}),
    ("filt.map_attribute", "{{ users|map(attribute='name')|list }}", {"users": USERS}),
    ("filt.map_attribute_missing", "{{ users|map(attribute='age')|join(',') }}", {"users": USERS}),
    ("filt.map_attribute_default", "{{ users|map(attribute='age', default=0)|list }}", {"users": USERS}),
    ("filt.map_filter", "{{ ['a', 'b']|map('upper')|list }} {{ ['1', '2']|map('int')|sum }}", {}),
    ("filt.sort_numbers", "{{ [3, 1, 2.5, -1]|sort }}", {}),
    ("filt.sort_strings_case_insensitive", "{{ ['b', 'a', 'B', 'A', 'c']|sort }}", {}),
    ("filt.sort_case_sensitive", "{{ ['b', 'a', 'B', 'A', 'c']|sort(case_sensitive=true) }}", {}),
    ("filt.sort_reverse", "{{ [3, 1, 2]|sort(reverse=true) }}", {}),
    ("filt.sort_attribute", "{{ users|sort(attribute='name')|map(attribute='name')|join(',') }}", {"users": USERS}),
    ("filt.indent_default", "[{{ s|indent }}]", {"s": "a\nb\n\nc"}),
    ("filt.indent_width_first", "[{{ s|indent(2, true) }}]", {"s": "a\nb\n\nc"}),
    ("filt.indent_blank", "[{{ s|indent(2, first=true, blank=true) }}]", {"s": "a\nb\n\nc\n"}),
    ("filt.indent_string", "[{{ s|indent('> ', true) }}]", {"s": "a\nb"}),
    ("filt.int", "{{ '42'|int }} {{ ' 7 '|int }} {{ '3.9'|int }} {{ 3.9|int }} {{ -3.9|int }} {{ true|int }}", {}),
    ("filt.int_of_list", "{{ [1]|int }}", {}),
    ("filt.int_invalid", "{{ 'abc'|int }} {{ 'abc'|int(-1) }} {{ none|int }} {{ '0x1A'|int }} {{ '0x1A'|int(base=16) }}", {}),
    ("filt.float", "{{ '1.5'|float }} {{ 2|float }} {{ 'x'|float }} {{ 'x'|float(9.5) }} {{ '1e3'|float }}", {}),
    ("filt.abs", "{{ x|abs }} {{ y|abs }}", {"x": -3, "y": -2.5}),
    ("filt.round", "{{ 3.7|round }} {{ 3.14159|round(2) }} {{ 3|round }} {{ 1234|round(-2) }}", {}),
    ("filt.round_bankers", "{{ 2.5|round }} {{ 3.5|round }} {{ 0.125|round(2) }} {{ 2.675|round(2) }}", {}),
    ("filt.round_floor_ceil", "{{ 2.5|round(method='floor') }} {{ 2.1|round(method='ceil') }} {{ 2.25|round(1, 'ceil') }}", {}),
    ("filt.round_int", "{{ 2.5|round|int }}", {}),
    ("filt.string", "{{ 1|string ~ 2|string }} {{ none|string }} {{ [1]|string }}", {}),
    ("filt.safe", "{{ '<b>&'|safe }} {{ '<b>&' }}", {}),
    ("filt.wordcount", "{{ 'hello, world-foo  bar'|wordcount }} {{ ''|wordcount }}", {}),
    ("filt.sum_min_max", "{{ [1, 2, 3]|sum }} {{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }}", {}),
    ("filt.chained", "{{ '  Hello World  '|trim|lower|replace(' ', '_') }}", {}),
    ("filt.tojson_dict_order", "{{ d|tojson }}", {"d": {"b": 1, "a": [1, 2], "c": {"z": None, "y": True}}}),
    ("filt.tojson_scalars", "{{ none|tojson }} {{ true|tojson }} {{ false|tojson }} {{ 1|tojson }} {{ 'a'|tojson }}", {}),
    ("filt.tojson_floats", "{{ [1.0, 0.1, 1e16, 1e-05, 2.5, -0.0]|tojson }}", {}),
    ("filt.tojson_non_ascii", "{{ s|tojson }}", {"s": "héllo ✓ 日本"}),
    ("filt.tojson_escapes", "{{ s|tojson }}", {"s": "q\"b\\n\nt\t\u0001\u001f\u007f<&>'/"}),
    ("filt.tojson_line_separator", "{{ s|tojson|length }}", {"s": "\u2028"}),
    ("filt.tojson_empty", "{{ []|tojson }} {{ {}|tojson }} {{ ''|tojson }}", {}),
    ("filt.tojson_indent", "{{ d|tojson(indent=2) }}", {"d": {"a": [1, {"b": None}], "e": [], "f": {}}}),
    ("filt.tojson_positional_is_ensure_ascii", "{{ [1, 2]|tojson(4) }} {{ 'é'|tojson(true) }}", {}),
    ("filt.tojson_sort_keys", "{{ d|tojson(sort_keys=true) }}", {"d": {"b": 1, "a": {"d": 2, "c": 3}}}),
    ("filt.tojson_separators", "{{ d|tojson(separators=(',', ':')) }}", {"d": {"a": [1, 2]}}),
    ("filt.tojson_tuple_and_int_keys", "{{ (1, 'a')|tojson }} {{ {1: 'x', 2: 'y'}|tojson }}", {}),
    ("filt.tojson_tools", "{% for t in tools %}{{ t|tojson }}\n{% endfor %}",
     {"tools": [{"type": "function", "function": {"name": "get_weather", "description": "Get the weather",
                                                  "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                                                                 "required": ["city"]}}}]}),

    # ---------------------------------------------------------------- tests
    ("test.defined", "{{ x is defined }} {{ nope is defined }} {{ n is defined }} {{ d.k is defined }} {{ d.z is defined }}",
     {"x": 1, "n": None, "d": {"k": 0}}),
    ("test.undefined", "{{ nope is undefined }} {{ x is undefined }}", {"x": 1}),
    ("test.none", "{{ none is none }} {{ n is none }} {{ 0 is none }} {{ nope is none }}", {"n": None}),
    ("test.boolean", "{{ true is boolean }} {{ 1 is boolean }} {{ none is boolean }}", {}),
    ("test.true_false", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }}", {}),
    ("test.integer", "{{ 1 is integer }} {{ 1.0 is integer }} {{ true is integer }} {{ '1' is integer }}", {}),
    ("test.float", "{{ 1.0 is float }} {{ 1 is float }} {{ f is float }}", {"f": 2.0}),
    ("test.number", "{{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ '1' is number }}", {}),
    ("test.string", "{{ 'a' is string }} {{ '' is string }} {{ 1 is string }} {{ none is string }}", {}),
    ("test.mapping", "{{ d is mapping }} {{ [] is mapping }} {{ 'a' is mapping }}", {"d": {}}),
    ("test.iterable", "{{ [] is iterable }} {{ {} is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ none is iterable }} {{ nope is iterable }}", {}),
    ("test.sequence", "{{ [] is sequence }} {{ 'a' is sequence }} {{ {} is sequence }} {{ 1 is sequence }} {{ (1,) is sequence }}", {}),
    ("test.callable", "{{ range is callable }} {{ raise_exception is callable }} {{ 'a'.upper is callable }} {{ 'a' is callable }} {{ d is callable }}", {"d": {}}),
    ("test.even_odd", "{{ 4 is even }} {{ 3 is even }} {{ 3 is odd }} {{ 0 is odd }} {{ -3 is odd }}", {}),
    ("test.divisibleby", "{{ 9 is divisibleby(3) }} {{ 10 is divisibleby(3) }}", {}),
    ("test.divisibleby_no_parens", "{{ 9 is divisibleby 3 }} {% if loop_i is divisibleby 2 %}even{% endif %}", {"loop_i": 4}),
    ("test.eq_equalto", "{{ 1 is eq 1 }} {{ 1 is equalto(2) }} {{ 'a' is eq('a') }}", {}),
    ("test.ne_lt_gt_le_ge", "{{ 1 is ne 2 }} {{ 1 is lt 2 }} {{ 1 is gt 2 }} {{ 2 is le 2 }} {{ 1 is ge 2 }}", {}),
    ("test.in", "{{ 2 is in [1, 2] }} {{ 'x' is in 'abc' }} {{ 'k' is in {'k': 1} }}", {}),
    ("test.sameas", "{{ true is sameas true }} {{ none is sameas none }} {{ 1 is sameas true }}", {}),
    ("test.lower_upper", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ 'a1' is lower }} {{ 'ABC' is upper }} {{ '1' is upper }}", {}),
    ("test.is_not", "{{ x is not none }} {{ nope is not defined }} {{ 3 is not even }} {{ 3 is not divisibleby 3 }}", {"x": 1}),
    ("test.in_if", "{% if messages[0].role == 'system' and messages[0].content is string %}ok{% endif %}", {"messages": MSGS}),

    # ---------------------------------------------------------------- string methods
    ("str.strip", "[{{ '  a b \n'.strip() }}][{{ '  a '.lstrip() }}][{{ ' a  '.rstrip() }}]", {}),
    ("str.strip_chars", "[{{ 'xxaxx'.strip('x') }}][{{ 'xyaxy'.lstrip('yx') }}][{{ 'a.,.'.rstrip('.,') }}]", {}),
    ("str.strip_unicode_whitespace", "[{{ s.strip() }}]", {"s": "\u3000\u00a0a\u2003"}),
    ("str.split_whitespace", "{{ '  a  b\tc\n '.split() }} {{ ''.split() }}", {}),
    ("str.split_sep", "{{ 'a,b,,c'.split(',') }} {{ ''.split(',') }} {{ 'a<sep>b'.split('<sep>') }}", {}),
    ("str.split_maxsplit", "{{ 'a,b,c'.split(',', 1) }} {{ 'a b  c'.split(none, 1) }}", {}),
    ("str.rsplit_maxsplit", "{{ 'a,b,c'.rsplit(',', 1) }}", {}),
    ("str.split_index", "{{ s.split('</think>')[-1].lstrip('\\n') }}", {"s": "<think>x</think>\n\nanswer"}),
    ("str.startswith_endswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith('lo') }}", {}),
    ("str.startswith_tuple", "{{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith(('x', 'y')) }}", {}),
    ("str.upper_lower", "{{ 'aBé'.upper() }} {{ 'AbÉ'.lower() }}", {}),
    ("str.title", "{{ s.title() }}", {"s": "hello world-foo o'neil"}),
    ("str.capitalize", "{{ 'hELLO wORLD'.capitalize() }}", {}),
    ("str.replace", "{{ 'aaa'.replace('a', 'bb') }} {{ 'aaa'.replace('a', 'b', 1) }}", {}),
    ("str.find_count", "{{ 'hello'.find('l') }} {{ 'hello'.find('z') }} {{ 'hello'.count('l') }} {{ 'hello'.rfind('l') }}", {}),
    ("str.join", "{{ ', '.join(['a', 'b']) }} {{ ''.join(xs) }}", {"xs": ["x", "y"]}),
    ("str.isdigit", "{{ '123'.isdigit() }} {{ '12a'.isdigit() }} {{ ''.isdigit() }}", {}),
    ("str.isspace", "{{ ' \t\n'.isspace() }} {{ ''.isspace() }} {{ ' a'.isspace() }}", {}),
    ("str.isalpha", "{{ 'abc'.isalpha() }} {{ 'é'.isalpha() }} {{ 'a1'.isalpha() }}", {}),
    ("str.isupper_islower", "{{ 'ABC1'.isupper() }} {{ 'abc'.islower() }} {{ 'Abc'.islower() }} {{ '1'.islower() }}", {}),
    ("str.format", "{{ '{}-{}'.format(1, 'a') }}", {}),
    ("str.method_on_var", "{{ m.content.strip() }}", {"m": {"content": "  hi  "}}),

    # ---------------------------------------------------------------- dict methods
    ("dict.keys_values_list", "{{ d.keys()|list }} {{ d.values()|list }}", {"d": {"b": 1, "a": 2}}),
    ("dict.keys_repr", "{{ d.keys() }}", {"d": {"b": 1, "a": 2}}),
    ("dict.items_list", "{{ d.items()|list }}", {"d": {"b": 1, "a": "x"}}),
    ("dict.get", "{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d.get('a', 'dflt') }}", {"d": {"a": 1}}),
    ("dict.get_none_vs_undefined", "[{{ d.get('z') }}][{{ d.z }}]", {"d": {}}),
    ("dict.in_keys", "{{ 'a' in d.keys() }} {{ 1 in d.values() }}", {"d": {"a": 1}}),

    # ---------------------------------------------------------------- globals
    ("glob.range_one", "{{ range(4)|list }} {{ range(0)|list }}", {}),
    ("glob.range_two", "{{ range(2, 5)|list }}", {}),
    ("glob.range_three", "{{ range(1, 10, 3)|list }}", {}),
    ("glob.range_negative_step", "{{ range(5, 0, -2)|list }} {{ range(3, 0, -1)|join(',') }}", {}),
    ("glob.range_repr", "{{ range(3) }}", {}),
    ("glob.range_len_index", "{{ range(2, 10)|length }} {{ range(10)[-1] }}", {}),
    ("glob.range_loop_length", "{% for i in range(xs|length - 1, -1, -1) %}{{ xs[i] }}{% endfor %}", {"xs": ["a", "b", "c"]}),
    ("glob.namespace_kwargs", "{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}", {}),
    ("glob.namespace_repr", "{% set ns = namespace(a=1) %}{{ ns }}", {}),
    ("glob.namespace_missing_attr", "{% set ns = namespace() %}[{{ ns.nope }}]", {}),
    ("glob.dict", "{{ dict(a=1, b='x') }} {{ dict() }}", {}),
    ("glob.raise_exception", "{{ raise_exception('Conversation roles must alternate user/assistant') }}", {}),
    ("glob.raise_exception_in_branch",
     "{% for m in messages %}{% if m.role not in ['system', 'user', 'assistant'] %}{{ raise_exception('bad role: ' + m.role) }}{% endif %}{{ m.role[0] }}{% endfor %}",
     {"messages": [{"role": "user"}, {"role": "tool"}]}),
    ("glob.raise_exception_not_reached", "{% if false %}{{ raise_exception('no') }}{% endif %}ok", {}),
    ("glob.strftime_now_dmy", "{{ strftime_now('%d %b %Y') }}", {}),
    ("glob.strftime_now_iso", "{{ strftime_now('%Y-%m-%d') }}", {}),
    ("glob.strftime_now_long", "{{ strftime_now('%A, %B %d, %Y %H:%M') }}", {}),

    # ---------------------------------------------------------------- errors
    ("err.unknown_filter", "{{ 1|nosuchfilter }}", {}),
    ("err.unknown_filter_in_if", "{% if x %}{{ 1|nosuchfilter }}{% endif %}ok", {"x": False}),
    ("err.unknown_filter_in_if_taken", "{% if x %}{{ 1|nosuchfilter }}{% endif %}ok", {"x": True}),
    ("err.unknown_test", "{{ 1 is nosuchtest }}", {}),
    ("err.call_non_callable", "{{ x() }}", {"x": 1}),
    ("err.call_undefined", "{{ nope() }}", {}),
    ("err.iterate_none", "{% for a in x %}{{ a }}{% endfor %}", {"x": None}),
    ("err.iterate_int", "{% for a in 5 %}{{ a }}{% endfor %}", {}),
    ("err.undefined_attr_of_attr_of_none", "{{ x.y.z }}", {"x": None}),
    ("err.undefined_attr_of_missing_key", "{{ d.a.b }}", {"d": {}}),
    ("err.sandbox_list_append", "{{ xs.append(4) }}", {"xs": [1]}),
    ("err.sandbox_dict_update", "{% set _ = d.update({'b': 2}) %}{{ d }}", {"d": {"a": 1}}),
    ("err.sandbox_range_too_big", "{{ range(200000)|length }}", {}),
    ("err.tojson_undefined", "{{ nope|tojson }}", {}),
    ("err.syntax_unclosed_if", "{% if x %}open", {}),
    ("err.syntax_incomplete_expr", "{{ 1 + }}", {}),
    ("err.syntax_unknown_tag", "{% generation %}x{% endgeneration %}", {}),
    ("err.syntax_endfor_mismatch", "{% for x in xs %}{% endif %}", {}),
]

# name -> (error_type, phase) for the cases meant to raise; every other case must render.
EXPECT_ERROR = {
    "op.precedence_tilde_plus": ("TypeError", "render"),
    "op.error_str_plus_int": ("TypeError", "render"),
    "op.error_undefined_plus_str": ("UndefinedError", "render"),
    "op.error_undefined_attr_of_undefined": ("UndefinedError", "render"),
    "op.error_compare_int_str": ("TypeError", "render"),
    "op.error_div_zero": ("ZeroDivisionError", "render"),
    "stmt.macro_error_too_many_args": ("TypeError", "render"),
    "glob.raise_exception": ("TemplateError", "render"),
    "glob.raise_exception_in_branch": ("TemplateError", "render"),
    "err.unknown_filter": ("TemplateAssertionError", "parse"),
    "err.unknown_filter_in_if_taken": ("TemplateRuntimeError", "render"),
    "err.unknown_test": ("TemplateAssertionError", "parse"),
    "err.call_non_callable": ("TypeError", "render"),
    "err.call_undefined": ("UndefinedError", "render"),
    "err.iterate_none": ("TypeError", "render"),
    "err.iterate_int": ("TypeError", "render"),
    "err.undefined_attr_of_attr_of_none": ("UndefinedError", "render"),
    "err.undefined_attr_of_missing_key": ("UndefinedError", "render"),
    "err.sandbox_list_append": ("SecurityError", "render"),
    "err.sandbox_dict_update": ("SecurityError", "render"),
    "err.sandbox_range_too_big": ("OverflowError", "render"),
    "err.tojson_undefined": ("TypeError", "render"),
    "err.syntax_unclosed_if": ("TemplateSyntaxError", "parse"),
    "err.syntax_incomplete_expr": ("TemplateSyntaxError", "parse"),
    "err.syntax_unknown_tag": ("TemplateSyntaxError", "parse"),
    "err.syntax_endfor_mismatch": ("TemplateSyntaxError", "parse"),
}


def run_case(env, name, template, variables):
    vars_json = json.loads(json.dumps(variables, ensure_ascii=False))
    if vars_json != variables:
        raise SystemExit(f"snippets_source.py: {name}: variables are not JSON round-trippable")
    entry = {"name": name, "template": template, "vars": vars_json}
    try:
        compiled = env.from_string(template)
    except Exception as e:  # noqa: BLE001 -- every failure is recorded
        entry.update(error=str(e), error_type=type(e).__name__, phase="parse")
        return entry
    try:
        entry["output"] = compiled.render(**vars_json)
    except Exception as e:  # noqa: BLE001
        entry.update(error=str(e), error_type=type(e).__name__, phase="render")
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "snippets.json"))
    ap.add_argument("--show", action="store_true", help="print every case and its result")
    args = ap.parse_args()

    names = [c[0] for c in CASES]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SystemExit(f"snippets_source.py: duplicate case names: {dup}")
    unknown = sorted(set(EXPECT_ERROR) - set(names))
    if unknown:
        raise SystemExit(f"snippets_source.py: EXPECT_ERROR names no case: {unknown}")

    env = make_env()
    results, problems, groups = [], [], {}
    for name, template, variables in CASES:
        r = run_case(env, name, template, variables)
        results.append(r)
        group = name.split(".", 1)[0]
        groups[group] = groups.get(group, 0) + 1
        want = EXPECT_ERROR.get(name)
        got = (r["error_type"], r["phase"]) if "error" in r else None
        if want != got:
            problems.append(f"{name}: expected {want or 'output'}, got {got or 'output'}"
                            + (f": {r['error']}" if got else f": {r['output']!r}"))
        if args.show:
            res = f"ERROR[{r['phase']}] {r['error_type']}: {r['error']}" if "error" in r else repr(r["output"])
            print(f"{name}\n    template {template!r}\n    vars     {json.dumps(variables, ensure_ascii=False)}\n    -> {res}")

    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        json.dump(results, f, ensure_ascii=False, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)

    print(f"jinja2 {jinja2.__version__}, python {sys.version.split()[0]}: {len(results)} cases "
          f"({sum('output' in r for r in results)} render, {sum('error' in r for r in results)} raise) -> {args.out}")
    for g, n in groups.items():
        print(f"  {g}: {n}")
    if problems:
        print("UNEXPECTED:", *problems, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
