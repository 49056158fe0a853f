"""The rating web app (FastAPI): one prompt, two clips side by side, two questions, keyboard first."""

from __future__ import annotations

import secrets
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel

from pipelines.rate.config import RateSettings
from pipelines.rate.ledger import Ledger, Shown
from pipelines.rate.page import PAGE, TOKEN_NEEDED
from pipelines.rate.pairs import Pair, RatingError
from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.location import StorageLocation

TOKEN_COOKIE = "t2v_rate_token"


class Answer(BaseModel):
    rater: str
    pair_id: str
    left_run: str
    quality: str
    text: str
    shown_at: float | None = None


def create_app(ledger: Ledger, blobs: BlobStore, settings: RateSettings) -> FastAPI:
    app = FastAPI(title="t2v rate", docs_url=None, redoc_url=None, openapi_url=None)

    def authorised(request: Request) -> None:
        if settings.token is None:
            return
        given = request.cookies.get(TOKEN_COOKIE) or request.headers.get("x-t2v-token") or ""
        if not secrets.compare_digest(given.encode(), settings.token.encode()):
            raise HTTPException(401, "this rating page needs its token: open the link with ?token=...")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:  # says nothing but "up", so it needs no token
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, token: str | None = None) -> Response:
        if settings.token is not None and token is not None:
            if not secrets.compare_digest(token.encode(), settings.token.encode()):
                return HTMLResponse(TOKEN_NEEDED, status_code=401)
            redirect = RedirectResponse("/", status_code=303)  # keep the token out of the address bar
            redirect.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            return redirect
        try:
            authorised(request)
        except HTTPException:
            return HTMLResponse(TOKEN_NEEDED, status_code=401)
        return HTMLResponse(PAGE)

    @app.get("/api/next", dependencies=[Depends(authorised)])
    def next_pair(rater: str) -> dict[str, Any]:
        try:
            return _payload(ledger, rater, ledger.next(rater))
        except RatingError as exc:
            raise HTTPException(400, str(exc)) from None

    @app.post("/api/answer", dependencies=[Depends(authorised)])
    def answer(body: Answer) -> dict[str, Any]:
        try:
            ledger.answer(body.rater, body.pair_id, body.left_run, body.quality, body.text, body.shown_at)
        except RatingError as exc:
            raise HTTPException(409 if "already rated" in str(exc) else 400, str(exc)) from None
        return _payload(ledger, body.rater, ledger.next(body.rater))

    clips = {gid: pair.blob(gid) for pair in ledger.pairs.values() for gid in (pair.generation_a, pair.generation_b)}

    @app.get("/video/{generation}", dependencies=[Depends(authorised)])
    def video(generation: str) -> Response:
        if generation not in clips:  # only the clips being rated, never an arbitrary blob
            raise HTTPException(404, "no such clip")
        return Response(blobs.read(clips[generation]), media_type="video/mp4",
                        headers={"Cache-Control": "private, max-age=3600"})

    return app


def _payload(ledger: Ledger, rater: str, shown: Shown | None) -> dict[str, Any]:
    answered, total = ledger.progress(rater.strip())
    if shown is None:
        return {"answered": answered, "total": total, "pair": None}
    pair = shown.pair
    right_run = pair.run_b if shown.left_run == pair.run_a else pair.run_a
    return {
        "answered": answered, "total": total,
        "pair": {"pair_id": pair.pair_id, "prompt": pair.prompt, "long_video": pair.long_video,
                 "left_run": shown.left_run, "shown_at": shown.shown_at,
                 # the page shows no run names: raters judge the clips, not the labels
                 "left": f"/video/{pair.generation(shown.left_run)}", "right": f"/video/{pair.generation(right_run)}"},
    }


def serve(location: StorageLocation, pairs: list[Pair], settings: RateSettings, run_id: str) -> None:
    """Serve the page until Ctrl-C; every answer is already in the catalog when the page moves on."""
    import uvicorn

    ledger = Ledger(Catalog(location), pairs, settings.seed, run_id)
    uvicorn.run(create_app(ledger, BlobStore(location), settings), host=settings.host, port=settings.port,
                log_level="warning")
