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
("set_model"), entries added to model.vocab ("add_vocab"), tokens appended
to added_tokens ("add_tokens") and merges written as [a, b] pairs
("merges_as_pairs"); "corpus": false leaves the corpus out (the variant is
only decoded).  They cover what none of the published files in ../shared
use: the Metaspace pre-tokenizer and decoder, the added-token flags, the
Unicode normalizers, byte tokens HF reads in unusual spellings.  The C test
builds the same variants the same way.  "qwen2-nfc" is Llama-3's vocab under
the normalizer, pre-tokenizer, decoder, post-processor and model flags of
the published Qwen2.5 tokenizer.json (NFC; its regex differs from Llama-3's
in \\p{N} for \\p{N}{1,3}).

Decoding of chosen ids (byte-fallback runs that are not valid UTF-8, byte
tokens among special ones, the decoder's Strip, byte-level lossy decoding),
for the tokenizers of DETOK:
  t/data/tokenizer/<name>.detok  "ids<TAB>decode" a line, decode as
                                 decode(ids, skip_special_tokens=True),
                                 escaped like the corpus
  t/data/tokenizer/<name>.detok-keep  the same ids as
                                 decode(ids, skip_special_tokens=False)
made of the hand-written cases below and of random ones (fixed seed).  The
C detokenizer holds a run of byte tokens back for 32 bytes at most: random
cases where a run valid for 32 bytes breaks later are left out, as there
it differs from HF by design (t/unit/test_tokenizer.c checks what it does).

Corpus escapes (so every case is one line): \\n newline, \\t tab, \\r CR,
\\s space (to make leading/trailing spaces visible), \\\\ backslash,
\\u{HEX} the code point HEX (decomposed text, NUL and other controls).

Also checks that transformers' decode (AutoTokenizer over the same
directory) agrees on the .detok cases of the published tokenizers.

