"""The console's aiohttp application: access control, security headers, the pages."""

from __future__ import annotations

import asyncio
import functools
import html
import re
import sqlite3
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import psycopg
from aiohttp import web
from multidict import MultiDictProxy

from gateway.config import ConsoleSettings
from gateway.errors import PasserelleError
from gateway.journal import Journal, JournalEntry
from gateway.log import get_logger
from gateway.ops.console import i18n
from gateway.ops.console.auth import COOKIE, Keys, Operator, load_tokens
from gateway.ops.http import Site
from gateway.spool import events
from gateway.spool.model import QueueEntry, State
from gateway.spool.search import AGE_BUCKETS, QueueFilter, Summary
from gateway.spool.sqlite import SqliteSpool

log = get_logger("gateway.console")

PAGE_SIZE = 25
REVEAL_BYTES = 16 * 1024
STATIC = Path(__file__).parent / "static"
LANG = web.RequestKey("lang", str)
OPERATOR = web.RequestKey("operator", Operator)
FORM = web.RequestKey("form", MultiDictProxy)
CSP = ("default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


@dataclass
class ConsoleData:
    """What the console reads and acts on (the daemon's own objects)."""

    spool: SqliteSpool
    journal: Journal
    clock: Callable[[], float] = time.time
    domain_list: Callable[[], Any] | None = None  # → DomainList
    directory: Path | str | None = None  # where the directory is (see Settings)
    wake: Callable[[], None] | None = None  # after a release: wake the translation stage
    run: Callable[..., Any] | None = None  # run a blocking call off the loop
    extra: dict[str, Any] = field(default_factory=dict)

    async def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.run is not None:
            return await self.run(fn, *args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)


def server_tls(settings: ConsoleSettings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    assert settings.tls_cert is not None and settings.tls_key is not None
    ctx.load_cert_chain(str(settings.tls_cert), str(settings.tls_key))
    if settings.client_ca is not None:
        ctx.load_verify_locations(cafile=str(settings.client_ca))
        # a certificate is asked for; without one, a token (header or session) is needed
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


class Console(Site):
    """``Console(settings, data)``; ``await start()`` then ``await stop()``."""

    def __init__(self, settings: ConsoleSettings, data: ConsoleData, *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.settings = settings
        self.data = data
        self.keys = Keys(load_tokens(settings.tokens_file),
                         session_seconds=settings.session_minutes * 60, clock=data.clock)
        app = web.Application(middlewares=[self._headers, self._access],
                              client_max_size=64 * 1024)
        r = app.router
        r.add_get("/", self.home)
        r.add_get("/login", self.login_form)
        r.add_post("/login", self.login)
        r.add_post("/logout", self.logout)
        r.add_get("/messages", self.messages)
        r.add_get("/messages/{qid}", self.message)
        r.add_post("/messages/{qid}/reveal", self.reveal)
        r.add_get("/queue", self.queue)
        r.add_get("/quarantine", self.quarantine)
        r.add_get("/quarantine/{qid}/{action:release|drop}", self.confirm)
        r.add_post("/quarantine/{qid}/{action:release|drop}", self.act)
        r.add_get("/domains", self.domains)
        r.add_get("/directory", self.directory)
        r.add_get("/static/console.css", self.css)
        super().__init__(app, host=settings.listen[0], port=settings.listen[1],
                         ssl_context=ssl_context if ssl_context is not None
                         else server_tls(settings))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    # -- access ----------------------------------------------------------------------------

    def operator(self, request: web.Request) -> Operator | None:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            for rdn in peer.get("subject", ()):
                for key, value in rdn:
                    if key == "commonName":
                        return Operator(str(value), "certificate")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            name = self.keys.by_token(auth[7:].strip())
            return Operator(name, "token") if name else None
        cookie = request.cookies.get(COOKIE)
        return self.keys.session(cookie) if cookie else None

    @web.middleware
    async def _headers(self, request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:  # redirects and refusals get the headers too
            self._secure(request, exc.headers)
            raise
        self._secure(request, response.headers)
        return response

    @staticmethod
    def _secure(request: web.Request, h: Any) -> None:
        h["Content-Security-Policy"] = CSP
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["Strict-Transport-Security"] = "max-age=31536000"
        h["Cache-Control"] = "no-store" if request.path != "/static/console.css" \
            else "max-age=3600"

    @web.middleware
    async def _access(self, request: web.Request, handler: Any) -> web.StreamResponse:
        request[LANG] = i18n.pick(request.query.get("lang"),
                                    request.headers.get("Accept-Language"))
        if request.path in ("/login", "/static/console.css"):
            if request.method == "POST":
                await self._check_csrf(request, None, request.cookies.get(COOKIE + "_login", ""))
            response: web.StreamResponse = await handler(request)
            return response
        op = self.operator(request)
        if op is None:
            if request.method == "GET" and "Authorization" not in request.headers:
                raise web.HTTPSeeOther(self._link(request, "/login"))
            raise web.HTTPUnauthorized(text="authentication required\n",
                                       headers={"WWW-Authenticate": 'Bearer realm="console"'})
        request[OPERATOR] = op
        if request.method == "POST":
            await self._check_csrf(request, op)
        answer: web.StreamResponse = await handler(request)
        return answer

    async def _check_csrf(self, request: web.Request, op: Operator | None,
                          anonymous: str = "") -> None:
        form = await request.post()
        request[FORM] = form
        token = str(form.get("csrf", ""))
        if not self.keys.csrf_ok(op, token, anonymous):
            log.warning("console.csrf_refused", operator=op.identity if op else "",
                        path=request.path, outcome="refused")
            raise web.HTTPForbidden(
                text=self._page(request, "403", f'<p class="error" role="alert">'
                                f'{self.t(request, "forbidden")}</p>').text,
                content_type="text/html")

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def t(request: web.Request, key: str, **values: object) -> str:
        return html.escape(i18n.text(request[LANG], key, **values))

    @staticmethod
    def _link(request: web.Request, path: str, **query: object) -> str:
        q = {k: str(v) for k, v in query.items() if v not in ("", None)}
        if "lang" in request.query:
            q["lang"] = request[LANG]
        return path + ("?" + urlencode(q) if q else "")

    @classmethod
    def _href(cls, request: web.Request, path: str, **query: object) -> str:
        return html.escape(cls._link(request, path, **query))

    @staticmethod
    def _lang_field(request: web.Request) -> str:
        """A GET form keeps the language the page was asked in (``?lang=``)."""
        if "lang" not in request.query:
            return ""
        return f'<input type="hidden" name="lang" value="{request[LANG]}">'

    def _csrf_field(self, request: web.Request) -> str:
        token = self.keys.csrf(request.get(OPERATOR))
        return f'<input type="hidden" name="csrf" value="{token}">'

    def _page(self, request: web.Request, title: str, body: str, *,
              status: int = 200) -> web.Response:
        lang = request[LANG]
        op: Operator | None = request.get(OPERATOR)
        nav = ""
        if op is not None:
            links = "".join(
                f'<a href="{self._href(request, path)}">{self.t(request, key)}</a>'
                for path, key in (("/messages", "messages"), ("/queue", "queue"),
                                  ("/quarantine", "quarantine"), ("/domains", "domains"),
                                  ("/directory", "directory")))
            logout = ""
            if op.via == "session":
                logout = (f'<form method="post" action="/logout">{self._csrf_field(request)}'
                          f'<button>{self.t(request, "logout")}</button></form>')
            nav = (f'<nav aria-label="{self.t(request, "title")}">{links}</nav>'
                   f'<span class="who">{self.t(request, "signed_as", name=op.name)}</span>'
                   + logout)
        other = "en" if lang == "fr" else "fr"
        query = dict(request.query)
        query["lang"] = other
        switch = (f'<a href="{html.escape(request.path + "?" + urlencode(query))}" '
                  f'hreflang="{other}" lang="{other}">{self.t(request, "lang_other")}</a>')
        doc = (f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
               '<meta name="viewport" content="width=device-width, initial-scale=1">'
               f'<title>{html.escape(title)} · {self.t(request, "title")}</title>'
               '<link rel="stylesheet" href="/static/console.css"></head><body>'
               f'<header><strong>{self.t(request, "title")}</strong>{nav}{switch}</header>'
               f'<main><h1>{html.escape(title)}</h1>{body}</main></body></html>')
        return web.Response(text=doc, content_type="text/html", status=status)

    @staticmethod
    def _act_path(qid: str, action: str) -> str:
        return f"/quarantine/{qid}/{action}"

    def _not_found(self, request: web.Request) -> web.HTTPNotFound:
        page = self._page(request, "404", f'<p>{self.t(request, "not_found")}</p>')
        return web.HTTPNotFound(text=page.text, content_type="text/html")

    @staticmethod
    def _when(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    def _state(self, request: web.Request, state: str) -> str:
        """A state (or an attempt's result) in the page's language, its code as the class."""
        return (f'<span class="state-{html.escape(state)}">'
                f'{html.escape(i18n.state(request[LANG], state))}</span>')

    def _states(self, request: web.Request, entry: QueueEntry) -> str:
        return ", ".join(self._state(request, s)
                         for s in sorted({str(r.state) for r in entry.recipients}))

    def _table(self, request: web.Request, entries: Sequence[QueueEntry]) -> str:
        if not entries:
            return f'<p>{self.t(request, "none")}</p>'
        head = "".join(f'<th scope="col">{self.t(request, k)}</th>' for k in
                       ("queue_id", "message_id", "direction", "sender_domain", "recipients",
                        "state", "size", "received"))
        rows = []
        for e in entries:
            domains = sorted({r.rcpt.rpartition("@")[2] for r in e.recipients})
            rows.append(
                f'<tr><td><a class="mono" href="{self._href(request, "/messages/" + e.queue_id)}"'
                f'>{html.escape(e.queue_id)}</a></td><td class="mono">'
                f'{html.escape(e.message_id)}</td><td>{self.t(request, str(e.direction))}</td>'
                f'<td>{html.escape(e.mail_from_domain)}</td>'
                f'<td>{len(e.recipients)} ({html.escape(", ".join(domains))})</td>'
                f'<td>{self._states(request, e)}</td><td>{e.size}</td>'
                f'<td>{self._when(e.received_at)}</td></tr>')
        return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'

    async def _journal(self, message_id: str, stage: str, record: dict[str, Any]) -> None:
        await self.data.call(self.data.journal.append, message_id, stage, record,
                             at=datetime.fromtimestamp(self.data.clock(), UTC))

    # -- pages -----------------------------------------------------------------------------

    async def css(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=(STATIC / "console.css").read_bytes(), content_type="text/css")

    async def home(self, request: web.Request) -> web.StreamResponse:
        raise web.HTTPSeeOther(self._link(request, "/messages"))

    async def login_form(self, request: web.Request, failed: bool = False) -> web.StreamResponse:
        nonce = request.cookies.get(COOKIE + "_login") or self.keys.new_session("login")[-16:]
        token = self.keys.csrf(None, nonce)
        error = f'<p class="error" role="alert">{self.t(request, "login_failed")}</p>' \
            if failed else ""
        body = (f'{error}<form method="post" action="{self._href(request, "/login")}">'
                f'<input type="hidden" name="csrf" value="{token}">'
                f'<label for="token">{self.t(request, "token")}</label> '
                '<input id="token" name="token" type="password" autocomplete="off" required> '
                f'<button type="submit">{self.t(request, "login")}</button></form>')
        response = self._page(request, i18n.text(request[LANG], "login"), body,
                              status=401 if failed else 200)
        response.set_cookie(COOKIE + "_login", nonce, httponly=True, secure=True,
                            samesite="Strict", path="/login")
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        name = self.keys.by_token(str(request[FORM].get("token", "")).strip())
        if name is None:
            log.warning("console.login_refused", outcome="refused")
            return await self.login_form(request, failed=True)
        response = _see_other(self._link(request, "/messages"))
        response.set_cookie(COOKIE, self.keys.new_session(name), httponly=True, secure=True,
                            samesite="Strict", path="/",
                            max_age=int(self.keys.session_seconds))
        log.info("console.login", operator=f"session:{name}", outcome="ok")
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        response = _see_other(self._link(request, "/login"))
        response.del_cookie(COOKIE, path="/")
        return response

    def _date(self, request: web.Request, key: str, errors: list[str]) -> float | None:
        value = request.query.get(key, "").strip()
        if not value:
            return None
        try:
            day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            errors.append(self.t(request, "bad_date", v=value))
            return None
        return day.timestamp() + (86400 if key == "until" else 0)

    async def messages(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        errors: list[str] = []
        since, until = self._date(request, "since", errors), self._date(request, "until", errors)
        state = q.get("state", "")
        if state and state not in {str(s) for s in State}:
            state = ""
        try:
            page = max(1, int(q.get("page", "1")))
        except ValueError:
            page = 1
        criteria = {k: q.get(k, "").strip()[:320] for k in
                    ("message_id", "sender", "recipient", "domain")}
        wanted = QueueFilter(
            message_id=criteria["message_id"] or None, sender=criteria["sender"] or None,
            rcpt=criteria["recipient"] or None, any_domain=criteria["domain"] or None,
            state=state or None, since=since, until=until, everything=True)
        entries, total = await self.data.call(
            self.data.spool.search, wanted, PAGE_SIZE, (page - 1) * PAGE_SIZE,
            newest_first=True)
        fields = "".join(
            f'<label for="f-{k}">{self.t(request, "field_" + k)}<input id="f-{k}" name="{k}" '
            f'value="{html.escape(criteria[k])}"></label>' for k in criteria)
        options = f'<option value="">{self.t(request, "any")}</option>' + "".join(
            f'<option value="{s}"{" selected" if s == state else ""}>'
            f'{html.escape(i18n.state(request[LANG], str(s)))}</option>'
            for s in State)
        dates = "".join(
            f'<label for="f-{k}">{self.t(request, k)}<input id="f-{k}" name="{k}" type="date" '
            f'value="{html.escape(q.get(k, ""))}"></label>' for k in ("since", "until"))
        hidden = self._lang_field(request)
        form = (f'<form class="search" method="get" action="/messages" role="search">{fields}'
                f'<label for="f-state">{self.t(request, "state")}<select id="f-state" '
                f'name="state">{options}</select></label>{dates}{hidden}'
                f'<button type="submit">{self.t(request, "search")}</button></form>')
        pages = max(1, -(-total // PAGE_SIZE))
        base = {**criteria, "state": state, "since": q.get("since", ""),
                "until": q.get("until", "")}
        nav = [f'<p>{self.t(request, "results", n=total)} · '
               f'{self.t(request, "page", p=page, n=pages)}</p>'
               f'<nav aria-label="{self.t(request, "pages")}">']
        if page > 1:
            prev = self._href(request, "/messages", **base, page=page - 1)
            nav.append(f'<a rel="prev" href="{prev}">'
                       f'{self.t(request, "previous")}</a> ')
        if page < pages:
            after = self._href(request, "/messages", **base, page=page + 1)
            nav.append(f'<a rel="next" href="{after}">'
                       f'{self.t(request, "next")}</a>')
        nav.append("</nav>")
        errs = "".join(f'<p class="error" role="alert">{e}</p>' for e in errors)
        return self._page(request, i18n.text(request[LANG], "messages"),
                          errs + form + "".join(nav) + self._table(request, entries))

    async def _show(self, qid: str) -> QueueEntry | None:
        try:
            entry = await self.data.call(self.data.spool.entry, qid)
        except PasserelleError:
            return None
        assert isinstance(entry, QueueEntry)
        return entry

    async def message(self, request: web.Request, revealed: str = "") -> web.StreamResponse:
        qid = request.match_info["qid"]
        entry = await self._show(qid)
        if entry is None:
            raise self._not_found(request)
        t = self.t
        facts = "".join(
            f'<tr><th scope="row">{t(request, k)}</th><td class="mono">'
            f'{html.escape(str(v))}</td></tr>'
            for k, v in (("queue_id", entry.queue_id), ("message_id", entry.message_id),
                         ("direction", i18n.text(request[LANG], str(entry.direction))),
                         ("sender_domain", entry.mail_from_domain), ("size", entry.size),
                         ("digest", entry.digest), ("received", self._when(entry.received_at))))
        rows = "".join(
            f'<tr><td class="mono">{html.escape(r.rcpt.rpartition("@")[2])}</td>'
            f'<td>{self._state(request, str(r.state))}</td>'
            f'<td>{r.attempts}</td><td class="mono">{html.escape(mask(r.reason))}</td>'
            f'<td>{self._when(r.next_attempt) if r.state == State.DEFERRED else ""}'
            '</td></tr>'
            for r in entry.recipients)
        rcpts = (f'<h2>{t(request, "recipients")}</h2><table><thead><tr>'
                 + "".join(f'<th scope="col">{t(request, k)}</th>' for k in
                           ("domain", "state", "attempts", "reason", "next_attempt"))
                 + f"</tr></thead><tbody>{rows}</tbody></table>")
        steps: list[JournalEntry] = await self.data.call(self._timeline, entry)
        attempts = self._attempts(request, [e for e in steps if e.stage == "delivery"])
        if steps:
            items = "".join(
                f'<tr><td>{html.escape(_at(e.at))}</td><td>{html.escape(e.stage)}</td>'
                f'<td><ul>{self._facts(request, entry, e.record)}</ul></td></tr>'
                for e in steps)
            timeline = (f'<table><thead><tr><th scope="col">{t(request, "when")}</th>'
                        f'<th scope="col">{t(request, "step")}</th><th scope="col">'
                        f'{t(request, "details")}</th></tr></thead><tbody>{items}</tbody></table>')
        else:
            timeline = f'<p>{t(request, "no_trace")}</p>'
        actions = ""
        if any(r.state == State.QUARANTINED for r in entry.recipients):
            actions = "".join(
                f'<a href="{self._href(request, f"/quarantine/{entry.queue_id}/{a}")}">'
                f'{t(request, a)}</a> ' for a in ("release", "drop"))
            actions = f"<p>{actions}</p>"
        if revealed:
            reveal = (f'<h2>{t(request, "content")}</h2><pre>{html.escape(revealed)}</pre>')
        else:
            target = self._href(request, f"/messages/{entry.queue_id}/reveal")
            reveal = (f'<form method="post" action="{target}">'
                      f'{self._csrf_field(request)}<p class="warn">{t(request, "reveal_warn")}</p>'
                      f'<button type="submit">{t(request, "reveal")}</button></form>')
        body = (f'<table>{facts}</table>{actions}{rcpts}{attempts}'
                f'<h2 id="timeline">{t(request, "timeline")}</h2>{timeline}{reveal}')
        return self._page(request, entry.queue_id, body)

    def _timeline(self, entry: QueueEntry) -> list[JournalEntry]:
        """Journal steps of this message, in order: by Message-ID (as the trace keys them),
        by queue id (a message without one), never another message's steps."""
        found: dict[int, JournalEntry] = {}
        bare = entry.message_id.strip().strip("<>")
        keys = [entry.queue_id, f"<{entry.digest[:32]}@passerelle>"]  # without a Message-ID
        keys += [entry.message_id, bare, f"<{bare}>"] if bare else []
        for key in dict.fromkeys(k for k in keys if k):
            for e in self.data.journal.entries(key):
                queue_id = e.record.get("queue_id")
                if queue_id not in (None, entry.queue_id):
                    continue  # another message with the same Message-ID
                found[e.seq] = e
        return [found[seq] for seq in sorted(found)]

    def _facts(self, request: web.Request, entry: QueueEntry, record: dict[str, Any]) -> str:
        """A step's facts as list items; another message it names (a notice written about
        this one, the message a notice is about) is a link to that message's page."""
        items = []
        for line in _describe(record):
            key, _, value = line.partition(": ")
            if key.endswith("queue_id") and value != entry.queue_id and _QUEUE_ID.match(value):
                link = self._href(request, "/messages/" + value)
                items.append(f'<li>{html.escape(key)}: <a class="mono" href="{link}">'
                             f'{html.escape(value)}</a></li>')
            else:
                items.append(f"<li>{html.escape(line)}</li>")
        return "".join(items)

    def _attempts(self, request: web.Request, steps: Sequence[JournalEntry]) -> str:
        """Each delivery attempt (the trace's ``delivery`` steps, one per recipient and
        attempt): when, to which domain, through which relay, what the peer answered."""
        t = self.t
        if not steps:
            return ""
        head = "".join(f'<th scope="col">{t(request, k)}</th>' for k in
                       ("when", "attempt", "domain", "relay", "state", "dsn", "reply"))
        rows = "".join(
            f'<tr><td>{html.escape(_at(e.at))}</td>'
            f'<td>{html.escape(str(e.record.get("attempt", "")))}'
            f'</td><td class="mono">{html.escape(str(e.record.get("recipient_domain", "")))}'
            f'</td><td class="mono">{html.escape(str(e.record.get("relay", "")))}</td>'
            f'<td>{self._state(request, str(e.record.get("status", "")))}</td>'
            f'<td class="mono">{html.escape(str(e.record.get("dsn", "")))}</td>'
            f'<td class="mono">{html.escape(_short(e.record.get("reply", "")))}</td></tr>'
            for e in steps)
        return (f'<h2 id="attempts">{t(request, "delivery_attempts")}</h2>'
                f'<table class="attempts"><thead>'
                f'<tr>{head}</tr></thead><tbody>{rows}</tbody></table>')

    async def reveal(self, request: web.Request) -> web.StreamResponse:
        qid = request.match_info["qid"]
        entry = await self._show(qid)
        if entry is None:
            raise self._not_found(request)
        op: Operator = request[OPERATOR]
        await self._journal(entry.message_id, "console.reveal",
                            {"operator": op.identity, "queue_id": qid})
        log.info("console.reveal", operator=op.identity, queue_id=qid, outcome="ok")
        head = await self.data.call(self.data.spool.head, qid, REVEAL_BYTES)
        text = bytes(head).decode("utf-8", "replace")
        block = text.split("\r\n\r\n", 1)[0].split("\n\n", 1)[0]
        return await self.message(request, revealed=block)

    async def queue(self, request: web.Request) -> web.StreamResponse:
        """The count per state; then, as ``passerelle queue summary`` (qshape), the
        recipients still waiting by destination domain and by age."""
        t = self.t
        now = self.data.clock()
        counts: dict[str, int] = await self.data.call(self.data.spool.counts)
        oldest: float = await self.data.call(self.data.spool.oldest_age, now)
        shape: Summary = await self.data.call(
            functools.partial(self.data.spool.summary, QueueFilter(), now=now))
        rows = "".join(
            f'<tr><td><a href="{self._href(request, "/messages", state=s)}">'
            f'{self._state(request, str(s))}</a></td><td>{counts.get(str(s), 0)}</td></tr>'
            for s in State)
        body = (f'<table class="states"><thead><tr><th scope="col">{t(request, "state")}</th>'
                f'<th scope="col">{t(request, "count")}</th></tr></thead><tbody>{rows}'
                f'</tbody></table><p>{t(request, "oldest", h=f"{oldest / 3600:.1f}")}</p>'
                f'<h2>{t(request, "by_domain")}</h2>')
        if not shape.recipients:
            return self._page(request, i18n.text(request[LANG], "queue"),
                              body + f'<p>{t(request, "nothing_waiting")}</p>')
        ages = [f"&lt; {top // 60} min" for top in AGE_BUCKETS] + \
            [f"≥ {AGE_BUCKETS[-1] // 60} min"]
        head = (f'<th scope="col">{t(request, "domain")}</th><th scope="col">'
                f'{t(request, "total")}</th>' + "".join(f'<th scope="col">{a}</th>' for a in ages))
        lines = [(t(request, "all_domains"), [shape.recipients, *shape.by_age], "")] + [
            (html.escape(d), c, "" if d == "(other)" else
             self._href(request, "/messages", domain=d))
            for d, c in shape.by_domain.items()]
        trs = "".join(
            '<tr><th scope="row">' + (f'<a href="{link}">{name}</a>' if link else name)
            + "</th>" + "".join(f"<td>{n or ''}</td>" for n in c) + "</tr>"
            for name, c, link in lines)
        body += (f'<table class="shape"><caption>{t(request, "shape_caption")}</caption>'
                 f'<thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table>')
        return self._page(request, i18n.text(request[LANG], "queue"), body)

    async def quarantine(self, request: web.Request) -> web.StreamResponse:
        entries, total = await self.data.call(self.data.spool.search,
                                              QueueFilter(state=str(State.QUARANTINED)), 200)
        notice = request.query.get("done", "")
        banner = f'<p class="notice" role="status">{html.escape(notice)}</p>' if notice else ""
        if total > len(entries):  # the oldest 200 here; all of them, page by page, there
            every = self._href(request, "/messages", state=str(State.QUARANTINED))
            banner += (f'<p>{self.t(request, "first_of", n=len(entries), total=total)} '
                       f'<a href="{every}">{self.t(request, "see_all")}</a></p>')
        rows = []
        for e in entries:
            reasons = sorted({mask(r.reason) for r in e.recipients
                              if r.state == State.QUARANTINED})
            links = " ".join(
                f'<a href="{self._href(request, f"/quarantine/{e.queue_id}/{a}")}">'
                f'{self.t(request, a)}</a>' for a in ("release", "drop"))
            link = self._href(request, "/messages/" + e.queue_id)
            rows.append(f'<tr><td><a class="mono" href="{link}">'
                        f'{html.escape(e.queue_id)}</a></td><td class="mono">'
                        f'{html.escape(e.message_id)}</td>'
                        f'<td>{html.escape(e.mail_from_domain)}</td><td class="mono">'
                        f'{html.escape("; ".join(reasons))}</td>'
                        f'<td>{self._when(e.received_at)}</td>'
                        f'<td>{links}</td></tr>')
        head = "".join(f'<th scope="col">{self.t(request, k)}</th>' for k in
                       ("queue_id", "message_id", "sender_domain", "why", "received"))
        table = (f'<table><thead><tr>{head}<th scope="col">{self.t(request, "actions")}</th>'
                 f'</tr></thead><tbody>'
                 f'{"".join(rows)}</tbody></table>') if rows else \
            f'<p>{self.t(request, "none")}</p>'
        return self._page(request, i18n.text(request[LANG], "quarantine"), banner + table)

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        qid, action = request.match_info["qid"], request.match_info["action"]
        entry = await self._show(qid)
        if entry is None:
            raise self._not_found(request)
        body = (f'<p>{self.t(request, "confirm_" + action, id=qid)}</p>'
                f'<form method="post" action="{self._href(request, self._act_path(qid, action))}">'
                f'{self._csrf_field(request)}<button type="submit" name="confirm" value="yes">'
                f'{self.t(request, "confirm")}</button> '
                f'<a href="{self._href(request, "/quarantine")}">'
                f'{self.t(request, "cancel")}</a></form>')
        return self._page(request, i18n.text(request[LANG], action), body)

    async def act(self, request: web.Request) -> web.StreamResponse:
        qid, action = request.match_info["qid"], request.match_info["action"]
        op: Operator = request[OPERATOR]
        entry = await self._show(qid)
        if entry is None:
            raise self._not_found(request)
        try:
            if action == "release":
                n = await self.data.call(self.data.spool.release, qid, now=self.data.clock())
                done = i18n.text(request[LANG], "released", id=qid, n=n)
            else:
                await self.data.call(self.data.spool.delete, qid)
                n = len(entry.recipients)
                done = i18n.text(request[LANG], "dropped", id=qid)
        except PasserelleError as exc:
            why = self.t(request, "action_failed", why=str(exc))
            body = f'<p class="error" role="alert">{why}</p>'
            return self._page(request, i18n.text(request[LANG], action), body, status=409)
        await self._journal(entry.message_id, f"console.{action}",
                            {"operator": op.identity, "queue_id": qid, "recipients": n})
        # in the message's trace too, as the command line's release and delete write it
        now = self.data.clock()
        if action == "release":
            await self.data.call(functools.partial(
                events.released, self.data.journal, [entry], operator=op.identity, now=now))
        else:
            await self.data.call(functools.partial(
                events.purged, self.data.journal, [entry], reason="operator",
                operator=op.identity, now=now))
        log.info(f"console.{action}", operator=op.identity, queue_id=qid, outcome="ok")
        if action == "release" and self.data.wake is not None:
            self.data.wake()
        raise web.HTTPSeeOther(self._link(request, "/quarantine", done=done))

    async def domains(self, request: web.Request) -> web.StreamResponse:
        t = self.t
        title = i18n.text(request[LANG], "domains")
        listing = self.data.domain_list() if self.data.domain_list is not None else None
        if listing is None or not listing.entries:
            return self._page(request, title, f'<p>{t(request, "no_list")}</p>')
        generated = listing.generated_at.timestamp()
        age = max(0.0, self.data.clock() - generated) / 3600
        signer = listing.signed_by or i18n.text(request[LANG], "unsigned")
        entries = sorted(listing.entries.values(), key=lambda e: e.ascii_name)
        rows = "".join(
            f'<tr><td>{html.escape(e.name)}</td><td class="mono">'
            f'{html.escape(e.ascii_name)}</td><td class="mono">{html.escape(e.dn)}</td></tr>'
            for e in entries)
        head = "".join(f'<th scope="col">{t(request, k)}</th>'
                       for k in ("domain", "ascii_name", "operator_dn"))
        body = (f'<table class="facts"><tr><th scope="row">{t(request, "generated")}</th><td>'
                f'{self._when(generated)}</td></tr>'
                f'<tr><th scope="row">{t(request, "age")}</th><td>{age:.1f} h</td></tr>'
                f'<tr><th scope="row">{t(request, "signer")}</th><td class="mono">'
                f'{html.escape(signer)}</td></tr>'
                f'<tr><th scope="row">{t(request, "listed")}</th><td>{len(entries)}</td></tr>'
                f'</table><h2>{t(request, "domain_rows")}</h2><table class="domains"><thead><tr>'
                f'{head}</tr></thead><tbody>{rows}</tbody></table>')
        return self._page(request, title, body)

    async def directory(self, request: web.Request) -> web.StreamResponse:
        t = self.t
        query = request.query.get("q", "").strip()[:320]
        form = (f'<form class="search" method="get" action="/directory" role="search">'
                f'<label for="f-q">{t(request, "lookup")}<input id="f-q" name="q" '
                f'value="{html.escape(query)}" required></label>{self._lang_field(request)}'
                f'<button type="submit">{t(request, "search")}</button></form>')
        result = ""
        if query:
            try:
                found = await self.data.call(self._lookup, query)
            except (PasserelleError, OSError) as exc:
                imported = await self.data.call(self._imported)
                why = str(exc) if imported else i18n.text(request[LANG], "dir_missing")
                result = (f'<p class="error" role="alert">'
                          f'{t(request, "dir_unavailable", why=why)}</p>')
            else:
                if not found:
                    result = f'<p>{t(request, "dir_none")}</p>'
                else:
                    head = "".join(f'<th scope="col">{t(request, k)}</th>'
                                   for k in ("type", "address", "name", "details"))
                    rows = "".join(
                        f'<tr><td>{html.escape(e.box_type)}</td><td class="mono">'
                        f'{html.escape(e.address)}</td><td>{html.escape(e.family_name)} '
                        f'{html.escape(e.given_name)}</td><td>'
                        f'{html.escape(e.profession_category_label)} '
                        f'{html.escape(e.pp_id)}</td></tr>'
                        for e in found)
                    result = f'<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        return self._page(request, i18n.text(request[LANG], "directory"), form + result)

    def _imported(self) -> bool:
        """Whether a directory has been imported where the settings say (SQLite file or
        PostgreSQL database)."""
        from gateway.directory.pgstore import open_directory

        target = self.data.directory
        if target is None or (isinstance(target, Path) and not target.exists()):
            return False
        try:
            store = open_directory(target)
        except PasserelleError:
            return False
        try:
            return store.count() > 0
        except (PasserelleError, sqlite3.Error, psycopg.Error):
            return False
        finally:
            store.close()

    def _lookup(self, query: str) -> list[Any]:
        from gateway.directory.pgstore import open_directory

        target = self.data.directory
        if target is None or not self._imported():
            raise OSError("no directory imported")
        store = open_directory(target)
        try:
            if "@" in query:
                return list(store.find_by_address(query))
            if query.isdigit():
                return list(store.find_by_rpps(query))
            found = list(store.find_by_name(query))  # a family name ("Le Goff" too)
            family, _, given = query.rpartition(" ")
            if not found and family:  # "Leroy Anne": the family name, then the given name
                found = list(store.find_by_name(family, given))
            return found
        finally:
            store.close()


def _see_other(location: str) -> web.Response:
    """A 303 that carries cookies (an HTTPException is raised, not returned)."""
    return web.Response(status=303, headers={"Location": location})


def _describe(record: dict[str, Any]) -> list[str]:
    """One line per fact of a journal record: what was done, with what tool, with what
    outcome — the record holds ids, digests, tools and outcomes, never content; an address
    in it is shown by its domain (Message-IDs, under their keys, as they are).  The trace's
    ``details`` are facts of the step like the others."""
    facts = {k: v for k, v in record.items() if k not in ("at", "stage", "details")}
    details = record.get("details")
    if isinstance(details, dict):
        facts.update({k: v for k, v in details.items() if k not in facts})
    elif details not in (None, "", [], {}):
        facts["details"] = details
    return [f"{key}: {_flat(facts[key], key)}" for key in sorted(facts)
            if facts[key] not in (None, "", [], {})]


def _flat(value: Any, key: str) -> str:
    """A fact's value on one line: a list comma-separated, a mapping ``k=v; …``."""
    if isinstance(value, dict):
        return "; ".join(f"{k}={_flat(v, str(k))}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_flat(v, key) for v in value)
    return _short(value, key)


_QUEUE_ID = re.compile(r"^[0-9A-Za-z]{8,40}$")
_IDS = re.compile(r"(^|_)(message_id|in_reply_to|references|original_id|notice_id|id)$")


def _short(value: Any, key: str = "") -> str:
    text = str(value) if _IDS.search(key) else mask(str(value))
    return text if len(text) <= 160 else text[:157] + "…"


_ADDRESS = re.compile(
    r"(<?)(?:\"[^\"\r\n]*\"|(?:[\w.+!#$%&*/?^`{|}~-]|(?<=\w)'(?=\w))+)"  # the local part
    r"@([\w-]+(?:\.[\w-]+)+)")  # the domain (Unicode too)


def mask(text: str) -> str:
    """Addresses cut to their domain (``…@medical33.example``): a page shows whom a message
    concerns only by its domain (in a peer's reply, a quarantine's reason, a trace step)."""
    return _ADDRESS.sub(lambda m: f"{m.group(1)}…@{m.group(2)}", text)


def _at(iso: str) -> str:
    """A journal time (ISO 8601) as the pages write times, to the millisecond."""
    try:
        when = datetime.fromisoformat(iso).astimezone(UTC)
    except ValueError:
        return iso
    return when.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"
