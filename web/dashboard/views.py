"""Dashboard pages: overview, mail, models, jobs, import."""

from __future__ import annotations

import uuid
from datetime import datetime, time, timezone

from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required
from markupsafe import Markup, escape
from sqlalchemy import func, select
from werkzeug.utils import secure_filename

from core.config import get_settings
from core.db import session_scope
from core.feedback import set_label
from core.holdout import holdout_size
from core.jobs import create_job, uploads_dir
from core.mail import html_body
from core.mailbox import MailFilter, daily_volume, list_emails, unindexed_count
from core.models import Email, EmailStatus, Job, JobState, Label, TrainedModel, Verdict
from core.registry import UnknownModel, active_model
from core.review import review_queue
from core.thresholds_fit import refit, threshold_health
from core.search import MODES, SearchFilter, highlight_parts, search
from web.api.search import similar_emails
from web.auth import admin_required
from web.dashboard import blueprint
from web.dashboard.charts import curve_svg, volume_svg
from web.dashboard.sanitize import sanitize_email_html
from core.verdicts import verdict_alias, verdict_of
from workers import client
from workers.names import IMPORT_UPLOAD, LORA, MODEL_KINDS, QUEUES
from workers.remote import ask_remote, remote_query_embedder

PER_PAGE = 50
PER_SEARCH = 20
REVIEW_SIZE = 20
# What the Models page's LoRA form may set, with each value's type (the rest: defaults).
LORA_FORM_OPTIONS = {"epochs": int, "max_length": int, "lr": float}
UPLOAD_SUFFIXES = (".eml", ".mbox", ".mbx", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2",
                   ".tar.xz")


@blueprint.get("/")
@login_required
def overview():
    with session_scope() as session:
        days = daily_volume(session, 30)
        verdict, on_verdict = verdict_alias()
        verdicts = {value.value: count for value, count in session.execute(
            select(verdict.verdict, func.count()).select_from(Email).join(verdict, on_verdict)
            .group_by(verdict.verdict))}
        statuses = {status.value: count for status, count in session.execute(
            select(Email.status, func.count()).group_by(Email.status))}
        model = active_model(session)
        unindexed = unindexed_count(session, client.index_space())
    return render_template("dashboard/overview.html", chart=volume_svg(days), days=days,
                           verdicts=verdicts, statuses=statuses, unindexed=unindexed,
                           model=model,
                           queues=_queue_depths(), workers=_workers())


def _queue_depths() -> dict[str, int | None]:
    try:
        return {queue: client.waiting_messages(queue) for queue in QUEUES}
    except Exception:
        return {queue: None for queue in QUEUES}


def _workers() -> dict[str, list[str]]:
    from web.health import report

    try:
        return report()[0]["workers"]  # cached: a page view need not broadcast each time
    except Exception:
        return {queue: [] for queue in QUEUES}


def _date_arg(name: str, end_of_day: bool = False) -> datetime | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        flash(f"{name}: use YYYY-MM-DD", "error")
        return None
    return datetime.combine(day, time.max if end_of_day else time.min, tzinfo=timezone.utc)


