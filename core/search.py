"""Search over mail: keyword (PostgreSQL full text), vector (pgvector HNSW over chunks),
and hybrid (both fused by reciprocal rank fusion). Results are emails, best first.

Filtered vector queries use pgvector's iterative index scans, so a filter that rules out
most chunks still yields k emails rather than whatever the first ef_search candidates held.

No search goes deeper than SPAMSIFT_SEARCH_MAX_RESULTS emails (offset + k): deeper pages
are empty, and no query asks PostgreSQL for more (chunk queries: for that many emails' worth
of chunks, SPAMSIFT_MAX_CHUNKS each).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
from sqlalchemy import text
from sqlalchemy.orm import Session

from core.config import get_settings
from core.vectors import EF_SEARCH, register_vector_types
from core.verdicts import VERDICT_OF_E

MODES = ("hybrid", "vector", "keyword")
RRF_K = 60  # the usual constant of reciprocal rank fusion
# Keyword snippets mark the words that matched as [[word]] (ts_headline's StartSel/StopSel).
_HIGHLIGHT = re.compile(r"\[\[([^\[\]]+)\]\]")


@dataclass
class SearchFilter:
    label: str | None = None  # spam / ham / none (unlabeled) / any (labeled, either way)
    verdict: str | None = None  # spam / unsure / ham (latest prediction)
    since: datetime | None = None
    until: datetime | None = None
    sender: str | None = None  # address or domain substring
    # Leave out spam: emails labeled spam, and unlabeled ones whose latest verdict is spam
    # (a person's ham label outranks the model).
    exclude_spam: bool = False


@dataclass
class Hit:
    email_id: int
    score: float
    subject: str | None = None
    sender: str | None = None
    label: str | None = None
    received_at: datetime | None = None
    snippet: str | None = None
    chunk_text: str | None = None
    ranks: dict = field(default_factory=dict)  # rank in each list that found it


def _filter_sql(filters: SearchFilter, params: dict) -> str:
    """SQL conditions on ``e`` (emails) for the filters; values go into ``params``."""
    conditions = []
    if filters.label in ("spam", "ham"):
        conditions.append("e.label = CAST(:f_label AS label)")
        params["f_label"] = filters.label
    elif filters.label == "none":
        conditions.append("e.label IS NULL")
    elif filters.label == "any":
        conditions.append("e.label IS NOT NULL")
    if filters.verdict:
        conditions.append(f"{VERDICT_OF_E} = :f_verdict")
        params["f_verdict"] = filters.verdict
    if filters.exclude_spam:
        conditions.append("(e.label = 'ham' OR (e.label IS NULL"
                          f" AND {VERDICT_OF_E} IS DISTINCT FROM 'spam'))")
    if filters.since:
        conditions.append("e.received_at >= :f_since")
        params["f_since"] = filters.since
    if filters.until:
        conditions.append("e.received_at < :f_until")
        params["f_until"] = filters.until
    if filters.sender:
        conditions.append("e.sender ILIKE :f_sender")
        escaped = filters.sender.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params["f_sender"] = f"%{escaped}%"
    return " AND ".join(conditions) if conditions else "TRUE"


def keyword_search(session: Session, query: str, k: int, filters: SearchFilter | None = None,
                   offset: int = 0, any_word_fill: bool = True) -> list[Hit]:
    """Emails with all the words first (web-search syntax: quotes, OR, -word), then, to fill
    up to k when ``any_word_fill``, emails with any of them; each group by ts_rank_cd.

    Hybrid search does without the fill: its any-word matches are mostly noise that pushes
    good vector hits down (measured on the relevance set, see BENCHMARKS.md)."""
    params: dict = {"q": query, "n": min(offset + k, max_results())}
    where = _filter_sql(filters or SearchFilter(), params)
    hits: list[Hit] = []
    for tsquery in ("websearch_to_tsquery('english', :q)",
                    "to_tsquery('english', replace(plainto_tsquery('english', :q)::text,"
                    " ' & ', ' | '))"):
        params["seen"] = [hit.email_id for hit in hits]
        rows = session.execute(text(
            "SELECT e.id, e.subject, e.sender, e.label::text AS label, e.received_at,"
            "  ts_rank_cd(e.search_vector, query) AS rank,"
            "  ts_headline('english', left(coalesce(e.text, ''), 20000), query,"
            "    'MaxFragments=2, MaxWords=18, MinWords=6, StartSel=[[, StopSel=]]') AS snippet"
            f" FROM emails e, {tsquery} query"
            f" WHERE e.search_vector @@ query AND e.id <> ALL(:seen) AND {where}"
            " ORDER BY rank DESC, e.id LIMIT :n"
        ), params).all()
        hits += [Hit(row.id, float(row.rank), row.subject, row.sender, row.label,
                     row.received_at, snippet=row.snippet) for row in rows]
        if len(hits) >= params["n"] or not any_word_fill or query_has_operators(query):
            break  # with explicit operators the user's own query is the whole query
    return hits[offset:offset + k]


def max_results() -> int:
    return get_settings().search_max_results


def query_has_operators(query: str) -> bool:
    return '"' in query or " or " in f" {query.lower()} " or any(
        word.startswith("-") for word in query.split())


def vector_search(session: Session, encoder: str, vector: np.ndarray, k: int,
                  filters: SearchFilter | None = None, exclude_email_id: int | None = None,
                  ef_search: int = EF_SEARCH) -> list[Hit]:
    """The k emails whose best chunk is nearest to ``vector`` (cosine similarity).

    Chunk rows are fetched in growing batches until k distinct emails are found, up to
    k × SPAMSIFT_MAX_CHUNKS rows (each email has at most that many chunks)."""
    settings = get_settings()
    k = min(k, settings.search_max_results)
    dim = int(len(vector))
    params: dict = {"q": np.asarray(vector, dtype=np.float32), "dim": dim, "encoder": encoder,
                    "exclude": exclude_email_id}
    where = _filter_sql(filters or SearchFilter(), params)
    register_vector_types(session)
    session.execute(text(f"SET LOCAL hnsw.ef_search = {int(ef_search)}"))
    session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    hits: dict[int, Hit] = {}
    most_rows = k * settings.max_chunks
    limit = min(k * 4, most_rows)
    while True:
        params["n"] = limit
        rows = session.execute(text(
            "SELECT c.email_id, c.text AS chunk_text, e.subject, e.sender,"
            "  e.label::text AS label, e.received_at,"
            f"  1 - (c.embedding::vector({dim}) <=> CAST(:q AS vector({dim}))) AS similarity"
            " FROM chunks c JOIN emails e ON e.id = c.email_id"
            " WHERE c.dim = :dim AND c.encoder = :encoder"
            f"  AND e.id IS DISTINCT FROM :exclude AND {where}"
            f" ORDER BY c.embedding::vector({dim}) <=> CAST(:q AS vector({dim})) LIMIT :n"
        ), params).all()
        hits = {}
        for row in rows:  # best chunk first, so the first row per email is its best
            if row.email_id not in hits:
                hits[row.email_id] = Hit(row.email_id, float(row.similarity), row.subject,
                                         row.sender, row.label, row.received_at,
                                         chunk_text=row.chunk_text)
        if len(hits) >= k or len(rows) < limit or limit >= most_rows:
            break
        limit = min(limit * 4, most_rows)  # many chunks of the same emails: look further
    # relaxed_order may return near-ties slightly out of order
    return sorted(hits.values(), key=lambda h: -h.score)[:k]


def fuse(*ranked_lists: tuple[str, list[Hit]], k: int) -> list[Hit]:
    """Reciprocal rank fusion: score = Σ 1 / (RRF_K + rank) over the lists."""
    fused: dict[int, Hit] = {}
    for name, hits in ranked_lists:
        for rank, hit in enumerate(hits, 1):
            merged = fused.setdefault(hit.email_id, Hit(hit.email_id, 0.0, hit.subject,
                                                        hit.sender, hit.label,
                                                        hit.received_at))
            merged.score += 1.0 / (RRF_K + rank)
            merged.ranks[name] = rank
            merged.snippet = merged.snippet or hit.snippet
            merged.chunk_text = merged.chunk_text or hit.chunk_text
    return sorted(fused.values(), key=lambda h: (-h.score, h.email_id))[:k]


def search(session: Session, query: str, mode: str, k: int, filters: SearchFilter | None,
           embed_query, offset: int = 0) -> list[Hit]:
    """Search in ``mode``; ``embed_query(text) -> (encoder name, vector)`` is called only
    when vectors are needed. Hybrid fuses the top of both lists, deep enough for paging.
    Nothing lies beyond ``max_results()``: a page past it is empty."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    deepest = max_results()
    wanted = min(offset + k, deepest)
    if wanted <= offset:
        return []
    if mode == "keyword":
        return keyword_search(session, query, wanted - offset, filters, offset)
    encoder, vector = embed_query(query)
    if mode == "vector":
        return vector_search(session, encoder, vector, wanted, filters)[offset:]
    depth = min(max(wanted * 2, 50), deepest)
    return fuse(("vector", vector_search(session, encoder, vector, depth, filters)),
                ("keyword", keyword_search(session, query, depth, filters, any_word_fill=False)),
                k=wanted)[offset:]


def best_chunks(session: Session, encoder: str, vector: np.ndarray, email_ids: list[int]
                ) -> dict[int, str]:
    """For each email, the text of its chunk nearest to ``vector`` (the passage to quote)."""
    if not email_ids:
        return {}
    dim = int(len(vector))
    register_vector_types(session)
    rows = session.execute(text(
        "SELECT DISTINCT ON (email_id) email_id, text FROM chunks"
        " WHERE encoder = :encoder AND email_id = ANY(:ids) AND dim = :dim"
        f" ORDER BY email_id, embedding::vector({dim}) <=> CAST(:q AS vector({dim}))"
    ), {"encoder": encoder, "ids": list(email_ids), "dim": dim,
        "q": np.asarray(vector, dtype=np.float32)}).all()
    return {row.email_id: row.text for row in rows}


def highlight_parts(snippet: str) -> list[tuple[str, bool]]:
    """``snippet`` as (text, matched) pieces, the [[word]] markers taken out."""
    parts, start = [], 0
    for match in _HIGHLIGHT.finditer(snippet):
        if match.start() > start:
            parts.append((snippet[start:match.start()], False))
        parts.append((match.group(1), True))
        start = match.end()
    if start < len(snippet):
        parts.append((snippet[start:], False))
    return parts
