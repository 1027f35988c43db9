"""Query embeddings on the realtime queue: the web app never loads the encoder."""

from __future__ import annotations

from celery import shared_task

from workers.app import EMBED_QUERY, celery_app
from workers.runtime import get_encoder


@shared_task(name=EMBED_QUERY, ignore_result=False)
def embed_query(text: str) -> dict:
    """The query's vector, as the stored chunk vectors were made (same encoder and pooling)."""
    encoder = get_encoder()
    return {"encoder": encoder.name, "vector": encoder.embed([text])[0].tolist()}


def remote_query_embedder(timeout: float = 10.0):
    """``embed_query`` for core.search.search, run by a realtime worker."""
    import numpy as np

    from celery.exceptions import TimeoutError as CeleryTimeout

    def embed(text: str):
        try:
            result = celery_app.send_task(EMBED_QUERY, args=[text],
                                          queue="realtime").get(timeout=timeout)
        except CeleryTimeout as exc:
            raise TimeoutError(f"no realtime worker embedded the query in {timeout} s") from exc
        return result["encoder"], np.asarray(result["vector"], dtype=np.float32)

    return embed
