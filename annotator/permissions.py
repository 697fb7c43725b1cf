"""Who may do what: one rule table, one check, and the decorators every view declares itself with.

The table (``RULES``) maps each project action to the roles that may perform it. Non-members
may do nothing in a project; superusers may do everything everywhere.

Every view in the URLconf carries a rule (``view.masklet_rule``), set by exactly one of:

- ``@public``: anyone, signed in or not (the login page, the API session endpoint);
- ``@login_required_rule``: any signed-in user (the project list filters to their projects);
- ``@staff_required``: staff and superusers (creating a project);
- ``@project_permission(action)``: a project action; the project comes from the URL's ``slug``.

``tests/annotator/test_permissions.py`` fails when a URL lacks a rule, so a new endpoint
cannot ship unguarded.

Denials, decided once here:

- signed out: pages redirect to the login page; the JSON API answers 401;
- signed in but not a member (or no such project): 404, so that project slugs do not leak;
- a member whose role lacks the action: 403 (they know the project exists already);
- staff-only pages for non-staff: 403.

WebSocket consumers use ``has_permission`` through ``annotator.consumers.ProjectConsumer``,
on connect and again on every message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse

from annotator.models import Membership, Project, Role
from engine.input import error_response

User = AbstractBaseUser | AnonymousUser


class Action(StrEnum):
    VIEW_PROJECT = "view_project"
    UPLOAD_VIDEO = "upload_video"
    ANNOTATE = "annotate"
    REVIEW = "review"
    EXPORT = "export"
    MANAGE_PROJECT = "manage_project"
    MANAGE_MEMBERS = "manage_members"
    MANAGE_MODELS = "manage_models"


_ALL = frozenset(Role)

#: The one rule table: action -> roles allowed. Superusers bypass it; non-members match nothing.
RULES: Mapping[Action, frozenset[Role]] = {
    Action.VIEW_PROJECT: _ALL,
    Action.UPLOAD_VIDEO: frozenset({Role.ADMIN, Role.ANNOTATOR}),
    Action.ANNOTATE: frozenset({Role.ADMIN, Role.ANNOTATOR}),
    Action.REVIEW: frozenset({Role.ADMIN, Role.REVIEWER}),
    Action.EXPORT: frozenset({Role.ADMIN, Role.REVIEWER}),
    Action.MANAGE_PROJECT: frozenset({Role.ADMIN}),
    Action.MANAGE_MEMBERS: frozenset({Role.ADMIN}),
    Action.MANAGE_MODELS: frozenset({Role.ADMIN}),
}
if set(RULES) != set(Action):
    raise ImproperlyConfigured(f"annotator.permissions.RULES lacks a row for {set(Action) - set(RULES)}")


def roles_by_project(user: User, project: Project | None = None) -> dict[int, Role]:
    """``{project_id: role}`` of the user's memberships (only ``project``'s when given).

    The one role lookup: pages, the API, services and sockets all read roles here, next to the
    table of what each role may do (``annotator.selectors`` imports this module, so it cannot
    live there).
    """
    if not user.is_authenticated:
        return {}
    memberships = Membership.objects.filter(user=user)
    if project is not None:
        memberships = memberships.filter(project=project)
    return {project_id: Role(role) for project_id, role in memberships.values_list("project_id", "role")}


def role_of(user: User, project: Project) -> Role | None:
    """The user's role in the project, or None for anonymous users and non-members."""
    return roles_by_project(user, project).get(project.pk)


def has_permission(user: User, project: Project, action: Action) -> bool:
    """True when ``user`` may perform ``action`` in ``project`` according to ``RULES``."""
    if not user.is_authenticated or not user.is_active:
        return False
    return role_allows(user, role_of(user, project), action)


def role_allows(user: User, role: Role | None, action: Action) -> bool:
    """The rule table itself: superusers may do anything, members what their role allows."""
    if user.is_superuser:
        return True
    return role is not None and role in RULES[Action(action)]


