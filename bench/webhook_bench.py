"""Webhook acceptance throughput under gunicorn, and webhook-to-verdict latency with ?wait.

Everything runs on this machine: a scratch database ``spamsift_bench_web``, the configured
broker (or embedded one), gunicorn serving the app, and a load generator on loopback.
    python -m bench.webhook_bench [--seconds 15] [--clients 16] [--wait-requests 100]
                                  [--big-mb 25] [--big-repeats 3]
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import requests
from sqlalchemy.engine import make_url

from bench.report import write_section
from core import migrate, services
from core.config import get_settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corpus_sample(n: int) -> list[bytes]:
    from core.corpus import corpus_archives
    from core.importers import iter_messages

    settings = get_settings()
    out = []
    for message in iter_messages(corpus_archives(settings.sample_corpus_dir),
                                 settings.max_message_bytes):
        if message.data:
            out.append(message.data)
            if len(out) >= n:
                break
    return out


def unique(raw: bytes, number: int) -> bytes:
    """A distinct message per request (bytes and Message-ID), so every post is stored; the
    first Message-ID header is the one deduplication reads."""
    if raw.startswith(b"From "):  # the corpus keeps mbox envelope lines: not a header
        raw = raw.split(b"\n", 1)[1]
    return f"Message-ID: <bench-{number}@bench.invalid>\r\n".encode() + raw


def wait_healthy(base: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(base + "/healthz", timeout=5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise SystemExit("the web app did not come up")


def load(base: str, token: str, messages: list[bytes], seconds: float, clients: int):
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(10**9))
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
        while time.monotonic() < stop:
            with lock:
                number = next(counter)
            body = unique(messages[number % len(messages)], number)
            start = time.perf_counter()
            response = session.post(base + "/webhooks/raw", data=body, headers=headers,
                                    timeout=30)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = sum(count for status, count in statuses.items() if status < 300)
    return accepted / (time.perf_counter() - started), latencies, statuses


def big_deliveries(base: str, token: str, size: int, repeats: int) -> dict[str, list[float]]:
    """Seconds to accept a ``size``-byte message in each provider format (a new message each
    time, so each is stored)."""
    from tests.providers import FORMATS, delivery, message_with_attachment

    seconds: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    for number in range(repeats):
        for fmt in FORMATS:
            raw = message_with_attachment(size, f"report {fmt} {number}")
            path, body, headers = delivery(fmt, raw, token)
            start = time.perf_counter()
            response = requests.post(base + path, data=body, headers=headers, timeout=120)
            elapsed = time.perf_counter() - start
            if response.status_code >= 300:
                raise SystemExit(f"{fmt}: {response.status_code} {response.text[:200]}")
            seconds[fmt].append(elapsed)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--gunicorn-workers", type=int, default=4)
    parser.add_argument("--wait-requests", type=int, default=100)
    parser.add_argument("--big-mb", type=int, default=25)
    parser.add_argument("--big-repeats", type=int, default=3)
    args = parser.parse_args()

    settings = get_settings()
    url = make_url(services.database_url(settings)).set(database="spamsift_bench_web")
    url = url.render_as_string(hide_password=False)
    migrate.recreate_database(url)
    migrate.upgrade(url)
    # The per-address webhook rate limit would cap a one-address load generator; lift it to
    # measure what the server can take.
    from tests.providers import WEBHOOK_SETTINGS

    env = dict(os.environ, **WEBHOOK_SETTINGS, SPAMSIFT_DATABASE_URL=url,
               SPAMSIFT_LOG_LEVEL="WARNING",
               SPAMSIFT_WEBHOOK_RATE_LIMIT="10000000 per minute",
               SPAMSIFT_SECRET_KEY=secrets.token_urlsafe(48))
    spamsift = [sys.executable, "-m", "cli"]

    def run(*argv: str) -> str:
        return subprocess.run(spamsift + list(argv), env=env, check=True, capture_output=True,
                              text=True).stdout

    run("users", "create", "bench", "--admin", "--password", "bench-password")
    token = run("tokens", "create", "--user", "bench", "--name", "bench", "--scope",
                "ingest").strip()
    messages = corpus_sample(500)

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    web = subprocess.Popen(spamsift + ["web", "--port", str(port), "-w",
                                       str(args.gunicorn_workers)],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    processes = [web]
    try:
        wait_healthy(base)
        load(base, token, messages, 2, args.clients)  # warm up
        rate, latencies, statuses = load(base, token, messages, args.seconds, args.clients)
        big = big_deliveries(base, token, args.big_mb * 1_000_000, args.big_repeats)

        # The load left one classify task per request queued; they are not this part's
        # business, and would sit ahead of every ?wait request.
        services.redis_client().delete("realtime")
        # Verdicts: a model, and workers for the realtime and training queues.
        labeled = os.path.join(os.fspath(settings.sample_corpus_dir))
        run("import", *[os.path.join(labeled, name) for name in sorted(os.listdir(labeled))
                        if name.endswith((".tar.gz", ".tar.bz2"))], "--label-from-path")
        for queue in ("training", "realtime"):
            processes.append(subprocess.Popen(
                spamsift + ["worker", "-Q", queue, "-c", "1", "--loglevel", "WARNING"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        run("train", "baseline", "--wait")
        waits, verdicts = [], 0
        session = requests.Session()
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "message/rfc822"}
        # One unmeasured request: a worker loads the encoder on its first email (~2 s).
        session.post(base + "/webhooks/raw?wait=10000", data=unique(messages[0], 10**9),
                     headers=headers, timeout=30)
        for number in range(args.wait_requests):
            body = unique(messages[(number * 7) % len(messages)], 10**8 + number)
            start = time.perf_counter()
            response = session.post(base + "/webhooks/raw?wait=10000", data=body,
                                    headers=headers, timeout=30)
            waits.append(time.perf_counter() - start)
            verdicts += response.status_code == 200 and "X-Spam-Status" in response.headers
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        services.redis_client().delete("bulk", "realtime", "training")

    ms = np.array(latencies) * 1000
    big_rows = "\n".join(f"| {fmt} | {statistics.median(times):.2f} s | {max(times):.2f} s |"
                         for fmt, times in big.items())
    wait_ms = np.array(waits) * 1000
    body = f"""
