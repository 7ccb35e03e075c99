"""The console's forms (flask-wtf: each carries and checks the CSRF token). Every field
has a label; templates render it with ``macros.html``'s ``field``."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField, SubmitField
from wtforms.validators import DataRequired, EqualTo, Length

from .passwords import MAX_LENGTH, MIN_LENGTH


class LoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Length(max=320)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=MAX_LENGTH)])
    next = HiddenField()
    submit = SubmitField("Sign in")


class SecondFactorForm(FlaskForm):
    code = StringField(
        "Code from your authenticator app, or a backup code",
        validators=[DataRequired(), Length(max=32)],
    )
    next = HiddenField()
    submit = SubmitField("Verify")


class SetupForm(FlaskForm):
    display_name = StringField("Display name", validators=[DataRequired(), Length(max=200)])
    password = PasswordField(
        f"New password (at least {MIN_LENGTH} characters)",
        validators=[DataRequired(), Length(max=MAX_LENGTH)],
    )
    confirm = PasswordField(
        "Repeat the password",
        validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
    )
    submit = SubmitField("Set password")


class TotpConfirmForm(FlaskForm):
    code = StringField("6-digit code from the app", validators=[DataRequired(), Length(max=16)])
    submit = SubmitField("Turn on")


class ChangePasswordForm(FlaskForm):
    current = PasswordField("Current password", validators=[DataRequired()])
    password = PasswordField(
        f"New password (at least {MIN_LENGTH} characters)",
        validators=[DataRequired(), Length(max=MAX_LENGTH)],
    )
    confirm = PasswordField(
        "Repeat the new password",
        validators=[DataRequired(), EqualTo("password", "The passwords differ.")],
    )
    submit = SubmitField("Change password")


class ActionForm(FlaskForm):
    """A form of one button (sign out, revoke, remove...): only the CSRF token."""

    submit = SubmitField("Confirm")


class NameForm(FlaskForm):
    name = StringField("Name", validators=[DataRequired(), Length(max=100)])
    submit = SubmitField("Save")
