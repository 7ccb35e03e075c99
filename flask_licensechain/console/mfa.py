"""Second factors other than WebAuthn: TOTP and backup codes.

TOTP (RFC 6238, with pyotp): SHA-1, 6 digits, 30-second steps; a code of the current step
or of one step either side is accepted (clock drift), and only once: the step of each
accepted code is recorded and a code of that step or an earlier one is refused (RFC 6238
section 5.2: "the verifier MUST NOT accept the second attempt of the OTP after the
successful validation has been issued for the first OTP"). The secret is sealed at rest
by the issuer's keyring (``core/sealing.py``; column registered in ``store/schema.py``, so
``rotate-encryption-key`` re-seals it) and shown once, as text and as a QR code (segno), at
enrolment.

Backup codes: ``BACKUP_CODE_COUNT`` random codes of 16 characters from a 31-letter alphabet
(79 bits: no offline search of a stolen hash is feasible, so a plain SHA-256 keeps them,
and they outlive an encryption-key rotation), shown once, each usable once; regenerating
replaces them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime
from typing import Final

import pyotp
import segno

from .repository import ConsoleUser
from .state import ConsoleState

TOTP_ISSUER: Final = "LicenseChain"
TOTP_DRIFT_STEPS: Final = 1
BACKUP_CODE_COUNT: Final = 10
_BACKUP_ALPHABET: Final = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i
_BACKUP_LENGTH: Final = 16


def _context(user_id: str) -> bytes:
    return b"lc_console_users.totp_secret:" + user_id.encode()


def new_totp_secret() -> str:
    """A fresh base32 TOTP secret (160 bits, RFC 4226's recommended length)."""
    return pyotp.random_base32(32)


def seal_totp_secret(state: ConsoleState, user_id: str, secret: str) -> bytes:
    """The secret sealed for the user's row (ASCII bytes of the sealed text)."""
    return state.sealer.seal(secret.encode(), context=_context(user_id)).encode("ascii")


def open_totp_secret(state: ConsoleState, user: ConsoleUser) -> str | None:
    if user.totp_secret is None:
        return None
    return state.sealer.unseal(user.totp_secret, context=_context(user.id)).decode()


def provisioning_uri(secret: str, email: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=TOTP_ISSUER)


def qr_svg_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG ``data:`` URI (for an ``<img>``)."""
    return str(segno.make(uri, error="m").svg_data_uri(scale=5, border=2))


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time step whose code equals ``code`` (current one first, then the drift
    window), or None."""
    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(now)
    for offset in (0, -TOTP_DRIFT_STEPS, TOTP_DRIFT_STEPS):
        step = current + offset
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def check_totp(state: ConsoleState, user: ConsoleUser, code: str, now: datetime) -> bool:
    """Whether ``code`` is the user's active TOTP code and was not used before (the step is
    then recorded, atomically: two requests with one code cannot both pass)."""
    if not user.totp_enabled:
        return False
    secret = open_totp_secret(state, user)
    if secret is None:
        return False
    step = matching_step(secret, code, now)
    return step is not None and state.repo.accept_totp_step(user.id, step, now=now)


def _normalize_code(code: str) -> str:
    return "".join(ch for ch in code.lower() if ch.isalnum())


def backup_code_hash(user_id: str, code: str) -> str:
    return hashlib.sha256(f"{user_id}:{_normalize_code(code)}".encode()).hexdigest()


def new_backup_codes() -> list[str]:
    codes = []
    for _ in range(BACKUP_CODE_COUNT):
        raw = "".join(secrets.choice(_BACKUP_ALPHABET) for _ in range(_BACKUP_LENGTH))
        codes.append("-".join(raw[i : i + 4] for i in range(0, _BACKUP_LENGTH, 4)))
    return codes


def regenerate_backup_codes(state: ConsoleState, user: ConsoleUser) -> list[str]:
    """New codes for ``user`` (the old ones stop working); the plain codes, to show once."""
    codes = new_backup_codes()
    state.repo.replace_backup_codes(user.id, [backup_code_hash(user.id, c) for c in codes])
    return codes


def use_backup_code(state: ConsoleState, user: ConsoleUser, code: str, now: datetime) -> bool:
    """Spend one of the user's backup codes: True once per code."""
    normalized = _normalize_code(code)
    if len(normalized) != _BACKUP_LENGTH:
        return False
    return state.repo.use_backup_code(user.id, backup_code_hash(user.id, code), now)


def has_second_factor(state: ConsoleState, user: ConsoleUser) -> bool:
    """Whether the user has an active TOTP or a registered WebAuthn credential."""
    return user.totp_enabled or bool(state.repo.credentials(user.id))
