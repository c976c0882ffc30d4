"""The testbed's procedural dataset and its offline CLIP tokenizer."""

import re

import numpy as np
import pytest

from zoo.testbed.data import (BACKGROUND, CAPTION_KINDS, CAPTION_PROBS, COLORS, IMAGE_SIZE, MAX_SIZE, MIN_SIZE, PALETTE,
                              SHAPES, Attributes, ShapesDataset, caption_for, parse_caption, render, shape_mask)
from zoo.testbed.tokenizer import MODEL_MAX_LENGTH, WORDS, build_tokenizer

CAPTION_RE = re.compile(r"^(a (red|green|blue|yellow) (circle|square|triangle)|a (circle|square|triangle)|"
                        r"something (red|green|blue|yellow)|something)$")


def test_same_seed_same_stream_and_different_seed_differs():
    a, b, c = ShapesDataset(7), ShapesDataset(7), ShapesDataset(8)
    for _ in range(2):
        batch_a, batch_b, batch_c = a.batch(16), b.batch(16), c.batch(16)
        assert np.array_equal(batch_a.images, batch_b.images)
        assert batch_a.captions == batch_b.captions
        assert not np.array_equal(batch_a.images, batch_c.images)
    assert batch_a.images.shape == (16, IMAGE_SIZE, IMAGE_SIZE, 3) and batch_a.images.dtype == np.float32
    assert batch_a.images.min() >= 0.0 and batch_a.images.max() <= 1.0


def test_captions_follow_the_grammar_and_name_the_true_attributes():
    batch = ShapesDataset(1).batch(2000)
    kinds = {kind: 0 for kind in CAPTION_KINDS}
    for caption, attr in zip(batch.captions, batch.attributes):
        assert CAPTION_RE.match(caption), caption
        shape, color = parse_caption(caption)
        assert shape in (None, attr.shape) and color in (None, attr.color)
        kinds[{(True, True): "both", (True, False): "shape", (False, True): "color",
               (False, False): "none"}[(shape is not None, color is not None)]] += 1
    for kind, probability in zip(CAPTION_KINDS, CAPTION_PROBS):  # 2000 draws: 4 sigma is < 0.045
        assert abs(kinds[kind] / 2000 - probability) < 0.045, kinds
    assert {a.shape for a in batch.attributes} == set(SHAPES)
    assert {a.color for a in batch.attributes} == set(COLORS)


def test_caption_for_and_parse_caption_are_inverse():
    for shape in (*SHAPES, None):
        for color in (*COLORS, None):
            assert parse_caption(caption_for(shape, color)) == (shape, color)


def test_shapes_lie_inside_the_image_with_the_drawn_size_and_colour():
    batch = ShapesDataset(2).batch(300)
    expected_area = {"circle": np.pi, "square": 4.0, "triangle": 2.0}  # times size**2
    for image, attr in zip(batch.images, batch.attributes):
        assert MIN_SIZE <= attr.size <= MAX_SIZE
        mask = shape_mask(attr)
        assert mask.sum() == pytest.approx(expected_area[attr.shape] * attr.size ** 2, rel=0.06)
        # Border pixels are background: the whole shape is inside.
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert np.allclose(border, BACKGROUND)
        # The shape's centre pixel has the palette colour.
        centre = image[int(attr.cy + (attr.size / 2 if attr.shape == "triangle" else 0)), int(attr.cx)]
        assert np.allclose(centre, PALETTE[attr.color], atol=1e-6)


def test_the_three_shapes_differ_at_the_same_place():
    masks = [shape_mask(Attributes(shape, "red", 16.0, 16.0, 8.0)) for shape in SHAPES]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(masks[i] - masks[j]).sum() > 20
    assert render([Attributes("circle", "red", 16.0, 16.0, 8.0)]).shape == (1, 32, 32, 3)


def test_tokenizer_has_one_token_per_caption_word_and_round_trips(tmp_path):
    from transformers import CLIPTokenizer

    tokenizer = build_tokenizer()
    assert tokenizer.model_max_length == MODEL_MAX_LENGTH == 77
    captions = ShapesDataset(3).batch(50).captions + ["", "a blue triangle"]
    for caption in captions:
        ids = tokenizer(caption).input_ids
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert len(ids) == len(caption.split()) + 2
        assert tokenizer.decode(ids, skip_special_tokens=True) == caption
    word_ids = {w: tokenizer(w).input_ids[1:-1] for w in WORDS}
    assert all(len(ids) == 1 for ids in word_ids.values()), word_ids
    assert len({ids[0] for ids in word_ids.values()}) == len(WORDS)
    # Text outside the vocabulary falls back to sub-words and bytes, never to the unknown token.
    ids = tokenizer("a zebra, 42!").input_ids[1:-1]
    assert tokenizer.unk_token_id not in ids
    padded = tokenizer("a red circle", padding="max_length", max_length=tokenizer.model_max_length).input_ids
    assert len(padded) == 77
    tokenizer.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path, local_files_only=True)
    assert loaded.model_max_length == 77
    for caption in captions:
        assert loaded(caption).input_ids == tokenizer(caption).input_ids
