"""Site accounts, made in the app: a site admin creates people, invites them with a one-time link,
resets their passwords and deactivates them (``/people/``; no step needs Django's ``/admin/``).

The link is Django's password-reset link (``default_token_generator``): its token is made from the
account's password hash and last login, so it stops working as soon as the password is set, and a
reset (which makes the old password unusable) voids every earlier link. The person chooses the
password on the set-password page, which applies ``AUTH_PASSWORD_VALIDATORS``.

Site admins are staff or superusers; only a superuser may change another superuser or make staff.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from annotator.models import Masklet, VideoAssignment
from annotator.permissions import User

_FIELDS = {"username": "Username", "email": "E-mail"}


class AccountError(ValueError):
    """An account change that cannot be made; the message is shown to the site admin as is."""


def invite_path(user: Any) -> str:
    """The one-time set-password link for ``user`` (path only; the page adds the host)."""
    return reverse("invite", kwargs={"uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
                                     "token": default_token_generator.make_token(user)})


def _check_may_change(admin: User, user: Any) -> None:
    if user.is_superuser and not admin.is_superuser:
        raise AccountError(f"Only a superuser can change the superuser {user.get_username()}.")


def create_account(admin: User, username: str, email: str = "", *, staff: bool = False, password: str = "") -> Any:
    """A new active account; without ``password`` it has no usable one (the invite link sets it)."""
    UserModel = get_user_model()
    username, email = (username or "").strip(), (email or "").strip()
    if staff and not admin.is_superuser:
        raise AccountError("Only a superuser can make site admins.")
    candidate = UserModel(username=username, email=email, is_staff=staff)
    try:
        candidate.clean_fields(exclude=["password", "last_login", "date_joined"])
    except ValidationError as error:
        raise AccountError(" ".join(f"{_FIELDS.get(field, field)}: {' '.join(msgs)}"
                                    for field, msgs in error.message_dict.items())) from None
    with transaction.atomic():
        if UserModel.objects.filter(username__iexact=username).exists():
            raise AccountError(f"An account called “{username}” exists already.")
        if email and UserModel.objects.filter(email__iexact=email).exists():
            raise AccountError(f"An account with the e-mail address {email} exists already.")
        if password:
            try:
                validate_password(password, candidate)
            except ValidationError as weak:
                raise AccountError("Password: " + " ".join(weak.messages)) from None
            candidate.set_password(password)
        else:
            candidate.set_unusable_password()
        candidate.save()
    return candidate


def _account(admin: User, user_id: int) -> Any:
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        raise AccountError("No such account.")
    _check_may_change(admin, user)
    return user


def reset_password(admin: User, user_id: int) -> Any:
    """Make the account's password unusable (earlier links die with it); the caller shows a new link."""
    user = _account(admin, user_id)
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return user


def set_active(admin: User, user_id: int, active: bool) -> Any:
    """Deactivate (they can no longer sign in; their locks go back to the queues) or reactivate an account."""
    user = _account(admin, user_id)
    if not active and user.pk == admin.pk:
        raise AccountError("You cannot deactivate your own account.")
    with transaction.atomic():
        user.is_active = active
        user.save(update_fields=["is_active"])
        if not active:
            Masklet.objects.filter(lock_holder=user).update(lock_holder=None, lock_expires_at=None)
            VideoAssignment.objects.filter(holder=user).update(holder=None, expires_at=None)
    return user
