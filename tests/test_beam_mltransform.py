import apache_beam as beam
import numpy as np
from apache_beam.ml.transforms.base import MLTransform
from apache_beam.testing.util import assert_that, equal_to

import beam_hub
from helpers import run_pipeline
from modules import text_features

ROWS = [{"id": 1, "text": "hello world"}, {"id": 2, "text": "Crème brûlée"}, {"id": 3, "text": ""}]


def test_text_embeddings_replace_the_column_and_read_back(modules_dir, tmp_path):
    artifacts = str(tmp_path / "artifacts")

    def write(p):
        out = (
            p
            | beam.Create(ROWS)
            | MLTransform(write_artifact_location=artifacts).with_transform(
                beam_hub.HubTextEmbeddings(columns=["text"], handle=modules_dir["text_embedder"])
            )
            | beam.Map(lambda r: (r["id"], r["text"]))
        )
        assert_that(out, equal_to([(r["id"], text_features(r["text"])) for r in ROWS]))

    run_pipeline(write)

    def read(p):  # the artifacts reproduce the same transform
        out = (
            p
            | beam.Create([{"id": 9, "text": "read back"}])
            | MLTransform(read_artifact_location=artifacts)
            | beam.Map(lambda r: (r["id"], r["text"]))
        )
        assert_that(out, equal_to([(9, text_features("read back"))]))

    run_pipeline(read)


def test_builtin_minilm_is_the_default(minilm_cache, tmp_path):
    module = beam_hub.load("builtin://all-MiniLM-L6-v2", cache_dir=minilm_cache)
    direct = module([r["text"] for r in ROWS])

    def build(p):
        out = (
            p
            | beam.Create(ROWS)
            | MLTransform(write_artifact_location=str(tmp_path / "a")).with_transform(
                beam_hub.HubTextEmbeddings(columns=["text"], cache_dir=minilm_cache)
            )
            | beam.Map(lambda r: (r["id"], len(r["text"]), np.asarray(r["text"], np.float32)))
            | beam.Map(lambda t: (t[0], t[1], bool(np.allclose(t[2], direct[t[0] - 1], atol=1e-5))))
        )
        assert_that(out, equal_to([(r["id"], 384, True) for r in ROWS]))

    run_pipeline(build)


def test_image_embeddings_follow_the_common_image_signature(tmp_path):
    import modules

    handle = modules.make_image_module(str(tmp_path / "image"))
    images = [
        {"img": np.full((16, 16, 3), 51, np.uint8)},  # uint8 -> [0, 1], 16x16 -> 8x8
        {"img": np.full((8, 8, 3), 0.5, np.float32)},
    ]

    def build(p):
        out = (
            p
            | beam.Create(images)
            | MLTransform(write_artifact_location=str(tmp_path / "a")).with_transform(
                beam_hub.HubImageEmbeddings(columns=["img"], handle=handle)
            )
            | beam.Map(lambda r: [round(v, 4) for v in r["img"]])
        )
        assert_that(out, equal_to([[0.2, 0.2, 0.2], [0.5, 0.5, 0.5]]))

    run_pipeline(build)
