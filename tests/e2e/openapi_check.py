"""Checks HTTP answers against docs/openapi.json, the OpenAPI 3.1 description
of the REST API. fc_helpers calls check() on every answer its HTTP helpers
(Server.request, KeepAliveClient) receive, so the whole e2e suite keeps the
document true: an answer whose route, method or status the document does not
list, whose Content-Type it does not name, or whose JSON body does not match
its schema (JSON Schema draft 2020-12, python3-jsonschema) fails the test
that got it. Paths and methods the document does not list may only get the
errors of its x-flowcast-any-request and x-flowcast-unrouted (404, 405,
401, ...); a documented one only its own and x-flowcast-any-request."""
import json
import os
import re
from urllib.parse import urlsplit

import jsonschema

SPEC_PATH = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "openapi.json")
METHODS = ("get", "head", "post", "put", "patch", "delete", "options")


class SpecError(AssertionError):
    pass


class Spec:
    def __init__(self, path=SPEC_PATH):
        with open(path, encoding="utf-8") as f:
            self.doc = json.load(f)
        self.resolver = jsonschema.RefResolver("", self.doc)
        self.validators = {}
        # Concrete paths first, then by fewer parameters: /api/openapi.json
        # before /{asset}, /api/workflows/{id}/history before nothing else.
        routes = []
        for tmpl in self.doc["paths"]:
            names = re.findall(r"{([^}]+)}", tmpl)
            rx = "^" + re.sub(r"\\{[^}]+\\}", "([^/]+)", re.escape(tmpl)) + "$"
            routes.append((len(names), tmpl, re.compile(rx), names))
        routes.sort(key=lambda r: r[0])
        self.routes = routes

    def deref(self, obj):
        while isinstance(obj, dict) and "$ref" in obj:
            obj = self.resolver.resolve(obj["$ref"])[1]
        return obj

    def route(self, path):
        """(template, path parameters) of the documented path, or (None, {}).
        A parameter must also match its schema (an asset name pattern)."""
        for _, tmpl, rx, names in self.routes:
            m = rx.match(path)
            if not m:
                continue
            params = dict(zip(names, m.groups()))
            if all(self._param_ok(tmpl, n, v) for n, v in params.items()):
                return tmpl, params
        return None, {}

    def _param_ok(self, tmpl, name, value):
        item = self.doc["paths"][tmpl]
        for p in item.get("parameters", []):
            p = self.deref(p)
            if p["in"] == "path" and p["name"] == name:
                return self.validator(p["schema"]).is_valid(value)
        return True

    def validator(self, schema):
        key = json.dumps(schema, sort_keys=True)
        v = self.validators.get(key)
        if v is None:
            v = jsonschema.Draft202012Validator(schema, resolver=self.resolver)
            self.validators[key] = v
        return v

    def response_for(self, method, path, status):
        """The response object the document gives for this answer; raises
        SpecError when it gives none."""
        tmpl, _ = self.route(path)
        op = self.doc["paths"][tmpl].get(method.lower()) if tmpl else None
        anywhere = dict(self.doc.get("x-flowcast-any-request", {}))
        if op is None:
            anywhere.update(self.doc.get("x-flowcast-unrouted", {}))
        if op is not None and str(status) in op["responses"]:
            return self.deref(op["responses"][str(status)]), tmpl
        if str(status) in anywhere:
            return self.deref(anywhere[str(status)]), tmpl
        where = "%s %s" % (method, tmpl or path)
        if op is None:
            raise SpecError("openapi: %s is not documented and got %d (only %s may answer it)"
                            % (where, status, ", ".join(sorted(anywhere))))
        raise SpecError("openapi: %s answered %d, not a status docs/openapi.json lists for it (%s)"
                        % (where, status, ", ".join(sorted(op["responses"]))))

    def check(self, method, target, status, headers, body):
        """Validates one answer (headers: dict with lower-case names, body:
        bytes) to method on target (path and query). Raises SpecError."""
        path = urlsplit(target).path
        resp, tmpl = self.response_for(method, path, status)
        where = "%s %s -> %d" % (method, tmpl or path, status)
        content = resp.get("content")
        if method.upper() == "HEAD" or status in (101, 204, 304):
            if body:
                raise SpecError("openapi: %s has a body" % where)
            return
        if not content:
            if body:
                raise SpecError("openapi: %s has a body the document does not describe" % where)
            return
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        media = content.get(ctype)
        if media is None:
            raise SpecError("openapi: %s has Content-Type %r; docs/openapi.json lists %s"
                            % (where, ctype, ", ".join(content)))
        if ctype != "application/json" or "schema" not in media:
            return
        try:
            doc = json.loads(body.decode("utf-8"))
        except ValueError as e:
            raise SpecError("openapi: %s: body is not JSON (%s): %r" % (where, e, body[:200]))
        errors = sorted(self.validator(media["schema"]).iter_errors(doc), key=lambda e: e.path)
        if errors:
            e = errors[0]
            raise SpecError("openapi: %s: body does not match its schema at %s: %s; body %r"
                            % (where, "/".join(str(p) for p in e.absolute_path) or "(root)",
                               e.message, body[:300]))


_spec = None


def spec():
    global _spec
    if _spec is None:
        _spec = Spec()
    return _spec


def check(method, target, status, headers, body):
    spec().check(method, target, status, headers, body)
