"""The review page behind a mailed link, and the development outbox.

Thin: the rules live in approvals.review_links. A GET (or HEAD, OPTIONS) only shows;
only a POST decides.
"""

from functools import wraps

from django.conf import settings
from django.http import Http404, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.utils.decorators import decorator_from_middleware
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from approvals.devmail import mailbox_get, mailbox_list
from approvals.emails import person, request_context
from approvals.review_links import (
    ReviewLinkRefused,
    WrongPassword,
    review_link_decide,
    review_link_needs_password,
    review_link_open,
)
from config.errors import DomainError, ValidationFailed


def client_address(request) -> str:
    """The client, as REDLINE_CLIENT_IP_META names it (a trusted proxy's header, or the peer)."""
    meta = request.META
    return meta.get(settings.REDLINE_CLIENT_IP_META) or meta.get("REMOTE_ADDR", "")


def private(view):
    """Nothing about a review page may be cached, indexed, or leaked in a Referer."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Robots-Tag"] = "noindex"
        return response

    return wrapped


class ReviewCsrfMiddleware(CsrfViewMiddleware):
    """Django's CSRF check, for pages served with Referrer-Policy: no-referrer.

    Under that policy a browser sends `Origin: null` with the page's own form, so `null`
    passes the origin step; the CSRF cookie (SameSite=Lax, so never sent with a cross-site
    POST) and the form's token are still required.
    """

    def _origin_verified(self, request):
        return request.META["HTTP_ORIGIN"] == "null" or super()._origin_verified(request)


def _refused(request, error: DomainError) -> HttpResponse:
    title = getattr(error, "title", "Nothing was decided")
    return render(
        request,
        "review/refused.html",
        {"title": title, "message": str(error)},
        status=error.status_code,
    )


def _confirm(request, link, *, error: DomainError | None = None, comment: str = ""):
    context = {
        **request_context(link.change_request),
        "reviewer": person(link.reviewer),
        "reviewer_username": link.reviewer.get_username(),
        "party": link.party,
        "needs_password": review_link_needs_password(link, request.user),
        "error": error,
        "comment": comment,
    }
    status = error.status_code if error else 200
    return render(request, "review/confirm.html", context, status=status)


class ReviewLinkView(View):
    http_method_names = ["get", "head", "options", "post"]

    def get(self, request, token: str):
        try:
            link = review_link_open(token=token, client=client_address(request), user=request.user)
        except ReviewLinkRefused as refusal:
            return _refused(request, refusal)
        return _confirm(request, link)

    def post(self, request, token: str):
        comment = request.POST.get("comment", "").strip()
        try:
            decision = review_link_decide(
                token=token,
                client=client_address(request),
                user=request.user,
                verdict=request.POST.get("verdict", ""),
                comment=comment,
                password=request.POST.get("password", ""),
            )
        except (WrongPassword, ValidationFailed) as error:
            return self._again(request, token, error=error, comment=comment)
        except DomainError as error:
            return _refused(request, error)
        context = {**request_context(decision.change_request), "decision": decision}
        return render(request, "review/decided.html", context)

    def _again(self, request, token: str, *, error: DomainError, comment: str):
        try:
            link = review_link_open(token=token, client=client_address(request), user=request.user)
        except ReviewLinkRefused as refusal:
            return _refused(request, refusal)
        return _confirm(request, link, error=error, comment=comment)


review_link = private(
    csrf_exempt(decorator_from_middleware(ReviewCsrfMiddleware)(ReviewLinkView.as_view()))
)


# Development outbox ----------------------------------------------------------------------------


def _debug_only():
    if not settings.DEBUG:
        raise Http404("the outbox exists only in development (DEBUG)")


@require_GET
def outbox(request):
    _debug_only()
    mails = mailbox_list(settings.REDLINE_DEV_MAILBOX)
    return render(request, "review/outbox.html", {"mails": mails})


@require_GET
def outbox_mail(request, name: str):
    _debug_only()
    mail = mailbox_get(settings.REDLINE_DEV_MAILBOX, name)
    if mail is None:
        raise Http404("no such mail in the outbox")
    return render(request, "review/outbox_mail.html", {"mail": mail})


@require_GET
def outbox_mail_html(request, name: str):
    """The mail's HTML part as a mail client would show it: its own inline styles, no scripts."""
    _debug_only()
    mail = mailbox_get(settings.REDLINE_DEV_MAILBOX, name)
    if mail is None or not mail.html:
        raise Http404("no such mail in the outbox")
    response = HttpResponse(mail.html, content_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    return response
