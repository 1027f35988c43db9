"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from core.auth import authenticate, end_login_session, start_login_session
from core.config import get_settings
from core.db import session_scope
from web.auth import blueprint, dashboard_user
from web.auth.throttle import ThrottleUnavailable, allow_attempt, record_failure

RETRY_AFTER_SECONDS = "60"


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so ?next= cannot send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.overview")


def _refused(form: LoginForm, message: str, status: int):
    flash(message, "error")
    return render_template("auth/login.html", form=form), status, {
        "Retry-After": RETRY_AFTER_SECONDS}


@blueprint.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    if request.method == "POST":
        username = request.form.get("username", "")
        try:
            if not allow_attempt(username):
                return _refused(form, "Too many login attempts; wait a minute.", 429)
        except ThrottleUnavailable:
            return _refused(form, "Login is unavailable (attempts cannot be counted); "
                                  "try again shortly.", 503)
    status = 200
    if form.validate_on_submit():
        with session_scope() as db:
            user = authenticate(db, form.username.data, form.password.data)
            if user is not None:
                session_user = dashboard_user(
                    user, start_login_session(db, user, get_settings().session_hours))
        if user is not None:
            session.permanent = True  # the cookie expires with the login session
            login_user(session_user)
            return redirect(_safe_next(request.args.get("next")))
        record_failure(form.username.data)
        flash("Unknown username or wrong password.", "error")
        status = 401
    return render_template("auth/login.html", form=form), status


@blueprint.post("/logout")
@login_required
def logout():
    with session_scope() as db:
        end_login_session(db, current_user.get_id())
    logout_user()
    return redirect(url_for("auth.login"))