Run from the repository root:  python3 tools/ref/tokenizer_ids.py
"""

import codecs
import json
import os
import random
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

# The C detokenizer's INFER_DETOK_RUN.
DETOK_RUN = 32


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
    # characters (a byte token may decode to any) \u{HEX}.
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
    j["model"]["vocab"].update(spec.get("add_vocab", {}))
    j["added_tokens"] = j.get("added_tokens", []) + spec.get("add_tokens", [])
    if spec.get("merges_as_pairs"):
        j["model"]["merges"] = [m.split(" ") for m in j["model"]["merges"]]
    return Tokenizer.from_str(json.dumps(j))


# ---- chosen ids to decode ------------------------------------------------

def byte_tokens(data):
    return ["<0x%02X>" % b for b in data]


EMOJI = "\U0001F642".encode()            # F0 9F 99 82
HAN = "\u65e5".encode()                  # E6 97 A5

SENTENCEPIECE_CASES = [
    byte_tokens(HAN),                                   # whole
    byte_tokens(HAN) + ["<0x80>"],                      # all four U+FFFD
    ["<0xE6>", "<0x41>"],                               # the A too
    byte_tokens(HAN[:2] + HAN),                         # five
    ["<0xE6>", "<s>", "<0x97>", "<0xA5>"],              # special inside
    byte_tokens(HAN) + ["</s>", "<0x80>"],
    ["<0xE6>", "<unk>", "<0x97>"],
    ["<0x20>", "<0xE6>"],                               # no Strip of U+FFFD
    ["<0x20>", "<0x41>"],                               # Strip of a byte
    ["<0x20>", "<0x20>", "\u2581a"],
    ["\u2581", "\u2581a"],
    ["<s>", "\u2581", "<0x41>"],
    ["\u2581a"] + byte_tokens(HAN) + ["\u2581b"],
    ["\u2581a"] + byte_tokens(HAN[:2]) + ["\u2581b"],
    ["\u2581a"] + byte_tokens(HAN[:2]),                 # cut at the end
    byte_tokens(HAN) + ["\u2581a"] + byte_tokens(HAN[1:]),
    byte_tokens(EMOJI * 20),                            # 80 valid bytes
    byte_tokens(EMOJI * 7) + ["<0x80>"],                # 29 broken
    byte_tokens(b"a" * 31) + ["<0xFF>"],                # 32 broken
    byte_tokens(EMOJI * 8) + ["\u2581b"] + byte_tokens(EMOJI[:3]),
    byte_tokens(EMOJI * 8) + ["\u2581b", "<0x9F>"] + byte_tokens(EMOJI),
    byte_tokens("\u00e9\u0301".encode()),
    ["<0xC0>", "<0x80>"],                               # overlong
    ["<0xED>", "<0xA0>", "<0x80>"],                     # surrogate
    ["<0xF4>", "<0x90>", "<0x80>", "<0x80>"],           # past U+10FFFF
    ["<0xF5>"], ["<0xFF>", "\u2581a"], ["<0x80>"],
    ["<0x00>", "<0x0A>", "<0x09>", "<0x7F>"],
    ["<0xE6>"] + byte_tokens(HAN),
]

BYTE_LEVEL_CASES = [
    # bytes as GPT-2's byte-level characters (0x80 is "\u0122", ...)
    [0x80], HAN, HAN[:2] + b"a", HAN[:1] + b"a" + HAN[:1], HAN + b"\x80",
    b"\xe0\x80", b"\xf0\x90\x80A", b"\xed\xa0\x80", b"\xc0\xaf",
    EMOJI * 12, EMOJI[:3] * 3,
]


def gpt2_byte_chars():
    bs = (list(range(ord("!"), ord("~") + 1))
          + list(range(0xa1, 0xad)) + list(range(0xae, 0x100)))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def random_sentencepiece(tok, rng, n):
    """Runs of byte tokens, valid and broken, among words and specials."""
    words = ["\u2581a", "\u2581the", "\u2581", "a", ".", "<s>", "</s>",
             "<unk>"]
    words = [w for w in words if tok.token_to_id(w) is not None]
    cases = []
    while len(cases) < n:
        seq = []
        for _ in range(rng.randint(1, 8)):
            r = rng.random()
            if r < 0.3:
                seq.append(rng.choice(words))
            elif r < 0.7:
                # characters, maybe cut or with a byte changed
                data = "".join(rng.choice("a\u00e9\u65e5\U0001F642\u0301")
                               for _ in range(rng.randint(1, 12))).encode()
                data = bytearray(data)
                if rng.random() < 0.4:
                    data = data[:rng.randint(1, len(data))]
                if rng.random() < 0.3:
                    data[rng.randrange(len(data))] = rng.randrange(256)
                seq += byte_tokens(data)
            else:
                seq += byte_tokens(bytes(rng.randrange(256) for _ in
                                         range(rng.randint(1, 4))))
        ids = [tok.token_to_id(t) for t in seq]
        if not broken_past_hold(tok, ids):
            cases.append(ids)
    return cases


def valid_start(data):
    """Whether data is valid UTF-8 but for an unfinished last character."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(bytes(data))
        return True
    except UnicodeDecodeError:
        return False


def broken_past_hold(tok, ids):
    """Whether a run of byte tokens is valid for DETOK_RUN bytes and not
    valid as a whole: the C detokenizer has let its start out by then.
    Special tokens end a run only when decode keeps them: a case counts
    if it breaks past the hold either way."""
    special = {i for i, a in tok.get_added_tokens_decoder().items()
               if a.special}
    runs, run, kept = [], bytearray(), bytearray()
    for i in ids:
        t = tok.id_to_token(i)
        if re.fullmatch(r"<0x[0-9A-F]{2}>", t):
            run.append(int(t[3:5], 16))
            kept.append(int(t[3:5], 16))
        elif i not in special:
            runs += [run, kept]
            run, kept = bytearray(), bytearray()
        else:
            runs.append(kept)
            kept = bytearray()
    runs.append(kept)
    runs.append(run)
    for r in runs:
        if len(r) >= DETOK_RUN and valid_start(r[:DETOK_RUN]):
            try:
                bytes(r).decode()
            except UnicodeDecodeError:
                return True
    return False


