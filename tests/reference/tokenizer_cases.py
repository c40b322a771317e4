"""Expected tokenizations for tests/unit/tokenizer_test.cc, computed with
python3-sentencepiece on the real Hymba tokenizer.model under the HF
LlamaTokenizer (legacy=true) contract of spec E7:
  - with special-token parsing, the text is split on the added_tokens_decoder
    contents of tokenizer_config.json (leftmost, longest first); each other
    piece is encoded on its own, with its own dummy-prefix space;
  - BOS is prepended on request;
  - decoding skips special tokens and lets SentencePiece join byte-fallback
    pieces and drop the first piece's leading space.
--check recomputes and compares with the committed tests/data/tokenizer_cases.json.

Run with Debian's /usr/bin/python3 (python3-sentencepiece)."""
import json
import os

import sentencepiece

import golden_file

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.normpath(os.path.join(HERE, "..", "data"))
MODEL_DIR = os.path.join(DATA, "hymba-1.5b")
OUTPUT = os.path.join(DATA, "tokenizer_cases.json")

CHAT_PROMPT = "<extra_id_0>System\nYou are a helpful assistant.\n\n<extra_id_1>User\nHello\n<extra_id_1>Assistant\n"
CHAT_IDS = [529, 17833, 29918, 333, 29918, 29900, 29958, 3924, 13, 3492, 526, 263, 8444, 20255, 29889, 13, 13,
            29966, 17833, 29918, 333, 29918, 29896, 29958, 2659, 13, 10994, 13, 29966, 17833, 29918, 333, 29918,
            29896, 29958, 7900, 22137, 13]

CHAT_PROMPT_USER_ONLY = "<extra_id_0>System\n\n<extra_id_1>User\nHi\n<extra_id_1>Assistant\n"
CHAT_IDS_USER_ONLY = [529, 17833, 29918, 333, 29918, 29900, 29958, 3924, 13, 13, 29966, 17833, 29918, 333, 29918,
                      29896, 29958, 2659, 13, 18567, 13, 29966, 17833, 29918, 333, 29918, 29896, 29958, 7900, 22137, 13]

LONG_PARAGRAPH = (
    "In 1851, Herman Melville published Moby-Dick; or, The Whale. It wasn't a success at first: critics "
    "called it \"sad stuff, dull and dreary, or ridiculous.\"\nToday it's read everywhere \u2014 in Tokyo "
    "(\u6771\u4eac), in M\u00fcnchen, in S\u00e3o Paulo \u2014 and quoted in code comments like `// call me Ishmael`.\n\n"
    "Prices: $3.50, \u20ac4,20, \u00a512; ratios 3:1 and 50%; e-mail: someone@example.com; URL "
    "https://example.org/a?b=c&d=e#f.\tTabs\tand   runs   of   spaces,   too.  \U0001F40B\U0001F30A ")

