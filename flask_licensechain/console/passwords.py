"""Passwords: Argon2id hashes (argon2-cffi, RFC 9106) and the policy a new one must meet.

Policy (NIST SP 800-63B, 5.1.1.2): at least ``MIN_LENGTH`` characters, at most
``MAX_LENGTH``, and not one of the commonly used passwords bundled in
``data/common-passwords.txt`` (compared case-insensitively). No composition rules.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH: Final = 12
MAX_LENGTH: Final = 256


class WeakPassword(ValueError):
    """A new password that the policy refuses; the message says why, for the person."""


@functools.cache
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords, lower-cased."""
    text = resources.files(__package__).joinpath("data/common-passwords.txt").read_text("utf-8")
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def check_new_password(password: str, *, email: str | None = None) -> None:
    """Raise ``WeakPassword`` unless ``password`` meets the policy."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"Use at least {MIN_LENGTH} characters.")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"Use at most {MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in common_passwords():
        raise WeakPassword("This password is too common. Choose another one.")
    if email and lowered == email.lower():
        raise WeakPassword("Do not use your email address as password.")


class Passwords:
    """Hash and check passwords with one ``argon2.PasswordHasher`` (Argon2id; by default
    argon2-cffi's RFC 9106 low-memory profile). A dummy hash lets a check for an unknown
    user cost the same time as a real one."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash("licensechain: no such user")

    def hash(self, password: str) -> str:
        return self.hasher.hash(password)

    def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored``. With ``stored`` None (no such user, no
        password yet) a dummy hash is checked, so the answer takes the same time."""
        try:
            return self.hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than the hasher's."""
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True

    def burn(self) -> None:
        """Spend the time of one check, for refusals decided before any check."""
        self.verify(None, "licensechain")