def random_byte_level(tok, rng, n):
    chars = gpt2_byte_chars()
    words = ["Hello", "\u0120world", "<|endoftext|>", "."]
    cases = []
    while len(cases) < n:
        seq = []
        for _ in range(rng.randint(1, 8)):
            if rng.random() < 0.3:
                seq.append(rng.choice(words))
            else:
                seq += [chars[rng.randrange(256)]
                        for _ in range(rng.randint(1, 4))]
        cases.append([tok.token_to_id(t) for t in seq])
    return cases


def detok_cases(name, tok, rng):
    if tok.token_to_id("<0x41>") is not None:
        cases = [[tok.token_to_id(t) for t in c] for c in SENTENCEPIECE_CASES]
        if name == "stories260K-bytes":
            cases += [[tok.token_to_id(t) for t in c] for c in (
                ["<0x+F>"], ["<0xe6>", "<0x97>", "<0xa5>"],
                ["<0xE6>", "<0x97>", "<0xa5>", "<0x+F>"],
                ["<0xG0>", "<0x-1>"], ["<0xE6>", "<0x-1>"],
                ["<0x+0>", "<0x++>"])]
        cases += random_sentencepiece(tok, rng, 200)
    else:
        chars = gpt2_byte_chars()
        cases = [[tok.token_to_id(chars[b]) for b in c]
                 for c in BYTE_LEVEL_CASES]
        eot = tok.token_to_id("<|endoftext|>")
        if eot is not None:     # a special token inside and around
            han = cases[1]
            cases += [[eot], han[:1] + [eot] + han[1:], [eot] + cases[2],
                      han + [eot, eot]]
        cases += random_byte_level(tok, rng, 100)
    for c in cases:
        assert None not in c, (name, c)
    return cases


# Tokenizers whose .detok cases are written (base ones or variants).
DETOK = ["gpt2", "llama2", "stories260K", "stories260K-bytes"]


def check_transformers(name, rel, cases, want, skip):
    try:
        from transformers import AutoTokenizer
    except ImportError:
        print("%s: transformers not installed, not compared" % name,
              file=sys.stderr)
        return
    tf = AutoTokenizer.from_pretrained(os.path.join(SHARED, rel))
    for ids, w in zip(cases, want):
        got = tf.decode(ids, skip_special_tokens=skip)
        if got != w:
            sys.exit("%s: transformers decodes %s as %r, tokenizers as %r"
                     % (name, ids, got, w))
    print("%s: transformers agrees on %d decodes" % (name, len(cases)),
          file=sys.stderr)


def main():
    with open(os.path.join(DATA, "corpus.txt"), encoding="utf-8") as f:
        cases = [unescape(l) for l in f.read().split("\n")]
    if cases and cases[-1] == "":
        cases.pop()   # the file's final newline ends the last case

    with open(os.path.join(DATA, "variants.json"), encoding="utf-8") as f:
        variants = json.load(f)
    todo = [(name, Tokenizer.from_file(os.path.join(SHARED, rel,
                                                    "tokenizer.json")), True)
            for name, rel in TOKENIZERS.items()]
    todo += [(name, variant(spec), spec.get("corpus", True))
             for name, spec in variants.items()]

    for name, tok, corpus in todo:
        if corpus:
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
        if name in DETOK:
            rng = random.Random("detok " + name)
            dcases = detok_cases(name, tok, rng)
            for ext, skip in ((".detok", True), (".detok-keep", False)):
                want = [tok.decode(c, skip_special_tokens=skip)
                        for c in dcases]
                with open(os.path.join(DATA, name + ext), "w",
                          encoding="utf-8", newline="\n") as f:
                    for c, w in zip(dcases, want):
                        f.write("%s\t%s\n" % (" ".join(str(i) for i in c),
                                              escape(w)))
                print("%s%s: %d decodes" % (name, ext, len(dcases)),
                      file=sys.stderr)
                if name in TOKENIZERS:
                    check_transformers(name, TOKENIZERS[name], dcases, want,
                                       skip)


if __name__ == "__main__":
    main()
