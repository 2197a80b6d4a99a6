"""verl rows -> response texts, exactly as verl's reward managers decode them, fast.

verl's reward managers decode each row's response with ``tokenizer.decode(ids,
skip_special_tokens=True)`` over the tokens the attention mask keeps (verl right-pads responses).
:func:`response_texts` returns the same strings for a whole batch:

* a byte-level BPE tokenizer (GPT-2, Qwen, Llama 3 families) through a :class:`ByteLevelTable`: a
  row of model-vocabulary tokens, special tokens only at its end (the stop token), is its tokens'
  bytes joined and decoded as UTF-8 with replacement. That is what the Rust decoder computes, about
  4x faster than it (benchmarks/bench_rewards_verl.py), which matters when a validation is 199,680
  rows of ~550 tokens on the same CPUs that grade them;
* every other row (an added token inside it, an unknown id) and every other tokenizer: the
  tokenizer's own decode, ``chunk`` rows per batched Rust call.

tests/test_verl_reward.py compares both with ``tokenizer.decode`` row by row (invalid UTF-8, added
and special tokens anywhere, empty rows, with and without clean-up).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from verl import DataProto

MODEL, SPECIAL, OTHER = 0, 1, 2  # token kinds: model vocabulary, special added token, anything else


@dataclass
class ByteLevelTable:
    """What a byte-level decoder makes of each token id.

    The decoder maps each character of a token back to the byte it stands for (GPT-2's
    byte-to-character table; a token with a character outside it stands for its own UTF-8) and
    turns the joined bytes of a row into text with UTF-8 "replace" (Rust's ``from_utf8_lossy`` and
    Python's ``bytes.decode("utf-8", "replace")`` both put one U+FFFD per maximal invalid subpart).
    """

    pieces: np.ndarray  # object [vocab]: each token's bytes as a latin-1 str (1 char = 1 byte; "" for a special token)
    kind: np.ndarray  # int8 [vocab]: MODEL, SPECIAL or OTHER

    @classmethod
    def of(cls, tokenizer) -> ByteLevelTable | None:
        """The table of a fast tokenizer with a byte-level decoder, else None."""
        from tokenizers import decoders, pre_tokenizers
        from transformers.convert_slow_tokenizer import bytes_to_unicode

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None or not isinstance(backend.decoder, decoders.ByteLevel):
            return None
        byte_of = {c: b for b, c in bytes_to_unicode().items()}
        if set(byte_of) != set(pre_tokenizers.ByteLevel.alphabet()):  # not the map the Rust decoder uses
            return None
        added = backend.get_added_tokens_decoder()  # id -> AddedToken
        vocab = backend.get_vocab(with_added_tokens=False)
        size = max([*vocab.values(), *added.keys(), -1]) + 1
        pieces = np.full(size, "", dtype=object)
        kind = np.full(size, OTHER, dtype=np.int8)
        for token, i in vocab.items():
            raw = bytes(byte_of[c] for c in token) if all(c in byte_of for c in token) else token.encode()
            pieces[i], kind[i] = raw.decode("latin-1"), MODEL
        for i, token in added.items():
            pieces[i], kind[i] = "", SPECIAL if token.special else OTHER
        return cls(pieces, kind)

    def decodable(self, ids: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """bool [rows]: rows the table decodes exactly. ``ids``: the rows' tokens one row after the
        other, ``lengths``: tokens per row."""
        known = (ids >= 0) & (ids < len(self.kind))
        kind = np.where(known, self.kind[np.where(known, ids, 0)], OTHER)
        row = np.repeat(np.arange(len(lengths)), lengths)  # each token's row
        bad = np.zeros(len(lengths), dtype=bool)
        bad[row[kind == OTHER]] = True
        special = np.flatnonzero(kind == SPECIAL)
        if len(special):  # each special token must be among its row's last (number of specials) tokens
            r = row[special]
            position = special - (np.cumsum(lengths) - lengths)[r]
            bad[r[position < (lengths - np.bincount(r, minlength=len(lengths)))[r]]] = True
        return ~bad


def _cleans_up(tokenizer) -> bool:
    """Whether ``tokenizer.decode`` applies its clean-up: ``clean_up_tokenization_spaces``, except that
    transformers 5 skips it for a BPE model unless a flag named
    ``clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output`` is set."""
    if not getattr(tokenizer, "clean_up_tokenization_spaces", False):
        return False
    flag = "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output"
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(tokenizer, flag) and type(backend.model).__name__ == "BPE":
        return bool(getattr(tokenizer, flag))
    return True


def response_texts(rows: DataProto, tokenizer, table: ByteLevelTable | None = None, chunk: int = 4096) -> list[str]:
    """Each row's response text, ``tokenizer.decode(valid response ids, skip_special_tokens=True)``.

    ``table``: the tokenizer's :meth:`ByteLevelTable.of` (None: every row through the tokenizer).
    Rows go ``chunk`` at a time, so only one chunk's tokens are ever Python objects."""
    responses = rows.batch["responses"]
    valid = rows.batch["attention_mask"][:, -responses.shape[-1] :].sum(-1).cpu().numpy()
    arr = responses.cpu().numpy()  # numpy rows: far cheaper to slice and list than tensor rows
    backend = getattr(tokenizer, "backend_tokenizer", None)
    texts: list[str] = [""] * len(valid)
    for start in range(0, len(valid), chunk):
        lengths = valid[start : start + chunk]
        block = arr[start : start + chunk, : max(1, int(lengths.max(initial=0)))]
        ids = block[np.arange(block.shape[1])[None, :] < lengths[:, None]]  # row after row
        ends, lens = np.cumsum(lengths).tolist(), lengths.tolist()
        if table is not None:
            fast = table.decodable(ids, lengths)
            pieces = table.pieces[np.where(fast.repeat(lengths), ids, 0)].tolist()
        else:
            fast = np.zeros(len(lengths), dtype=bool)
        slow = []
        for r, end in enumerate(ends):
            if fast[r]:  # one str join, then back to the bytes it stands for, then UTF-8 as the decoder does
                texts[start + r] = "".join(pieces[end - lens[r] : end]).encode("latin-1").decode("utf-8", "replace")
            else:
                slow.append(r)
        if slow:
            part = [ids[ends[r] - lens[r] : ends[r]].tolist() for r in slow]
            if backend is None:  # a slow (Python) tokenizer; clean-up below, as for the rest
                part = tokenizer.batch_decode(part, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            else:
                part = backend.decode_batch(part, skip_special_tokens=True)
            for r, text in zip(slow, part):
                texts[start + r] = text
    return [tokenizer.clean_up_tokenization(t) for t in texts] if _cleans_up(tokenizer) else texts