Raw MIME webhook (`POST /webhooks/raw`, bearer token, SpamAssassin corpus messages made
distinct per request so each one is stored) against `spamsift web` (gunicorn,
{args.gunicorn_workers} worker processes of {settings.web_threads} threads) on loopback; {args.clients} client threads of a
Python load generator on the same 2 cores, {args.seconds:.0f} s after a 2 s warm-up. Each
accepted request passed the rate limiter (lifted for this run), authenticated the token,
stored the raw message (committed) and enqueued its classification on Redis; no worker ran
during this part. Statuses: {dict(sorted(statuses.items()))}.

| webhook acceptance | value |
| --- | ---: |
| requests/s | {rate:,.0f} |
| latency p50 | {np.percentile(ms, 50):.1f} ms |
| latency p99 | {np.percentile(ms, 99):.1f} ms |

A {args.big_mb} MB message (a PDF attachment) posted the way each provider posts it, one at a
time, {args.big_repeats} different messages per format: seconds from the request to the
answer, which comes once the message is stored (form fields read as bytes, parsed fields
rebuilt into RFC 822, committed).

| format | median | slowest |
| --- | ---: | ---: |
{big_rows}

Webhook to verdict with `?wait=10000`: {args.wait_requests} messages posted one at a time,
one `realtime` worker process (`-c 1`) doing parse, chunk, embed with the encoder, score
with the active TF-IDF NB model trained on the corpus, and the 5 nearest labeled emails; the
verdict comes back in the response (X-Spam-Status / X-Spam-Score). {verdicts} of
{args.wait_requests} answered with a verdict in time. One unmeasured request first: a worker
loads the encoder on its first email (about 2 s).

| webhook → verdict | value |
| --- | ---: |
| p50 | {np.percentile(wait_ms, 50):.0f} ms |
| p99 | {np.percentile(wait_ms, 99):.0f} ms |
| mean | {statistics.mean(wait_ms):.0f} ms |
"""
    write_section("webhooks", "Webhook throughput and latency (issues 5 and 9)", body,
                  "python -m bench.webhook_bench --seconds 15 --clients 16")
    print(body)


if __name__ == "__main__":
    main()
