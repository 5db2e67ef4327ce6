#!/usr/bin/env python3
"""Expected token ids for t/unit/test_tokenizer.c, from Hugging Face's own
`tokenizers` library (pip install tokenizers), so the C tokenizer is checked
against the reference implementation rather than against itself.

For every tokenizer below and every line of t/data/tokenizer/corpus.txt it
writes, one line per case:
  t/data/tokenizer/<name>.ids   ids of encode(text, add_special_tokens=True),
                                space-separated (empty line: no ids)
  t/data/tokenizer/<name>.dec   decode(ids, skip_special_tokens=True),
                                escaped like the corpus

Variants (t/data/tokenizer/variants.json) are a tokenizer.json of ../shared
with top-level fields replaced ("set"), fields of "model" replaced
("set_model"), tokens appended to added_tokens ("add_tokens") and merges
written as [a, b] pairs ("merges_as_pairs").  They cover what none of the
published files in ../shared use: the Metaspace pre-tokenizer and decoder,
the added-token flags, the Unicode normalizers.  The C test builds the same
variants the same way.  "qwen2-nfc" is Llama-3's vocab under the
normalizer, pre-tokenizer, decoder, post-processor and model flags of the
published Qwen2.5 tokenizer.json (NFC; its regex differs from Llama-3's in
\\p{N} for \\p{N}{1,3}).

Corpus escapes (so every case is one line): \\n newline, \\t tab, \\r CR,
\\s space (to make leading/trailing spaces visible), \\\\ backslash,
\\u{HEX} the code point HEX (decomposed text, NUL and other controls).

Run from the repository root:  python3 tools/ref/tokenizer_ids.py
"""

import json
import os
import re
import sys

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
SHARED = os.environ.get("INFER_SHARED", os.path.join(ROOT, "..", "shared"))
DATA = os.path.join(ROOT, "t", "data", "tokenizer")

TOKENIZERS = {
    "gpt2": "tokenizers/gpt2",
    "llama2": "tokenizers/llama2",
    "llama3": "tokenizers/llama3",
    "stories260K": "models/stories260K",
}

UNESCAPE = {"n": "\n", "t": "\t", "r": "\r", "s": " ", "\\": "\\"}
ESCAPE = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
CODEPOINT = re.compile(r"u\{([0-9a-fA-F]{1,6})\}")

def unescape(line):
    out, i = [], 0
    while i < len(line):
        c = line[i]
        m = CODEPOINT.match(line, i + 1) if c == "\\" else None
        if m:
            out.append(chr(int(m.group(1), 16)))
            i = m.end()
        elif c == "\\" and i + 1 < len(line) and line[i + 1] in UNESCAPE:
            out.append(UNESCAPE[line[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def escape(text):
    # Leading/trailing spaces become \s so they survive editors; control
    # characters \u{HEX}.
    s = "".join(ESCAPE.get(c, c) if ord(c) >= 0x20 and ord(c) != 0x7f
                or c in ESCAPE else "\\u{%x}" % ord(c) for c in text)
    lead = len(s) - len(s.lstrip(" "))
    s = "\\s" * lead + s[lead:]
    trail = len(s) - len(s.rstrip(" "))
    if trail:
        s = s[:len(s) - trail] + "\\s" * trail
    return s


def variant(spec):
    with open(os.path.join(SHARED, spec["base"], "tokenizer.json"),
              encoding="utf-8") as f:
        j = json.load(f)
    j.update(spec.get("set", {}))
    j["model"].update(spec.get("set_model", {}))
    j["added_tokens"] = j.get("added_tokens", []) + spec.get("add_tokens", [])
    if spec.get("merges_as_pairs"):
        j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
    return Tokenizer.from_str(json.dumps(j))


def main():
    with open(os.path.join(DATA, "corpus.txt"), encoding="utf-8") as f:
        cases = [unescape(l) for l in f.read().split("\n")]
    if cases and cases[-1] == "":
        cases.pop()   # the file's final newline ends the last case

    with open(os.path.join(DATA, "variants.json"), encoding="utf-8") as f:
        variants = json.load(f)
    todo = [(name, Tokenizer.from_file(os.path.join(SHARED, rel,
                                                    "tokenizer.json")))
            for name, rel in TOKENIZERS.items()]
    todo += [(name, variant(spec)) for name, spec in variants.items()]

    for name, tok in todo:
        ids_lines, dec_lines = [], []
        for text in cases:
            ids = tok.encode(text, add_special_tokens=True).ids
            ids_lines.append(" ".join(str(i) for i in ids))
            dec_lines.append(escape(tok.decode(ids,
                                               skip_special_tokens=True)))
        for ext, lines in (("ids", ids_lines), ("dec", dec_lines)):
            with open(os.path.join(DATA, name + "." + ext), "w",
                      encoding="utf-8", newline="\n") as f:
                f.write("\n".join(lines) + "\n")
        print("%s: %d cases" % (name, len(cases)), file=sys.stderr)


if __name__ == "__main__":
    main()