CASES = [
    ("empty", "", False, True),
    ("empty_bos", "", True, True),
    ("empty_no_special", "", False, False),
    ("hello", "Hello", False, True),
    ("hello_bos", "Hello", True, True),
    ("hello_bos_no_special", "Hello", True, False),
    ("space_hello", " Hello", False, True),
    ("hello_space", "Hello ", False, True),
    ("a_b_c_spaces", "a  b   c", False, True),
    ("leading_trailing_spaces", "   Hello world   ", False, True),
    ("line_tab", "line1\nline2\tTab", False, True),
    ("leading_newline", "\nHello\n", False, True),
    ("emoji_short", "I \u2764\ufe0f \U0001F999", False, True),
    ("cjk_short", "\u4f60\u597d\uff0c\u4e16\u754c", False, True),
    ("accented_short", "Cr\u00e8me br\u00fbl\u00e9e \u00e0 Z\u00fcrich", False, True),
    ("specials_brief_parsed", "Hello</s>world <s> x[PAD]y", False, True),
    ("specials_brief_as_text", "Hello</s>world <s> x[PAD]y", False, False),
    ("specials_brief_parsed_bos", "Hello</s>world <s> x[PAD]y", True, True),
    ("long_paragraph", LONG_PARAGRAPH, True, True),
    ("chat_prompt_user_only", CHAT_PROMPT_USER_ONLY, False, True),
    ("leading_space", " Hello", False, True),
    ("trailing_space", "Hello ", False, True),
    ("multiple_spaces", "a  b   c    d", False, True),
    ("only_spaces", "   ", False, True),
    ("newlines_tabs", "line1\nline2\tTab\n\n  indented\r\nend", False, True),
    ("emoji", "I \u2764\ufe0f \U0001F999 and \U0001F600!", False, True),
    ("cjk", "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8", False, True),
    ("accented_latin", "Cr\u00e8me br\u00fbl\u00e9e \u00e0 Z\u00fcrich, na\u00efve fa\u00e7ade", False, True),
    ("specials_parsed", "Hello</s>world <s> x[PAD]y</s>", False, True),
    ("specials_as_text", "Hello</s>world <s> x[PAD]y</s>", False, False),
    ("specials_parsed_bos", "<s>[INST] hi [/INST]</s>", True, True),
    ("adjacent_specials", "</s></s><s>[PAD]", False, True),
    ("unk_token_text", "an <unk> here", False, True),
    ("chat_prompt", CHAT_PROMPT, False, True),
    ("mixed_paragraph", "Dr. Smith's 3rd e-mail (sent 2024-11-28 @ 09:15) said: \"Caf\u00e9 \u2014 50% off!\" "
                        "\u03b1\u03b2\u03b3 \u0416\u0438\u0437\u043d\u044c \u0645\u0631\u062d\u0628\u0627 "
                        "\U0001F680\U0001F680", False, True),
]


def load():
    processor = sentencepiece.SentencePieceProcessor(model_file=os.path.join(MODEL_DIR, "tokenizer.model"))
    with open(os.path.join(MODEL_DIR, "tokenizer_config.json")) as f:
        added = {int(k): v for k, v in json.load(f)["added_tokens_decoder"].items()}
    return processor, added


def encode(processor, added, text, bos, special):
    ids = [1] if bos else []
    if not special:
        return ids + (processor.encode(text) if text else [])
    contents = sorted(((v["content"], k) for k, v in added.items()), key=lambda item: -len(item[0]))
    start = i = 0
    while i < len(text):
        match = next(((content, k) for content, k in contents if text.startswith(content, i)), None)
        if match is None:
            i += 1
            continue
        if i > start:
            ids += processor.encode(text[start:i])
        ids.append(match[1])
        i += len(match[0])
        start = i
    if start < len(text):
        ids += processor.encode(text[start:])
    return ids


def decode(processor, added, ids):
    kept = [i for i in ids if not (i in added and added[i].get("special"))]
    return processor.decode(kept)


def build():
    processor, added = load()
    cases = []
    for name, text, bos, special in CASES:
        ids = encode(processor, added, text, bos, special)
        cases.append({"name": name, "text": text, "bos": bos, "special": special, "ids": ids,
                      "decoded": decode(processor, added, ids)})
    by_name = {case["name"]: case for case in cases}
    assert by_name["chat_prompt"]["ids"] == CHAT_IDS, "the spec's 38-id chat prompt does not reproduce"
    assert by_name["chat_prompt_user_only"]["ids"] == CHAT_IDS_USER_ONLY, "the spec's user-only chat prompt"
    assert by_name["hello_bos"]["ids"] == [1, 15043]
    assert by_name["hello"]["ids"] == [15043]
    assert by_name["specials_as_text"]["ids"] != by_name["specials_parsed"]["ids"]
    assert 2 in by_name["specials_brief_parsed"]["ids"] and 2 not in by_name["specials_brief_as_text"]["ids"]
    assert len(set(case["name"] for case in cases)) == len(cases)
    return cases


if __name__ == "__main__":
    golden_file.main(__doc__, build, OUTPUT, "tokenizer cases")
