"""GitHub webhook deliveries: signature, body, and the one-line messages users know.

The push format is the one of GitHub's old Jabber service hook::

    [Hello-World] octocat pushed 3 new commits to main: https://github.com/…/compare/a…b
    [Hello-World/main] Fix the parser - Mona Lisa

Other events the people subscribe to get equally short forms; every other event (and
every action nobody announces, such as ``labeled``) is recorded and deliberately
ignored: :func:`describe` returns None for it, never raises.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

__all__ = ["Announcement", "BadDelivery", "describe", "parse_body", "signature_ok"]

MAX_COMMIT_LINES = 5  # commit lines per push message; the rest are counted
MAX_LINE = 300  # characters per message line
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class BadDelivery(Exception):
    """A delivery that cannot be accepted: ``status`` is the HTTP answer, ``reason`` why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``X-Hub-Signature-256`` is the HMAC-SHA256 of the raw body (constant time)."""
    if not header or not header.startswith("sha256="):
        return False
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), header.strip().encode())


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """The payload of a delivery in either content type GitHub offers.

    Raises:
        BadDelivery: 415 for another content type, 400 for a body that is not a JSON object.
    """
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            form = parse_qs(body.decode("utf-8"), strict_parsing=True)
        except (UnicodeDecodeError, ValueError) as e:
            raise BadDelivery(400, f"form body not readable: {e}") from None
        if "payload" not in form:
            raise BadDelivery(400, "form body without a payload= field")
        text = form["payload"][0]
    elif kind in ("application/json", ""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadDelivery(400, "body is not UTF-8") from None
    else:
        raise BadDelivery(
            415, f"content type {kind!r}: use application/json or application/x-www-form-urlencoded"
        )
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno} column {e.colno}"
        raise BadDelivery(400, f"malformed JSON: {e.msg} at {where}") from None
    except RecursionError:  # json's parser recurses per level: 100,000 "[" exhaust it
        raise BadDelivery(400, _TOO_DEEP) from None
    if not isinstance(payload, dict):
        raise BadDelivery(400, "the JSON payload is not an object")
    if _deeper_than(payload, MAX_DEPTH):
        raise BadDelivery(400, _TOO_DEEP)
    return payload


# GitHub's payloads are at most 7 levels deep (the 273 in tests/fixtures); a bound far
# above that keeps what the parser still accepts (~1,000 levels) away from the store and
# from the recursive code a trigger run passes it through (serializers, copies).
MAX_DEPTH = 100
_TOO_DEEP = f"the JSON payload is nested too deeply (over {MAX_DEPTH} levels)"


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists and objects more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


@dataclass(frozen=True)
class Announcement:
    """What one delivery says, ready to send.

    Attributes:
        lines: the message: a headline, then details (commit lines, a comment's start).
        url: where to look (compare view, pull request, run…), may be empty.
        repo: the repository's full name (``owner/name``), may be empty.
        branch: the branch it concerns, if any (for ``branches=`` filters).
        actor: who did it.
    """

    lines: tuple[str, ...]
    url: str = ""
    repo: str = ""
    branch: str = ""
    actor: str = ""

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def describe(event: str, payload: Mapping[str, Any]) -> Announcement | None:
    """The announcement of a delivery, or None when the event is deliberately ignored."""
    handler = _HANDLERS.get(event)
    if handler is None:
        return None
    try:
        found = handler(_P(payload))
    except (KeyError, TypeError, AttributeError, IndexError, ValueError):
        return None  # a payload shape we do not know: ignored, not a crash
    if found is None:
        return None
    lines, url, branch = found
    p = _P(payload)
    return Announcement(
        lines=tuple(_line(x) for x in lines if x),
        url=url or "",
        repo=p.s("repository", "full_name"),
        branch=branch or "",
        actor=p.s("sender", "login"),
    )


def repository_of(payload: Mapping[str, Any]) -> str:
    """The full name of the delivery's repository, or ``""``."""
    return _P(payload).s("repository", "full_name")


def _line(text: str) -> str:
    text = _CONTROL.sub(" ", text).strip()
    return text if len(text) <= MAX_LINE else text[: MAX_LINE - 1] + "…"


class _P:
    """Safe reads from a payload: ``p.s("pull_request", "title")`` is ``""`` when absent."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def get(self, *path: str) -> Any:
        cur: Any = self.data
        for key in path:
            if not isinstance(cur, Mapping):
                return None
            cur = cur.get(key)
        return cur

    def s(self, *path: str) -> str:
        value = self.get(*path)
        return "" if value is None else str(value)


Found = tuple[list[str], str, str] | None  # lines, url, branch


def _repo(p: _P) -> str:
    return p.s("repository", "name") or p.s("repository", "full_name") or "?"


def _first_line(text: str, width: int = 120) -> str:
    first = (text or "").strip().splitlines()[0] if (text or "").strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _push(p: _P) -> Found:
    repo, ref = _repo(p), p.s("ref")
    who = p.s("pusher", "name") or p.s("sender", "login")
    commits = p.get("commits") or []
    url = p.s("compare")
    if ref.startswith("refs/tags/"):
        tag = ref.removeprefix("refs/tags/")
        if p.get("deleted"):
            return [f"[{repo}] {who} deleted tag {tag}"], "", ""
        return [f"[{repo}] {who} pushed tag {tag}: {url}"], url, ""
    branch = ref.removeprefix("refs/heads/")
    if p.get("deleted"):
        return [f"[{repo}] {who} deleted branch {branch}"], "", branch
    # Commits already on another branch (a merge or fast-forward of known work) come with
    # `distinct: false`: announcing them again as new was noise the old hook avoided.
    known = [c for c in commits if not c.get("distinct", True)]
    commits = [c for c in commits if c.get("distinct", True)]
    n = len(commits)
    if n == 1 and commits[0].get("url"):
        url = str(commits[0]["url"])  # one commit: its own page, as the Jabber hook linked
    if known and not n and not p.get("created") and not p.get("forced"):
        to = p.s("after")[:7]
        head = f"[{repo}] {who} fast-forwarded {branch} to {to} "
        head += f"({_plural(len(known), 'commit')} already on another branch): {url}"
        return [head], url, branch
    if p.get("created"):
        head = f"[{repo}] {who} created branch {branch}"
        head += f" with {_plural(n, 'new commit')}: {url}" if n else f": {url}"
    elif p.get("forced"):
        head = f"[{repo}] {who} force-pushed {branch}"
        head += f" ({_plural(n, 'new commit')}): {url}" if n else f": {url}"
    else:
        head = f"[{repo}] {who} pushed {_plural(n, 'new commit')} to {branch}: {url}"
    lines = [head]
    for c in commits[-MAX_COMMIT_LINES:]:  # the newest ones, oldest first as GitHub lists them
        author = (c.get("author") or {}).get("name") or (c.get("author") or {}).get("username")
        message = _first_line(c.get("message") or "") or "(no message)"
        lines.append(f"[{repo}/{branch}] {message} - {author or '?'}")
    if n > MAX_COMMIT_LINES:
        lines.insert(
            1, f"[{repo}/{branch}] … {_plural(n - MAX_COMMIT_LINES, 'older commit')} not shown"
        )
    return lines, url, branch


def _pull_request(p: _P) -> Found:
    action, pr = p.s("action"), _P(p.get("pull_request") or {})
    number, title, url = pr.s("number"), pr.s("title"), pr.s("html_url")
    who = p.s("sender", "login")
    if action == "closed":
        verb = "merged" if pr.get("merged") else "closed"
    elif action in ("opened", "reopened"):
        verb = action
    elif action == "ready_for_review":
        line = f"[{_repo(p)}] {who} marked pull request #{number} as ready for review"
        return [f"{line}: {title} {url}"], url, pr.s("base", "ref")
    elif action == "review_requested":
        reviewer = p.s("requested_reviewer", "login") or p.s("requested_team", "name")
        text = f"[{_repo(p)}] {who} requested a review from {reviewer} on pull request #{number}"
        return [f"{text}: {title} {url}"], url, pr.s("base", "ref")
    else:
        return None
    branches = f" ({pr.s('head', 'ref')} → {pr.s('base', 'ref')})" if action == "opened" else ""
    line = f"[{_repo(p)}] {who} {verb} pull request #{number}: {title}{branches} {url}"
    return [line], url, pr.s("base", "ref")


def _issues(p: _P) -> Found:
    action, issue = p.s("action"), _P(p.get("issue") or {})
    if action not in ("opened", "closed", "reopened"):
        return None
    url = issue.s("html_url")
    line = f"[{_repo(p)}] {p.s('sender', 'login')} {action} issue #{issue.s('number')}: "
    return [line + f"{issue.s('title')} {url}"], url, ""


def _issue_comment(p: _P) -> Found:
    if p.s("action") != "created":
        return None
    issue, comment = _P(p.get("issue") or {}), _P(p.get("comment") or {})
    kind = "pull request" if issue.get("pull_request") else "issue"
    url = comment.s("html_url") or issue.s("html_url")
    head = f"[{_repo(p)}] {p.s('sender', 'login')} commented on {kind} #{issue.s('number')}: "
    return [head + f"{issue.s('title')} {url}", _first_line(comment.s("body"), 200)], url, ""


def _pull_request_review(p: _P) -> Found:
    if p.s("action") != "submitted":
        return None
    review, pr = _P(p.get("review") or {}), _P(p.get("pull_request") or {})
    verb = {
        "approved": "approved",
        "changes_requested": "requested changes on",
        "commented": "reviewed",
    }.get(review.s("state").lower(), "reviewed")
    url = review.s("html_url") or pr.s("html_url")
    head = f"[{_repo(p)}] {p.s('sender', 'login')} {verb} pull request #{pr.s('number')}: "
    return [head + f"{pr.s('title')} {url}"], url, pr.s("base", "ref")


def _release(p: _P) -> Found:
    if p.s("action") != "published":
        return None
    rel = _P(p.get("release") or {})
    name, tag, url = rel.s("name"), rel.s("tag_name"), rel.s("html_url")
    what = "pre-release" if rel.get("prerelease") else "release"
    label = f"{name} ({tag})" if name and name != tag else tag
    return [f"[{_repo(p)}] {p.s('sender', 'login')} published {what} {label}: {url}"], url, ""


def _create_delete(verb: str) -> Any:
    def handle(p: _P) -> Found:
        kind, ref = p.s("ref_type"), p.s("ref")
        url = p.s("repository", "html_url")
        branch = ref if kind == "branch" else ""
        return [f"[{_repo(p)}] {p.s('sender', 'login')} {verb} {kind} {ref}"], url, branch

    return handle


def _fork(p: _P) -> Found:
    url = p.s("forkee", "html_url")
    return (
        [f"[{_repo(p)}] {p.s('sender', 'login')} forked it to {p.s('forkee', 'full_name')}: {url}"],
        url,
        "",
    )


def _star(p: _P) -> Found:
    if p.s("action") not in ("created", "started"):
        return None
    stars = p.get("repository", "stargazers_count")
    count = f" ({_plural(int(stars), 'star')})" if isinstance(stars, int) else ""
    url = p.s("repository", "html_url")
    return [f"[{_repo(p)}] {p.s('sender', 'login')} starred it{count}"], url, ""


_FAILED = {"failure", "timed_out", "startup_failure", "action_required"}


def _workflow_run(p: _P) -> Found:
    run = _P(p.get("workflow_run") or {})
    if p.s("action") != "completed" or run.s("conclusion") not in _FAILED:
        return None  # successes and progress are noise; failures are what people want
    name = run.s("name") or p.s("workflow", "name") or "workflow"
    url, branch = run.s("html_url"), run.s("head_branch")
    verdict = run.s("conclusion").replace("_", " ")
    head = f"[{_repo(p)}] {name} #{run.s('run_number')} on {branch}: {verdict}"
    return [f"{head} ({_first_line(run.s('head_commit', 'message'), 80)}) {url}"], url, branch


def _check_suite(p: _P) -> Found:
    suite = _P(p.get("check_suite") or {})
    if p.s("action") != "completed" or suite.s("conclusion") not in _FAILED:
        return None
    branch = suite.s("head_branch")
    app = suite.s("app", "name") or "checks"
    sha = suite.s("head_sha")[:7]
    url = f"{p.s('repository', 'html_url')}/commit/{suite.s('head_sha')}" if sha else ""
    verdict = suite.s("conclusion").replace("_", " ")
    return [f"[{_repo(p)}] {app} on {branch} ({sha}): {verdict} {url}".rstrip()], url, branch


def _discussion(p: _P) -> Found:
    action, d = p.s("action"), _P(p.get("discussion") or {})
    verbs = {"created": "started", "answered": "marked an answer in", "closed": "closed"}
    if action not in verbs:
        return None
    url = d.s("html_url")
    head = f"[{_repo(p)}] {p.s('sender', 'login')} {verbs[action]} discussion #{d.s('number')}: "
    return [head + f"{d.s('title')} {url}"], url, ""


def _ping(p: _P) -> Found:
    where = _repo(p) if p.get("repository") else p.s("organization", "login") or "GitHub"
    return [f"[{where}] webhook is set up (hook {p.s('hook_id')}): “{p.s('zen')}”"], "", ""


_HANDLERS = {
    "push": _push,
    "pull_request": _pull_request,
    "issues": _issues,
    "issue_comment": _issue_comment,
    "pull_request_review": _pull_request_review,
    "release": _release,
    "create": _create_delete("created"),
    "delete": _create_delete("deleted"),
    "fork": _fork,
    "star": _star,
    "watch": _star,
    "workflow_run": _workflow_run,
    "check_suite": _check_suite,
    "discussion": _discussion,
    "ping": _ping,
}

ANNOUNCED = tuple(sorted(_HANDLERS))
