"""Search work on the realtime queue: query embeddings and answers to questions."""

from __future__ import annotations

from celery import shared_task

from core.config import get_settings
from core.db import session_scope
from core.search import SearchFilter, best_chunks, search
from core.verdicts import verdicts_of
from ml.answer import ChatGenerator, ExtractiveGenerator, Passage
from workers.names import ANSWER_QUESTION, EMBED_QUERY
from workers.runtime import get_encoder


@shared_task(name=EMBED_QUERY, ignore_result=False)
def embed_query(text: str) -> dict:
    """The query's vector, as the stored chunk vectors were made (same encoder and pooling)."""
    encoder_name, vector = local_query_embedder(text)
    return {"encoder": encoder_name, "vector": vector.tolist()}


def answer_generator():
    settings = get_settings()
    # Sentences are ranked with mean pooling, what the packaged model was trained for,
    # whatever pooling the stored vectors use.
    extractive = ExtractiveGenerator(lambda texts: get_encoder().embed(texts, "mean"))
    if settings.llm_url:
        return ChatGenerator(settings.llm_url, settings.llm_model, settings.llm_api_key,
                             fallback=extractive)
    return extractive


def local_query_embedder(text: str):
    encoder = get_encoder()
    return encoder.name, encoder.embed([text])[0]


@shared_task(name=ANSWER_QUESTION, ignore_result=False)
def answer_question(question: str, filters: dict | None = None) -> dict:
    """Retrieve the best passages (hybrid search), then answer with citations. Spam is left
    out unless ``filters`` says ``exclude_spam: false``: mail from outside must not steer
    the answers."""
    settings = get_settings()
    encoder_name, vector = local_query_embedder(question)
    with session_scope() as session:
        hits = search(session, question, "hybrid", settings.ask_passages,
                      SearchFilter(**{"exclude_spam": True, **(filters or {})}),
                      lambda _: (encoder_name, vector))
        ids = [h.email_id for h in hits]
        texts = best_chunks(session, encoder_name, vector, ids)
        verdicts = verdicts_of(session, ids)
    passages = [Passage(number, hit.email_id, hit.subject or "",
                        texts.get(hit.email_id) or hit.snippet or "")
                for number, hit in enumerate(hits, 1)]
    answer = answer_generator().generate(question, passages)
    return {"question": question, "answer": answer.text, "found": answer.found,
            "citations": answer.citations, "generator": answer.generator,
            "notes": answer.notes,
            "passages": [{"number": p.number, "email_id": p.email_id, "subject": p.subject,
                          "text": p.text, "label": hit.label,
                          "verdict": verdicts.get(hit.email_id)}
                         for p, hit in zip(passages, hits)]}
