"""The server-rendered pages (review, models, feature sets, jobs); their data comes from the
API with the key the person enters, so the pages themselves need none."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

PAGES = {
    "annotate": (
        "Review predictions",
        "The model was unsure about these. Confirm its answer or pick the right one; then retrain.",
    ),
    "models": (
        "Models",
        "Every trained version with its held-out scores, what reviewers found, and drift. "
        "Promote or roll back.",
    ),
    "features": (
        "Feature set",
        "Every published version with its key and columns, and the version each model reads. "
        "Promote or roll back, apart from the models.",
    ),
    "jobs": ("Jobs", "Training and prediction jobs, newest first. Updates every two seconds."),
}
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


HERE = Path(__file__).resolve().parent.parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)


def mount_static(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")


def render(request: Request, page: str, model: str | None) -> HTMLResponse:
    title, lead = PAGES[page]
    return templates.TemplateResponse(
        request,
        f"{page}.html",
        {"page": page, "model": model, "title": title, "lead": lead},
        headers=PAGE_HEADERS,
    )


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs")


@router.get("/ui/annotate/{model}")
def annotate_page(request: Request, model: str) -> HTMLResponse:
    return render(request, "annotate", model)


@router.get("/ui/models/{model}")
def models_page(request: Request, model: str) -> HTMLResponse:
    return render(request, "models", model)


@router.get("/ui/features/{name}")
def features_page(request: Request, name: str) -> HTMLResponse:
    return render(request, "features", name)


@router.get("/ui/jobs")
def jobs_page(request: Request) -> HTMLResponse:
    return render(request, "jobs", None)
