"""The verdict pipeline end to end: bulk import → classified (emails/s) for each model
configuration, with its accuracy on the temporal split, the raw encoder's rate in the same
run, search indexing, and webhook → verdict latency.

Per configuration, on a scratch database ``spamsift_bench_pipeline`` and the configured (or
embedded) Redis: the 2002 folders (easy_ham, hard_ham, spam) are stored labeled and a model
is trained on them by the real training task; a bulk worker (`spamsift worker -Q bulk`,
prefork, one process per core) starts and loads the model; then `import` of the later
folders (easy_ham_2, spam_2) is timed until every one of those emails has its verdict. The
verdicts the pipeline wrote are scored against the folders' labels (F1 etc. at the model's
own spam threshold, chosen on out-of-fold scores of the training part).
    python -m bench.pipeline_bench [--configs tfidf-lr,linear-torch,linear-int8,cascade-int8]
                                   [--latency-requests 600] [--make-run-timeout 3600]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.report import write_section

DATABASE = "spamsift_bench_pipeline"
CLIENTS = (1, 8)  # concurrent webhook clients
EARLY = ("easy_ham", "hard_ham", "spam")
LATE = ("easy_ham_2", "spam_2")


@dataclass(frozen=True)
class Config:
    name: str
    kind: str  # what `spamsift train` trains
    backend: str  # SPAMSIFT_ENCODER_BACKEND for training and serving

    @property
    def uses_encoder(self) -> bool:
        return self.kind != "tfidf-lr"


CONFIGS = {c.name: c for c in (
    Config("tfidf-lr", "tfidf-lr", "torch"),
    Config("linear-torch", "linear", "torch"),
    Config("linear-int8", "linear", "onnx-int8"),
    Config("cascade-int8", "cascade", "onnx-int8"),
)}


def bench_env(url: str, broker: str, config: Config) -> dict[str, str]:
    return dict(os.environ, SPAMSIFT_DATABASE_URL=url, SPAMSIFT_BROKER_URL=broker,
                SPAMSIFT_ENCODER_BACKEND=config.backend)


def corpus_paths(folders: tuple[str, ...]) -> list[Path]:
    """The corpus archives of ``folders`` (``easy_ham.tar.gz`` holds folder easy_ham)."""
    from core.config import get_settings
    from core.corpus import corpus_archives

    return [p for p in corpus_archives(get_settings().sample_corpus_dir)
            if p.name.split(".")[0] in folders]


def run_config(config: Config, url: str, broker: str, log_dir: Path) -> dict:
    """One configuration in a child process (settings are read once per process)."""
    result = subprocess.run([sys.executable, "-m", "bench.pipeline_bench", "--child",
                             config.name, "--log-dir", str(log_dir)],
                            env=bench_env(url, broker, config), capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{config.name} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def start_worker(queue: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "cli", "worker", "-Q", queue],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def wait_warm(log_path: Path, processes: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log_path.read_text(errors="replace").count("warmed up") >= processes:
            return
        time.sleep(0.5)
    raise SystemExit(f"the worker did not warm up:\n{log_path.read_text()[-3000:]}")


def child(name: str, log_dir: Path) -> dict:
    from sqlalchemy import func, select

    from core import migrate, services
    from core.config import get_settings
    from core.db import session_scope
    from core.importers import iter_messages, label_from_origin
    from core.intake import Incoming, store_emails
    from core.models import Email, Label, Prediction, TrainedModel
    from ml.metrics import binary_metrics
    from workers.app import celery_app
    from workers.importing import import_paths
    from workers.pipeline import EncoderInput, index, model_text, window_vectors
    from workers.client import training_job
    from workers.train import train_model

    config = CONFIGS[name]
    settings = get_settings()
    url = settings.database_url
    migrate.recreate_database(url)
    migrate.upgrade(url)
    services.redis_client().flushdb()

    # The training part, stored labeled (not enqueued: no worker judges it).
    with session_scope() as session:
        batch = []
        for message in iter_messages(corpus_paths(EARLY), settings.max_message_bytes):
            if message.data is not None:
                label = label_from_origin(message.origin)
                batch.append(Incoming(message.data, "train", label, "import"))
        store_emails(session, batch)
        job = training_job(session, config.kind)
    started = time.perf_counter()
    train_model.apply(args=[job.id]).get()
    train_seconds = time.perf_counter() - started
    celery_app.control.purge()  # activation's re-scoring of the training mail: not timed
    with session_scope() as session:
        model = session.scalar(select(TrainedModel).where(TrainedModel.is_active))
        session.expunge(model)

    processes = os.cpu_count() or 1
    log_path = log_dir / f"worker-{name}.log"
    worker = start_worker("bulk", log_path)
    try:
        wait_warm(log_path, processes)
        started = time.perf_counter()
        summary = import_paths(corpus_paths(LATE), label_from_path=True, source="import")
        imported_at = time.perf_counter() - started
        total = summary.imported
        judged = 0
        while judged < total:
            time.sleep(0.2)
            with session_scope() as session:
                judged = session.scalar(select(func.count()).select_from(Email).where(
                    Email.source == "import", Email.verdict_id.is_not(None)))
        classify_seconds = time.perf_counter() - started
    finally:
        stop(worker)
        celery_app.control.purge()

    with session_scope() as session:
        rows = session.execute(
            select(Email.label, Prediction.p_spam, Prediction.evidence)
            .join(Prediction, Prediction.id == Email.verdict_id)
            .where(Email.source == "import")).all()
        test_emails = list(session.scalars(
            select(Email).where(Email.source == "import").order_by(Email.id)))
        for email in test_emails:
            session.expunge(email)
    y = np.array([label == Label.SPAM for label, _, _ in rows])
    p = np.array([p_spam for _, p_spam, _ in rows])
    figures = binary_metrics(y, p, float(model.thresholds["spam"]))
    stages = [evidence.get("stage") for _, _, evidence in rows]
    cheap_share = (sum(stage == "cheap" for stage in stages) / len(stages)
                   if any(stages) else None)

    out = {"name": name, "kind": config.kind, "backend": config.backend, "n": total,
           "import_seconds": imported_at, "classify_seconds": classify_seconds,
           "rate": total / classify_seconds, "train_seconds": train_seconds,
           "f1": figures["f1"], "precision": figures["precision"],
           "recall": figures["recall"], "fpr": figures["fpr"], "roc_auc": figures["roc_auc"],
           "cheap_share": cheap_share}
    texts = [model_text(e.subject, e.text) for e in test_emails[:500]]
    if config.uses_encoder:
        how = EncoderInput.of(model) if model.kind == "linear" else EncoderInput.configured()
        window_vectors(texts[:32], how)  # warm
        started = time.perf_counter()
        window_vectors(texts, how)
        out["raw_rate"] = len(texts) / (time.perf_counter() - started)
        out["window"] = how.window
        sample = test_emails[:int(os.environ.get("BENCH_INDEX_EMAILS", "300"))]
        from core.models import Chunk

        with session_scope() as session:
            started = time.perf_counter()
            index(session, sample)
            seconds = time.perf_counter() - started
            chunks = session.scalar(select(func.count()).select_from(Chunk))
        out["index_rate"] = len(sample) / seconds
        out["index_chunk_rate"] = chunks / seconds
    return out


# -- webhook → verdict latency ----------------------------------------------------------------

def latency(config: Config, url: str, broker: str, log_dir: Path, requests_n: int,
            clients: int) -> list[float]:
    """Seconds from each POST /webhooks/raw?wait to its verdict, ``clients`` at a time, with
    the model of ``config`` (trained by ``child`` into the scratch database) active."""
    from http.client import HTTPConnection

    from bench.webhook_bench import free_port, unique, wait_healthy
    from tests.providers import WEBHOOK_SETTINGS

    env = {**bench_env(url, broker, config), **WEBHOOK_SETTINGS,
           "SPAMSIFT_WEBHOOK_RATE_LIMIT": "1000000 per minute",
           "SPAMSIFT_SECRET_KEY": secrets.token_urlsafe(48)}
    os.environ.update(env)
    from core.auth import create_api_token, create_user
    from core.config import get_settings
    from core.db import session_scope
    from core.models import Role

    get_settings.cache_clear()
    with session_scope() as session:
        user = create_user(session, f"bench-{time.time_ns()}", "a-long-password", Role.ADMIN)
        token = create_api_token(session, user, "bench")
    port = free_port()
    web_log = open(log_dir / "web.log", "w")
    web = subprocess.Popen([sys.executable, "-m", "cli", "web", "--port", str(port), "-w", "2"],
                           env=env, stdout=web_log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    log_path = log_dir / f"realtime-{config.name}.log"
    realtime = subprocess.Popen([sys.executable, "-m", "cli", "worker", "-Q", "realtime"],
                                env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base)
        wait_warm(log_path, os.cpu_count() or 1)
        messages = late_messages(requests_n + 20)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
        path = "/webhooks/raw?wait=10000"

        def post(http: HTTPConnection, body: bytes) -> dict:
            http.request("POST", path, body=body, headers=headers)
            response = http.getresponse()
            answer = json.loads(response.read())
            if response.status != 200 or answer.get("status") != "classified":
                raise RuntimeError(f"no verdict: {response.status} {answer}")
            return answer

        warm = HTTPConnection("127.0.0.1", port, timeout=30)
        for number in range(10):  # warm the web processes and connections
            post(warm, unique(messages[number], 10**8 + time.time_ns() % 10**6 + number))
        warm.close()
        latencies: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()
        numbers = iter(range(requests_n))

        def client() -> None:
            # The stdlib's client: the load generator shares the cores with the server.
            http = HTTPConnection("127.0.0.1", port, timeout=30)
            while True:
                with lock:
                    number = next(numbers, None)
                if number is None:
                    return
                body = unique(messages[20 + number], time.time_ns())
                started = time.perf_counter()
                try:
                    post(http, body)
                except Exception as exc:
                    with lock:
                        failures.append(str(exc)[:200])
                    return
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)

        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise SystemExit(f"{len(failures)} requests failed, the first: {failures[0]}")
        return latencies
    finally:
        stop(realtime)
        stop(web)


def make_run_timing(url: str, broker: str, log_dir: Path, timeout: float) -> dict:
    """Seconds from the start of what `make run` does after installing (`spamsift up`,
    `sample`, `train baseline --if-no-model`, `run`) until the whole sample corpus has its
    verdicts, and until it is all indexed for search."""
    import tempfile

    from sqlalchemy import create_engine, func, select

    from core import migrate
    from core.db import sqlalchemy_url
    from core.models import Email

    run_url = url.rsplit("/", 1)[0] + "/spamsift_bench_run"
    migrate.recreate_database(run_url)
    var_dir = Path(tempfile.mkdtemp(prefix="spamsift-make-run-"))
    from core.config import get_settings

    env = dict(os.environ, SPAMSIFT_DATABASE_URL=run_url, SPAMSIFT_BROKER_URL=broker,
               SPAMSIFT_VAR_DIR=str(var_dir),
               SPAMSIFT_SAMPLE_CORPUS_DIR=str(get_settings().sample_corpus_dir))
    env.pop("SPAMSIFT_ENCODER_BACKEND", None)
    import redis

    redis.Redis.from_url(broker).flushdb()
    spamsift = [sys.executable, "-m", "cli"]
    started = time.monotonic()
    for step in (["up"], ["sample"], ["train", "baseline", "--if-no-model"]):
        subprocess.run(spamsift + step, env=env, check=True, capture_output=True)
    from bench.webhook_bench import free_port

    run = subprocess.Popen(spamsift + ["run", "--port", str(free_port())], env=env,
                           stdout=open(log_dir / "make-run.log", "w"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    engine = create_engine(sqlalchemy_url(run_url))
    marks: dict[str, float] = {}
    try:
        while len(marks) < 2 and time.monotonic() - started < timeout:
            time.sleep(1)
            with engine.connect() as connection:
                total, judged, indexed = connection.execute(select(
                    func.count(), func.count(Email.verdict_id),
                    func.count(Email.indexed_with))).one()
            if total and judged == total:
                marks.setdefault("classified", time.monotonic() - started)
            if total and indexed == total:
                marks.setdefault("indexed", time.monotonic() - started)
    finally:
        stop(run)
        engine.dispose()
    return {"emails": total, **marks}


def late_messages(n: int) -> list[bytes]:
    from core.config import get_settings
    from core.importers import iter_messages

    out = []
    for message in iter_messages(corpus_paths(LATE), get_settings().max_message_bytes):
        if message.data:
            out.append(message.data)
    rng = np.random.default_rng(0)
    return [out[i] for i in rng.permutation(len(out))[:n]]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--latency-requests", type=int, default=600)
    parser.add_argument("--make-run-timeout", type=float, default=3600,
                        help="seconds to wait for the sample corpus to be classified and "
                             "indexed after `make run`'s steps (0: skip that part)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, Path(args.log_dir))))
        return

    from sqlalchemy.engine import make_url

    from core import services
    from core.config import get_settings

    settings = get_settings()
    url = make_url(services.database_url(settings)).set(database=DATABASE)
    url = url.render_as_string(hide_password=False)
    broker = services.broker_url(settings)
    log_dir = settings.var_dir / "bench" / "pipeline"
    log_dir.mkdir(parents=True, exist_ok=True)
    results, waits = [], {}
    for name in args.configs.split(","):
        config = CONFIGS[name]
        results.append(run_config(config, url, broker, log_dir))
        # Its model is the one in the scratch database now.
        waits[name] = {clients: latency(config, url, broker, log_dir, args.latency_requests,
                                        clients) for clients in CLIENTS}
    make_run = (make_run_timing(url, broker, log_dir, args.make_run_timeout)
                if args.make_run_timeout else None)
    write_section("pipeline", "Verdict pipeline: bulk import → classified, accuracy, indexing, "
                              "webhook → verdict (issue 10)",
                  report(results, waits, make_run, args),
                  "python -m bench.pipeline_bench")


def report(results: list[dict], waits: dict[str, dict[int, list[float]]],
           make_run: dict | None, args) -> str:
    n = results[0]["n"]
    lines = [
        f"Each configuration: the 2002 folders (3,250 emails) stored labeled and a model "
        f"trained on them by the training task; then `import` of the later folders ({n:,} "
        f"emails, easy_ham_2 and spam_2) with one bulk worker (`spamsift worker -Q bulk`, "
        f"prefork, {os.cpu_count()} processes, model loaded at start), timed from the start "
        "of the import until every one of those emails had its verdict (parse, verdict, "
        "commit; search indexing follows at a lower priority and is measured apart). "
        "Accuracy is that of the verdicts the pipeline wrote, against the folders' labels, at "
        "the model's spam threshold (chosen for a 0.1 % false-positive rate on the training "
        "part's out-of-fold scores; unsure counts as not spam). Raw encoder = "
        "`Encoder.embed` of the classification windows of 500 of those emails, in one "
        "process, same run.",
        "",
        "| configuration | backend | import → classified, emails/s | raw encoder, emails/s "
        "| F1 | precision | recall | FPR | ROC-AUC | decided by TF-IDF | training s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        backend = r["backend"] if r["kind"] != "tfidf-lr" else "-"
        raw = f"{r['raw_rate']:.0f}" if "raw_rate" in r else "-"
        share = f"{r['cheap_share']:.1%}" if r["cheap_share"] is not None else "-"
        lines.append(f"| {r['name']} | {backend} | {r['rate']:.0f} | {raw} | {r['f1']:.4f} "
                     f"| {r['precision']:.4f} | {r['recall']:.4f} | {r['fpr']:.4f} "
                     f"| {r['roc_auc']:.4f} | {share} | {r['train_seconds']:.0f} |")
    indexed = [r for r in results if "index_rate" in r]
    if indexed:
        lines += ["", "Search indexing (`pipeline.index`: every chunk of subject + body, "
                  "256 tokens, 32 overlap, at most 8 per email; embed and COPY), in one "
                  "process on the first emails of the test part:", "",
                  "| backend | emails/s | chunks/s |", "| --- | ---: | ---: |"]
        seen = set()
        for r in indexed:
            if r["backend"] not in seen:
                seen.add(r["backend"])
                lines.append(f"| {r['backend']} | {r['index_rate']:.1f} "
                             f"| {r['index_chunk_rate']:.1f} |")
    lines += ["", "Webhook → verdict with each configuration's model active: `POST "
              "/webhooks/raw?wait=10000` of distinct later-folder messages against `spamsift "
              "web` (gunicorn, 2 processes) and a realtime worker (`spamsift worker -Q "
              f"realtime`); {args.latency_requests} requests per row after 10 to warm up; "
              "the client's time from request to the answer carrying the verdict. The load "
              "generator (threads of the stdlib's http.client) runs on the same cores.", "",
              "| configuration | " + " | ".join(f"{c} client{'s' * (c > 1)} p50 / p99 ms"
                                                for c in CLIENTS) + " |",
              "| --- | " + " | ".join("---:" for _ in CLIENTS) + " |"]
    for name, by_clients in waits.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{percentile(by_clients[c], 50):.0f} / {percentile(by_clients[c], 99):.0f}"
            for c in CLIENTS) + " |")
    if make_run:
        def seconds(key: str) -> str:
            return (f"{make_run[key]:.0f} s" if key in make_run
                    else f"not within {args.make_run_timeout:.0f} s")

        lines += ["", f"`make run` on a new database (its steps after installing: `spamsift "
                  "up`, `sample`, `train baseline --if-no-model`, `run`, with the defaults): "
                  f"the {make_run['emails']:,} sample emails all classified after "
                  f"{seconds('classified')}, all indexed for search after "
                  f"{seconds('indexed')}, counted from the start of `spamsift up`."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
