"""People: site admins create accounts and invite, reset and deactivate them; invited people set
their password; everyone manages their API tokens on their account page. Thin views over
``annotator.services.accounts`` and ``annotator.services.tokens``; no step needs ``/admin/``."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse_lazy
from django.views.decorators.http import require_http_methods

from annotator import selectors
from annotator.models import ApiToken
from annotator.permissions import login_required_rule, public, staff_required
from annotator.services import accounts, tokens


def _with_link(request: HttpRequest, text: str, user) -> None:
    """The sentence, then the one-time link in its own message (``invite-link``: the page shows it to copy)."""
    messages.success(request, text)
    messages.info(request, request.build_absolute_uri(accounts.invite_path(user)), extra_tags="invite-link")


@require_http_methods(["GET", "POST"])
@staff_required
def people(request: HttpRequest) -> HttpResponse:
    """The site's accounts; POST ``action`` = create / reset / deactivate / activate."""
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "create":
                user = accounts.create_account(request.user, request.POST.get("username", ""),
                                               request.POST.get("email", ""), staff=request.POST.get("staff") == "1")
                _with_link(request, f"Account {user.get_username()} created. Send them this one-time link to "
                                    "choose their password:", user)
            elif action == "reset":
                user = accounts.reset_password(request.user, int(request.POST.get("user_id", 0)))
                _with_link(request, f"The old password of {user.get_username()} no longer works. Send them this "
                                    "one-time link to choose a new one:", user)
            elif action in ("deactivate", "activate"):
                user = accounts.set_active(request.user, int(request.POST.get("user_id", 0)), action == "activate")
                messages.success(request, f"{user.get_username()} can sign in again." if user.is_active else
                                 f"{user.get_username()} is deactivated: they can no longer sign in, and what they "
                                 "held went back to the queues.")
            else:
                messages.error(request, "Unknown action.")
        except (accounts.AccountError, ValueError) as error:
            messages.error(request, str(error))
        return redirect("people")
    return render(request, "annotator/people.html", {"accounts": selectors.accounts()})


def _days(text: str) -> float | None:
    try:
        return float(text) if text.strip() else None
    except ValueError:
        raise ValueError("The expiry is a number of days (or empty: never).") from None


@require_http_methods(["GET", "POST"])
@login_required_rule
def account(request: HttpRequest) -> HttpResponse:
    """Your API tokens: POST ``action`` = create (``name``, ``expires_days``) / revoke (``token_id``).

    A new token is shown on the answer to the POST itself, once: it never goes into a message (messages
    may travel in a cookie) or a redirect, and only its hash is stored."""
    created = None
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "create":
                created = tokens.issue_token(request.user, request.POST.get("name", ""),
                                             expires_days=_days(request.POST.get("expires_days", "")))
            elif action == "revoke":
                row = tokens.revoke_token(request.user, int(request.POST.get("token_id", 0)))
                messages.success(request, f"Token “{row.name}” revoked: it no longer works.")
                return redirect("account")
            else:
                messages.error(request, "Unknown action.")
        except ApiToken.DoesNotExist:
            messages.error(request, "You have no such token.")
        except ValueError as error:
            messages.error(request, str(error))
    return render(request, "annotator/account.html", {
        "tokens": tokens.tokens_of(request.user), "created": created[0] if created else None,
        "secret": created[1] if created else None, "prefix": tokens.PREFIX,
    })


class InviteView(auth_views.PasswordResetConfirmView):
    """The invite and reset link: Django's set-password view (password validators, one-time token);
    the person is signed in once the password is set."""

    template_name = "annotator/set_password.html"
    post_reset_login = True
    # The person just proved they hold the link: signed in by Django's own backend (the throttling
    # backend before it only guards password sign-ins).
    post_reset_login_backend = "django.contrib.auth.backends.ModelBackend"
    success_url = reverse_lazy("project-list")

    def dispatch(self, *args, **kwargs):
        # Resolve the signed-in user first: a session whose password was reset is flushed then, not
        # while this page renders (which would drop the token Django keeps in it, voiding the link).
        _ = self.request.user.is_authenticated
        return super().dispatch(*args, **kwargs)

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None  # a deactivated person's links are void

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(self.request, "Your password is set and you are signed in.")
        return response


invite = public(InviteView.as_view())