@blueprint.get("/mail")
@login_required
def mail():
    args = request.args
    label, verdict = args.get("label", ""), args.get("verdict", "")
    filters = MailFilter(
        label=Label(label) if label in ("spam", "ham") else None, unlabeled=label == "none",
        verdict=Verdict(verdict) if verdict in ("spam", "unsure", "ham") else None,
        sender=args.get("sender", "").strip() or None, since=_date_arg("since"),
        until=_date_arg("until", end_of_day=True), text=args.get("q", "").strip() or None)
    page = max(args.get("page", 1, type=int) or 1, 1)
    with session_scope() as session:
        rows, total = list_emails(session, filters, page, PER_PAGE)
    pages = max((total + PER_PAGE - 1) // PER_PAGE, 1)
    return render_template("dashboard/mail.html", rows=rows, total=total, page=page,
                           pages=pages, args=args)


@blueprint.get("/mail/<int:email_id>")
@login_required
def email_detail(email_id: int):
    with session_scope() as session:
        email = session.get(Email, email_id)
        if email is None:
            abort(404)
        prediction = verdict_of(session, email_id)
        model = session.get(TrainedModel, prediction.model_id) if prediction else None
        similar = similar_emails(session, email)
    html = html_body(email.raw) if email.raw_purged_at is None else None
    return render_template("dashboard/email.html", email=email, prediction=prediction,
                           model=model, similar=similar,
                           indexed=email.indexed_with == client.index_space(),
                           safe_html=sanitize_email_html(html) if html else None)


@blueprint.get("/search")
@login_required
def search_page():
    args = request.args
    query = args.get("q", "").strip()
    mode = args.get("mode", "hybrid")
    page = max(args.get("page", 1, type=int) or 1, 1)
    max_results = get_settings().search_max_results
    room = max(min(PER_SEARCH, max_results - (page - 1) * PER_SEARCH), 0)  # on this page
    hits, problem = [], None
    if query and room:
        filters = SearchFilter(label=args.get("label") or None,
                               verdict=args.get("verdict") or None,
                               sender=args.get("sender", "").strip() or None)
        try:
            with session_scope() as session:
                hits = search(session, query, mode if mode in MODES else "hybrid", PER_SEARCH,
                              filters, remote_query_embedder(), offset=(page - 1) * PER_SEARCH)
        except TimeoutError as exc:
            problem = str(exc)
    return render_template("dashboard/search.html", hits=hits, args=args, page=page,
                           problem=problem, modes=MODES, per_page=PER_SEARCH,
                           max_results=max_results, cut_at_max=bool(query) and not problem
                           and page * PER_SEARCH >= max_results and len(hits) == room)


@blueprint.route("/ask", methods=["GET", "POST"])
@login_required
def ask_page():
    """A question form; POST (with CSRF) asks a realtime worker and shows the answer."""
    result, problem = None, None
    question = request.form.get("question", "").strip() if request.method == "POST" else ""
    include_spam = request.form.get("include_spam") == "on"
    if question:
        try:
            result = ask_remote(question[:1000], {"exclude_spam": not include_spam})
        except TimeoutError as exc:
            problem = str(exc)
    return render_template("dashboard/ask.html", question=question, result=result,
                           problem=problem, include_spam=include_spam)


@blueprint.post("/mail/<int:email_id>/label")
@admin_required
def label_email(email_id: int):
    label = request.form.get("label")
    if label not in ("spam", "ham"):
        abort(400, description="label must be spam or ham")
    with session_scope() as session:
        email = session.get(Email, email_id)
        if email is None:
            abort(404)
        set_label(session, email, Label(label), current_user.id, "dashboard")
    flash(f"Marked as {label}.", "ok")
    if request.form.get("next") == "review":
        return redirect(url_for("dashboard.review"))
    return redirect(url_for("dashboard.email_detail", email_id=email_id))


@blueprint.get("/review")
@login_required
def review():
    """Label these to improve the model most (``core.review``)."""
    k = min(max(request.args.get("k", REVIEW_SIZE, type=int) or REVIEW_SIZE, 1), 100)
    with session_scope() as session:
        items = review_queue(session, client.index_space(), k)
        model = active_model(session)
        labels = session.scalar(select(func.count()).select_from(Email)
                                .where(Email.label.is_not(None)))
    return render_template("dashboard/review.html", items=items, model=model, labels=labels)


@blueprint.get("/models")
@login_required
def models():
    with session_scope() as session:
        rows = session.scalars(select(TrainedModel).order_by(TrainedModel.id.desc())).all()
        running = session.scalars(select(Job).where(
            Job.kind == "train", Job.state.in_([JobState.QUEUED, JobState.RUNNING]))).all()
        charts = {m.id: (curve_svg(m.curves.get("roc", []), f"ROC, model {m.id}",
                                   "false positive rate", "true positive rate",
                                   diagonal=True),
                         curve_svg(m.curves.get("pr", []), f"Precision-recall, model {m.id}",
                                   "recall", "precision")) for m in rows}
        active = next((m for m in rows if m.is_active), None)
        health = threshold_health(session, active, get_settings()) if active else None
    return render_template("dashboard/models.html", models=rows, charts=charts, running=running,
                           health=health)


@blueprint.post("/models/refit")
@admin_required
def refit_thresholds():
    with session_scope() as session:
        model = active_model(session)
        if model is None:
            abort(409, description="no active model")
        try:
            flash(refit(session, model, get_settings()), "ok")
        except ValueError as exc:
            flash(str(exc), "error")
    return redirect(url_for("dashboard.models"))


@blueprint.post("/models/train")
@admin_required
def train():
    kind = request.form.get("kind")
    if kind not in MODEL_KINDS:
        abort(400, description="unknown model kind")
    pooling = request.form.get("pooling") or None
    try:
        options = {name: kind_of(request.form[name]) for name, kind_of in LORA_FORM_OPTIONS.items()
                   if kind == LORA and request.form.get(name)}
        with session_scope() as session:
            job_id = client.queue_training(session, kind, pooling, options=options).id
    except ValueError as exc:
        flash(f"Not trained: {exc}", "error")
        return redirect(url_for("dashboard.models"))
    return redirect(url_for("dashboard.job_detail", job_id=job_id))


@blueprint.post("/models/<int:model_id>/activate")
@admin_required
def activate_model(model_id: int):
    try:
        with session_scope() as session:
            client.activate_model(session, model_id)
        flash(f"Model {model_id} is active.", "ok")
    except UnknownModel as exc:
        flash(str(exc), "error")
    return redirect(url_for("dashboard.models"))


@blueprint.post("/models/rollback")
@admin_required
def rollback_model():
    try:
        with session_scope() as session:
            model = client.roll_back_model(session)
            flash(f"Rolled back: model {model.id} is active.", "ok")
    except UnknownModel as exc:
        flash(str(exc), "error")
    return redirect(url_for("dashboard.models"))


@blueprint.get("/jobs")
@login_required
def jobs():
    with session_scope() as session:
        rows = session.scalars(select(Job).order_by(Job.id.desc()).limit(100)).all()
    return render_template("dashboard/jobs.html", jobs=rows)


@blueprint.get("/jobs/<int:job_id>")
@login_required
def job_detail(job_id: int):
    with session_scope() as session:
        job = session.get(Job, job_id)
    if job is None:
        abort(404)
    return render_template("dashboard/job.html", job=job)


@blueprint.post("/jobs/<int:job_id>/cancel")
@admin_required
def cancel_job(job_id: int):
    try:
        with session_scope() as session:
            client.cancel_job(session, job_id)
        flash(f"Job {job_id} cancelled.", "ok")
    except LookupError:
        abort(404)
    except ValueError as exc:
        flash(str(exc), "error")
    return redirect(url_for("dashboard.job_detail", job_id=job_id))


@blueprint.get("/schedule")
@login_required
def schedule():
    from workers.schedule import SCHEDULE, last_runs

    settings = get_settings()
    with session_scope() as session:
        runs = last_runs(session)
        holdout = holdout_size(session)
    jobs = [(job, job.every(settings), runs.get(job.name)) for job in SCHEDULE]
    return render_template("dashboard/schedule.html", jobs=jobs, holdout=holdout)


@blueprint.post("/schedule/<name>/run")
@admin_required
def run_scheduled_job(name: str):
    from workers.schedule import JOBS

    if name not in JOBS:
        abort(404)
    try:
        client.send(JOBS[name].task)
        flash(f"{name} sent to the workers.", "ok")
    except client.BrokerUnavailable as exc:
        flash(f"{name} not sent: {exc}", "error")
    return redirect(url_for("dashboard.schedule"))


@blueprint.route("/import", methods=["GET", "POST"])
@admin_required
def import_mail():
    if request.method == "GET":
        return render_template("dashboard/import.html")
    upload = request.files.get("file")
    name = secure_filename(upload.filename or "") if upload else ""
    if not name or not name.lower().endswith(UPLOAD_SUFFIXES):
        flash("Choose an .eml, .mbox, .zip or .tar(.gz/.bz2/.xz) file.", "error")
        return render_template("dashboard/import.html"), 422
    label = request.form.get("label") or None
    if label not in (None, "spam", "ham", "path"):
        abort(400, description="unknown label option")
    folder = uploads_dir() / uuid.uuid4().hex
    folder.mkdir(parents=True)
    path = folder / name
    upload.save(path)
    with session_scope() as session:
        # The reconciler re-sends the job from these params if its message is lost.
        job = create_job(session, "import", state=JobState.QUEUED,
                         params={"paths": [name], "source": "upload", "label": label,
                                 "upload": f"{folder.name}/{name}"})
        client.send_after_commit(session, IMPORT_UPLOAD, [job.id, str(path)], {"label": label})
        job_id = job.id
    current_app.logger.info("upload %s queued as job %s", name, job_id)
    return redirect(url_for("dashboard.job_detail", job_id=job_id))


@blueprint.app_template_filter("highlights")
def highlights(value: str | None, length: int | None = None) -> Markup:
    """Search text with its [[word]] markers shown as <mark>word</mark>, everything escaped;
    cut to ``length`` visible characters."""
    html, shown = Markup(), 0
    for part, matched in highlight_parts(value or ""):
        if length is not None:
            part = part[:max(length - shown, 0)]
        if not part:
            break
        shown += len(part)
        html += Markup("<mark>{}</mark>").format(part) if matched else escape(part)
    return html


@blueprint.app_template_filter("when")
def when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else ""


@blueprint.app_context_processor
def template_globals():
    return {"EmailStatus": EmailStatus}
