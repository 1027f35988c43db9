"""Import throughput on the whole SpamAssassin corpus: COPY (what spamsift uses) against
ORM inserts, the whole ``spamsift import`` command, and the workers' parse step.

Runs on a scratch database ``spamsift_bench`` on the configured (or embedded) server.
    python -m bench.import_bench [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sqlalchemy import select, text
from sqlalchemy.engine import make_url

from bench.report import median_and_spread, write_section
from core import migrate, services
from core.config import get_settings
from core.corpus import corpus_archives
from core.db import get_engine, new_session
from core.importers import iter_messages, label_from_origin
from core.intake import Incoming, store_emails
from core.mail import parse_email, raw_header, sha256
from core.models import Email, EmailStatus

BATCH = 500


def load_corpus(archives: list[Path]) -> list[Incoming]:
    return [Incoming(m.data, "bench", label_from_origin(m.origin), "import")
            for m in iter_messages(archives, get_settings().max_message_bytes) if m.data]


def reset(engine) -> None:
    with engine.begin() as connection:
        connection.execute(text("TRUNCATE emails RESTART IDENTITY CASCADE"))


def timed_copy(engine, items: list[Incoming]) -> float:
    reset(engine)
    start = time.perf_counter()
    for offset in range(0, len(items), BATCH):
        with new_session(engine) as session:
            store_emails(session, items[offset:offset + BATCH])
            session.commit()
    return time.perf_counter() - start


def timed_orm(engine, items: list[Incoming]) -> float:
    """The same work through the ORM: look up known digests, then add_all and commit."""
    reset(engine)
    start = time.perf_counter()
    for offset in range(0, len(items), BATCH):
        batch = items[offset:offset + BATCH]
        with new_session(engine) as session:
            digests = [sha256(item.raw) for item in batch]
            known = set(session.scalars(select(Email.sha256).where(Email.sha256.in_(digests))))
            rows = []
            for item, digest in zip(batch, digests):
                if digest in known:
                    continue
                known.add(digest)
                rows.append(Email(raw=item.raw, sha256=digest, size=len(item.raw),
                                  message_id=raw_header(item.raw, "Message-ID"),
                                  source=item.source, label=item.label,
                                  label_source=item.label_source, status=EmailStatus.RECEIVED))
            session.add_all(rows)
            session.commit()
    return time.perf_counter() - start


def timed_command(archives: list[Path], url: str) -> tuple[float, float]:
    """``spamsift import`` end to end (archives read and streamed), then again (all dupes)."""
    import os
    import subprocess
    import sys

    # The parse tasks it enqueues (31 messages for the corpus) go to an in-memory broker, so a
    # bench never leaves work for the real workers pointing at the scratch database.
    env = dict(os.environ, SPAMSIFT_DATABASE_URL=url, SPAMSIFT_BROKER_URL="memory://")
    argv = [sys.executable, "-m", "cli", "import", *map(str, archives), "--label-from-path"]
    times = []
    for _ in range(2):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return times[0], times[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    settings = get_settings()
    archives = corpus_archives(settings.sample_corpus_dir)
    if not archives:
        raise SystemExit(f"no corpus in {settings.sample_corpus_dir}")
    base = make_url(services.database_url(settings))
    url = base.set(database="spamsift_bench").render_as_string(hide_password=False)
    migrate.recreate_database(url)
    migrate.upgrade(url)
    engine = get_engine(url)

    with engine.connect() as connection:
        version = connection.execute(text("SHOW server_version")).scalar_one().split()[0]
    start = time.perf_counter()
    items = load_corpus(archives)
    read_seconds = time.perf_counter() - start
    n = len(items)
    megabytes = sum(len(i.raw) for i in items) / 1e6

    copy_rates = [n / timed_copy(engine, items) for _ in range(args.repeats)]
    orm_rates = [n / timed_orm(engine, items) for _ in range(args.repeats)]
    reset(engine)
    engine.dispose()
    first, again = timed_command(archives, url)

    start = time.perf_counter()
    for item in items:
        parse_email(item.raw)
    parse_rate = n / (time.perf_counter() - start)

    ratio = statistics.median(copy_rates) / statistics.median(orm_rates)
    body = f"""
Corpus: {n:,} messages ({megabytes:.1f} MB) from {len(archives)} archives. Database:
PostgreSQL {version} ({'embedded, unix socket' if not settings.database_url else
'configured server'}), batches of {BATCH}, one commit per batch.
Median of {args.repeats} runs (min, max) where repeated.

| step | messages/s |
| --- | ---: |
| read and stream the archives (no database) | {n / read_seconds:,.0f} |
| store with COPY (binary) + `INSERT … ON CONFLICT` (spamsift) | {median_and_spread(copy_rates)} |
| store with ORM `add_all` + dedupe query | {median_and_spread(orm_rates)} |
| `spamsift import` whole corpus, new database (process start, counting, progress, enqueue) | {n / first:,.0f} |
| `spamsift import` again: every message a duplicate | {n / again:,.0f} |
| parse MIME to text (worker step, one process) | {parse_rate:,.0f} |

COPY stores {ratio:.1f}× as many messages per second as the ORM in the same run.
"""
    write_section("import", "Import throughput (issue 3)", body,
                  "python -m bench.import_bench --repeats 3")
    print(body)


if __name__ == "__main__":
    main()