def can_create_project(user: User) -> bool:
    return user.is_authenticated and user.is_active and (user.is_staff or user.is_superuser)


# -- the markers --------------------------------------------------------------------------


class Access(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    STAFF = "staff"
    PROJECT = "project"


@dataclass(frozen=True)
class Rule:
    """What a view requires; ``actions`` maps an HTTP method to a project action (``*``: any other)."""

    access: Access
    actions: Mapping[str, Action] = field(default_factory=dict)
    api: bool = False

    def action_for(self, method: str) -> Action | None:
        return self.actions.get(method.upper(), self.actions.get("*"))


RULE_ATTRIBUTE = "masklet_rule"


def rule_of(view: Callable[..., Any]) -> Rule | None:
    """The rule a view declared, looking through ``as_view()`` wrappers; None when it has none."""
    rule = getattr(view, RULE_ATTRIBUTE, None)
    if rule is None and hasattr(view, "view_class"):
        rule = getattr(view.view_class, RULE_ATTRIBUTE, None)
    return rule


def _mark(view: Callable[..., Any], rule: Rule) -> Callable[..., Any]:
    setattr(view, RULE_ATTRIBUTE, rule)
    return view


def _json_error(message: str, status: int) -> JsonResponse:
    return error_response(message, status)


def _unauthenticated(request: HttpRequest, api: bool) -> HttpResponse:
    if api:
        response = _json_error("Authentication required: send 'Authorization: Bearer <token>' or sign in first.", 401)
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)


def public(view: Callable[..., Any]) -> Callable[..., Any]:
    """Declare a view open to everyone (it must do its own checks if it changes anything)."""
    return _mark(view, Rule(Access.PUBLIC))


def login_required_rule(view: Callable[..., Any] | None = None, *, api: bool = False) -> Callable[..., Any]:
    """Require a signed-in, active user; the view filters what it shows to that user."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not (request.user.is_authenticated and request.user.is_active):
                return _unauthenticated(request, api)
            return func(request, *args, **kwargs)

        return _mark(wrapper, Rule(Access.AUTHENTICATED, api=api))

    return decorate(view) if view is not None else decorate


def staff_required(view: Callable[..., Any] | None = None, *, api: bool = False) -> Callable[..., Any]:
    """Require a staff or superuser account (site-wide actions such as creating a project)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not (request.user.is_authenticated and request.user.is_active):
                return _unauthenticated(request, api)
            if not can_create_project(request.user):
                if api:
                    return _json_error("Only staff can do this.", 403)
                raise PermissionDenied("Only staff can do this.")
            return func(request, *args, **kwargs)

        return _mark(wrapper, Rule(Access.STAFF, api=api))

    return decorate(view) if view is not None else decorate


def project_permission(
    action: Action, *, api: bool = False, **per_method: Action
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Load the project from the URL's ``slug`` and require ``action`` in it.

    ``per_method`` overrides the action for some HTTP methods, e.g.
    ``@project_permission(Action.VIEW_PROJECT, POST=Action.UPLOAD_VIDEO)``. The view is called
    as ``view(request, project, **other_url_kwargs)``.
    """
    actions = {"*": Action(action), **{method.upper(): Action(a) for method, a in per_method.items()}}
    rule = Rule(Access.PROJECT, actions=actions, api=api)

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def wrapper(request: HttpRequest, slug: str, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            if not (user.is_authenticated and user.is_active):
                return _unauthenticated(request, api)
            project = Project.objects.filter(slug=slug).first()
            role = role_of(user, project) if project is not None else None
            if project is None or (role is None and not user.is_superuser):
                if api:
                    return _json_error("No such project.", 404)
                raise Http404("No such project.")
            required = rule.action_for(request.method or "GET")
            if not role_allows(user, role, required):
                message = f"Your role in this project does not allow this ({required})."
                if api:
                    return _json_error(message, 403)
                raise PermissionDenied(message)
            return func(request, project, *args, **kwargs)

        return _mark(wrapper, rule)

    return decorate
