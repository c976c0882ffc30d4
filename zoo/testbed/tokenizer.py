"""A real ``transformers.CLIPTokenizer`` for the testbed, built offline from the dataset's vocabulary.

The vocabulary follows CLIP's byte-level BPE layout: the 256 byte-unicode characters, the same 256 with the
end-of-word marker ``</w>``, the tokens created by the merges, then ``<|startoftext|>`` and ``<|endoftext|>``. The
merges join, letter by letter from the left, each word of :data:`WORDS`, so every dataset word is a single token and
any other text still tokenizes (into sub-words or bytes) without unknown tokens. Nothing is downloaded.
"""

from __future__ import annotations

from zoo.testbed.data import COLORS, SHAPES

WORDS = ("a", "an", "of", "something", "shape", "picture", "image", "photo", "and", "with", "on", "background",
         *COLORS, *SHAPES)
"""Words that get their own token. The captions use only ``a``, ``something``, the colours and the shapes."""
MODEL_MAX_LENGTH = 77
BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's (and GPT-2's) reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in codes)))


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Byte-pair encoding of one word: repeatedly join the adjacent pair with the lowest merge rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), float("inf")), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == float("inf"):
            break
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def build_vocab_and_merges(words: tuple[str, ...] = WORDS) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The CLIP-layout vocabulary (token -> id) and the ordered BPE merge list for ``words``."""
    alphabet = list(_bytes_to_unicode().values())
    tokens = alphabet + [ch + "</w>" for ch in alphabet]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    seen_tokens = set(tokens)
    for word in words:
        # 1. Tokenize the word with the merges so far (a later word must not change how an earlier one splits).
        symbols = _apply_merges(list(word[:-1]) + [word[-1] + "</w>"], ranks)
        # 2. Join what is left from the left: ((s1 + s2) + s3) + ...; each new merge ranks below all earlier ones,
        #    so earlier words still become one token and this word ends as the single token "word</w>".
        current = symbols[0]
        for nxt in symbols[1:]:
            pair = (current, nxt)
            current = current + nxt
            if pair not in ranks:
                ranks[pair] = len(merges)
                merges.append(pair)
            if current not in seen_tokens:
                seen_tokens.add(current)
                tokens.append(current)
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}, merges


def build_tokenizer():
    """A ``CLIPTokenizer`` (``model_max_length=77``) whose vocabulary covers the testbed's captions word by word."""
    from transformers import CLIPTokenizer

    vocab, merges = build_vocab_and_merges()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MODEL_MAX_LENGTH,
                         bos_token=BOS_TOKEN, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN, unk_token=EOS_TOKEN)
