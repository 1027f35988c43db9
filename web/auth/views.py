"""Login and logout pages."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import DataRequired, Length

from core.auth import authenticate
from core.config import get_settings
from core.db import session_scope
from web.auth import SessionUser, blueprint
from web.extensions import limiter


class LoginForm(FlaskForm):
    username = StringField("Username", validators=[DataRequired(), Length(max=150)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])


def _safe_next(target: str | None) -> str:
    """Only same-site paths, so ?next= cannot send a user elsewhere."""
    if target and target.startswith("/") and not target.startswith("//") \
            and not urlsplit(target).netloc:
        return target
    return url_for("dashboard.overview")


@blueprint.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: get_settings().login_rate_limit, methods=["POST"])
def login():
    form = LoginForm()
    status = 200
    if form.validate_on_submit():
        with session_scope() as session:
            user = authenticate(session, form.username.data, form.password.data)
            session_user = SessionUser(user) if user is not None else None
        if session_user is not None:
            login_user(session_user)
            return redirect(_safe_next(request.args.get("next")))
        flash("Unknown username or wrong password.", "error")
        status = 401
    return render_template("auth/login.html", form=form), status


@blueprint.post("/logout")
@login_required
def logout():
    logout_user()
    return redirect(url_for("auth.login"))
