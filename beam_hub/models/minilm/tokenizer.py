"""BERT WordPiece tokenization in core TensorFlow ops, inside the module's graph.

No tensorflow_text: the module loads anywhere TensorFlow does. Behaviour equals HuggingFace's
`tokenizers` (BertNormalizer, BertPreTokenizer, WordPiece; checked in tests on thousands of random
strings): special tokens such as "[MASK]" matched in the raw text; per-character normalization
from tables made by HF's own normalizer; splitting on whitespace and around punctuation and CJK
ideographs; greedy longest-match-first WordPiece; words over 100 characters become [UNK].
"""

from __future__ import annotations

import tensorflow as tf

from beam_hub.models.minilm.tables import ISOLATED, OTHER, SPACE, TokenizerTables

SPECIAL_BASE = 0x110000  # code points past Unicode stand for special tokens found in the raw text


class WordPieceTokenizer(tf.Module):
    """``tokenize(texts)`` -> ``(token_ids, mask)``, int32 [batch, length], with [CLS] ... [SEP]."""

    def __init__(self, tables: TokenizerTables, max_length: int, name: str | None = None) -> None:
        super().__init__(name=name)
        self.max_length = max_length
        ids = {t: i for i, t in enumerate(tables.vocab)}
        self.cls_id, self.sep_id, self.unk_id = ids["[CLS]"], ids["[SEP]"], ids[tables.unk_token]
        self.max_token_chars = tables.max_token_chars
        self.max_word_chars = tables.max_input_chars_per_word
        self.isolated_ranges = tables.isolated_ranges
        self.specials = [
            ([ord(c) for c in text], token_id) for text, token_id in sorted(tables.special_tokens.items())
        ]
        self.vocab_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tables.vocab), tf.range(len(tables.vocab), dtype=tf.int64)
            ),
            -1,
        )
        self.norm_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tables.norm_keys), tf.range(len(tables.norm_keys), dtype=tf.int64)
            ),
            -1,
        )
        self.norm_values = tf.constant(tables.norm_values)
        self.class_table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tables.class_keys), tf.constant(tables.class_values)
            ),
            OTHER,
        )

    def tokenize(self, texts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        cps = tf.strings.unicode_decode(texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        cps = self._normalize(self._mark_specials(cps))
        words, text_of_word = self._words(cps)
        pieces = self._wordpiece(words)
        per_text = tf.RaggedTensor.from_value_rowids(
            pieces.flat_values,
            tf.gather(text_of_word, pieces.value_rowids()),
            nrows=cps.nrows(),
            validate=False,
        )
        per_text = per_text[:, : self.max_length - 2]
        batch = per_text.nrows()
        full = tf.concat(
            [
                tf.fill([batch, 1], tf.constant(self.cls_id, tf.int64)),
                per_text,
                tf.fill([batch, 1], tf.constant(self.sep_id, tf.int64)),
            ],
            axis=1,
        )
        ids = tf.cast(full.to_tensor(0), tf.int32)
        mask = tf.cast(tf.sequence_mask(full.row_lengths(), tf.shape(ids, out_type=tf.int64)[1]), tf.int32)
        return ids, mask

    # -- characters ----------------------------------------------------------------------------

    def _mark_specials(self, cps: tf.RaggedTensor) -> tf.RaggedTensor:
        """Replace each literal special token ("[CLS]", "[MASK]", ...) by one code point SPECIAL_BASE + k."""
        flat = cps.flat_values
        n = tf.size(flat, out_type=tf.int64)
        limit = tf.gather(cps.row_limits(), cps.value_rowids())
        index = tf.range(n)
        longest = max(len(p) for p, _ in self.specials)
        padded = tf.concat([flat, tf.fill([longest], tf.constant(-1, flat.dtype))], 0)
        keep = tf.ones_like(flat, tf.bool)
        out = flat
        for k, (pattern, _) in enumerate(self.specials):
            match = index + len(pattern) <= limit
            for j, c in enumerate(pattern):
                match &= padded[j : j + n] == c
            out = tf.where(match, tf.constant(SPECIAL_BASE + k, flat.dtype), out)
            for j in range(1, len(pattern)):  # the rest of the literal goes: match shifted right by j
                keep &= ~tf.concat([tf.zeros([j], tf.bool), match], 0)[:n]
        return tf.ragged.boolean_mask(cps.with_flat_values(out), cps.with_flat_values(keep))

    def _normalize(self, cps: tf.RaggedTensor) -> tf.RaggedTensor:
        """Each code point becomes 0..K code points, as HuggingFace's BertNormalizer maps it."""
        flat = cps.flat_values
        idx = self.norm_table.lookup(tf.cast(flat, tf.int64))  # -1: unchanged (special marks too)
        width = self.norm_values.shape[1]
        unchanged = tf.concat([flat[:, None], tf.fill([tf.size(flat), width - 1], -1)], 1)
        slots = tf.where((idx >= 0)[:, None], tf.gather(self.norm_values, tf.maximum(idx, 0)), unchanged)
        valid = slots >= 0
        per_char = tf.reduce_sum(tf.cast(valid, tf.int64), 1)
        row_lengths = tf.math.unsorted_segment_sum(per_char, cps.value_rowids(), cps.nrows())
        return tf.RaggedTensor.from_row_lengths(tf.boolean_mask(slots, valid), row_lengths, validate=False)

    def _classes(self, flat: tf.Tensor) -> tf.Tensor:
        isolated = flat >= SPECIAL_BASE
        for lo, hi in self.isolated_ranges:
            isolated |= (flat >= lo) & (flat <= hi)
        return tf.where(
            isolated, tf.constant(ISOLATED, tf.int64), self.class_table.lookup(tf.cast(flat, tf.int64))
        )

    # -- words ---------------------------------------------------------------------------------

    def _words(self, cps: tf.RaggedTensor) -> tuple[tf.RaggedTensor, tf.Tensor]:
        """Split on whitespace (dropped) and around isolated characters.

        Returns the words (ragged code points) and the index of the text each word is in.
        """
        flat = cps.flat_values
        cls = self._classes(flat)
        first = tf.range(tf.size(flat, out_type=tf.int64)) == tf.gather(cps.row_starts(), cps.value_rowids())
        prev = tf.concat([[tf.constant(SPACE, tf.int64)], cls[:-1]], 0)
        starts = (cls != SPACE) & (first | (prev != OTHER) | (cls == ISOLATED))
        kept = cls != SPACE
        word_of_char = tf.cumsum(tf.cast(starts, tf.int64)) - 1
        words = tf.RaggedTensor.from_value_rowids(
            tf.boolean_mask(flat, kept),
            tf.boolean_mask(word_of_char, kept),
            nrows=tf.reduce_sum(tf.cast(starts, tf.int64)),
            validate=False,
        )
        return words, tf.boolean_mask(cps.value_rowids(), starts)

    def _wordpiece(self, words: tf.RaggedTensor) -> tf.RaggedTensor:
        """Greedy longest-match-first WordPiece of every word at once; ragged token ids per word."""
        chars = words.flat_values
        n_words = words.nrows()
        lengths, starts = words.row_lengths(), words.row_starts()
        word_of_char = words.value_rowids()
        is_mark = chars >= SPECIAL_BASE
        texts = tf.strings.unicode_encode(words.with_flat_values(tf.where(is_mark, 0x20, chars)), "UTF-8")
        # the longest vocabulary piece starting at every character of every word
        pos = tf.range(tf.size(chars, out_type=tf.int64)) - tf.gather(starts, word_of_char)
        remaining = tf.gather(lengths, word_of_char) - pos
        text_at = tf.gather(texts, word_of_char)
        pos32 = tf.cast(pos, tf.int32)
        best_len = tf.zeros_like(pos)
        best_id = tf.fill(tf.shape(pos), tf.constant(-1, tf.int64))
        for length in range(1, self.max_token_chars + 1):
            piece = tf.strings.substr(text_at, pos32, tf.fill(tf.shape(pos32), length), unit="UTF8_CHAR")
            piece = tf.where(pos > 0, tf.strings.join(["##", piece]), piece)
            found = self.vocab_table.lookup(piece)
            ok = (found >= 0) & (remaining >= length)
            best_len = tf.where(ok, tf.constant(length, tf.int64), best_len)
            best_id = tf.where(ok, found, best_id)
        # walk every word from its start, jumping by its best piece each step
        ends = starts + lengths
        last = tf.maximum(tf.size(best_len, out_type=tf.int64) - 1, 0)
        best_len = tf.concat([best_len, [0]], 0)  # keeps gathers valid for empty batches
        best_id = tf.concat([best_id, [-1]], 0)

        def body(step, cur, failed, emitted):
            active = (cur < ends) & ~failed
            at = tf.minimum(cur, last)
            step_len = tf.where(active, tf.gather(best_len, at), 0)
            failed |= active & (step_len == 0)
            emitted = emitted.write(step, tf.where(active & (step_len > 0), tf.gather(best_id, at), -1))
            return step + 1, cur + step_len, failed, emitted

        _, _, failed, emitted = tf.while_loop(
            lambda step, cur, failed, emitted: tf.reduce_any((cur < ends) & ~failed),
            body,
            (
                tf.constant(0),
                starts,
                lengths > self.max_word_chars,
                tf.TensorArray(tf.int64, size=0, dynamic_size=True, element_shape=[None]),
            ),
        )
        steps = tf.cond(
            emitted.size() > 0,
            lambda: tf.transpose(emitted.stack()),
            lambda: tf.zeros([n_words, 0], tf.int64),
        )  # no words at all: nothing was stacked
        per_word = tf.concat([steps, tf.fill([n_words, 1], tf.constant(-1, tf.int64))], 1)
        # [UNK] for words with no match or over the length limit; a marked special is its token
        special_ids = tf.constant([token_id for _, token_id in self.specials], tf.int64)
        first_char = tf.gather(
            tf.concat([chars, [0]], 0), tf.minimum(starts, tf.size(chars, out_type=tf.int64))
        )
        special = (lengths == 1) & (first_char >= SPECIAL_BASE)
        replace = failed | special
        replacement = tf.where(
            special, tf.gather(special_ids, tf.maximum(first_char - SPECIAL_BASE, 0)), self.unk_id
        )
        alone = tf.concat(
            [replacement[:, None], tf.fill([n_words, tf.shape(per_word)[1] - 1], tf.constant(-1, tf.int64))],
            1,
        )
        per_word = tf.where(replace[:, None], alone, per_word)
        return tf.ragged.boolean_mask(per_word, per_word >= 0)
