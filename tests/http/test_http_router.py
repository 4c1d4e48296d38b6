"""Router: pattern compilation and matching (pure), then dispatch with middleware and mounts."""

from __future__ import annotations

import uuid

import pytest

from trio_upgrade.http import (
    HTTPError,
    MethodNotAllowed,
    NotFound,
    Request,
    Response,
    RouteMatch,
    Router,
    Takeover,
)
from trio_upgrade.http._router import compile_pattern


async def ok(request: Request) -> Response:
    return Response.text("ok")


async def other(request: Request) -> Response:
    return Response.text("other")


# Patterns ---------------------------------------------------------------------


def test_compile_pattern_converters() -> None:
    regex, converters = compile_pattern("/u/{id:int}/{name}/{f:float}")
    m = regex.match("/u/42/bob/1.5")
    assert m is not None
    assert m.groupdict() == {"id": "42", "name": "bob", "f": "1.5"}
    assert converters["id"]("42") == 42
    assert converters["name"] is str
    assert regex.match("/u/x/bob/1.5") is None
    assert regex.match("/u/42/bob/1.5/extra") is None


def test_compile_pattern_escapes_literal_regex_characters() -> None:
    regex, _ = compile_pattern("/a.b/{x}")
    assert regex.match("/a.b/1")
    assert not regex.match("/aXb/1")


@pytest.mark.parametrize(
    "pattern",
    ["no-slash", "/x/{id:nope}", "/x/{id}/{id}", "/x/{id", "/x/id}", "/x/{}"],
)
def test_compile_pattern_rejects_malformed(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_pattern(pattern)


def test_add_route_validates_static_patterns_too() -> None:
    with pytest.raises(ValueError):
        Router().add_route("relative", ok)


# Matching ---------------------------------------------------------------------


def test_static_route_matches_exactly() -> None:
    router = Router()
    router.add_route("/about", ok)
    found = router.match("GET", "/about")
    assert isinstance(found, RouteMatch)
    assert found.handler is ok and found.params == {}
    assert found.route is not None and found.route.pattern == "/about"
    assert isinstance(router.match("GET", "/about/"), NotFound)
    assert isinstance(router.match("GET", "/About"), NotFound)


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("/users/{id:int}", "/users/42", {"id": 42}),
        ("/users/{id:int}", "/users/007", {"id": 7}),
        ("/p/{x:float}", "/p/2.5", {"x": 2.5}),
        ("/p/{x:float}", "/p/3", {"x": 3.0}),
        ("/s/{slug}", "/s/hello-world", {"slug": "hello-world"}),
        ("/s/{slug:str}", "/s/a b", {"slug": "a b"}),
        ("/static/{path:path}", "/static/css/site.css", {"path": "css/site.css"}),
        ("/static/{path:path}", "/static/", {"path": ""}),
        (
            "/o/{u:uuid}",
            "/o/12345678-1234-5678-1234-567812345678",
            {"u": uuid.UUID("12345678-1234-5678-1234-567812345678")},
        ),
    ],
)
def test_converters_capture_and_convert(
    pattern: str, path: str, expected: dict[str, object]
) -> None:
    router = Router()
    router.add_route(pattern, ok)
    found = router.match("GET", path)
    assert isinstance(found, RouteMatch)
    assert found.params == expected
    assert [type(v) for v in found.params.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize(
    ("pattern", "path"),
    [
        ("/users/{id:int}", "/users/abc"),
        ("/users/{id:int}", "/users/-1"),
        ("/users/{id:int}", "/users/"),
        ("/p/{x:float}", "/p/1e5"),
        ("/s/{slug}", "/s/a/b"),
        ("/o/{u:uuid}", "/o/not-a-uuid"),
        ("/static/{path:path}", "/staticfile"),
    ],
)
def test_converters_reject(pattern: str, path: str) -> None:
    router = Router()
    router.add_route(pattern, ok)
    assert isinstance(router.match("GET", path), NotFound)


def test_dynamic_routes_are_tried_in_registration_order() -> None:
    router = Router()
    router.add_route("/items/{id:int}", ok)
    router.add_route("/items/{name}", other)
    first = router.match("GET", "/items/1")
    second = router.match("GET", "/items/x")
    assert isinstance(first, RouteMatch) and first.handler is ok
    assert isinstance(second, RouteMatch) and second.handler is other


def test_static_route_wins_over_a_pattern_registered_earlier() -> None:
    router = Router()
    router.add_route("/users/{name}", other)
    router.add_route("/users/me", ok)
    found = router.match("GET", "/users/me")
    assert isinstance(found, RouteMatch) and found.handler is ok


def test_every_get_route_answers_head() -> None:
    router = Router()
    router.add_route("/a", ok)
    router.add_route("/b/{x}", ok)
    assert isinstance(router.match("HEAD", "/a"), RouteMatch)
    assert isinstance(router.match("HEAD", "/b/1"), RouteMatch)
    router.add_route("/c", ok, methods=["POST"])
    assert isinstance(router.match("HEAD", "/c"), MethodNotAllowed)


def test_method_not_allowed_lists_every_method_of_the_path() -> None:
    router = Router()
    router.add_route("/a", ok, methods=["GET"])
    router.add_route("/a", other, methods=["post", "PUT"])
    router.add_route("/{x}", other, methods=["DELETE"])
    found = router.match("PATCH", "/a")
    assert found == MethodNotAllowed(frozenset({"GET", "HEAD", "POST", "PUT", "DELETE"}))
    put = router.match("PUT", "/a")
    assert isinstance(put, RouteMatch) and put.handler is other


def test_not_found_when_no_route_has_the_path() -> None:
    router = Router()
    router.add_route("/a", ok, methods=["POST"])
    assert router.match("GET", "/b") == NotFound()


def test_decorators_register_methods_and_return_the_handler() -> None:
    router = Router()
    for method in ("get", "post", "put", "patch", "delete"):
        decorator = getattr(router, method)

        async def handler(request: Request) -> Response:
            return Response()

        assert decorator(f"/{method}")(handler) is handler
        found = router.match(method.upper(), f"/{method}")
        assert isinstance(found, RouteMatch) and found.handler is handler

    @router.route("/multi", methods=["GET", "POST"], name="multi")
    async def multi(request: Request) -> Response:
        return Response()

    assert isinstance(router.match("POST", "/multi"), RouteMatch)
    assert router.url_path_for("multi") == "/multi"


def test_routes_lists_each_route_once_in_order() -> None:
    router = Router()
    a = router.add_route("/a", ok, methods=["GET", "POST"])
    b = router.add_route("/b/{x}", ok)
    assert router.routes == [a, b]
    assert a.methods == frozenset({"GET", "HEAD", "POST"})


# Mounts -----------------------------------------------------------------------


def test_mount_matches_the_rest_of_the_path_in_the_mounted_router() -> None:
    api = Router()
    api.add_route("/users/{id:int}", ok)
    api.add_route("/", other)
    root = Router()
    root.mount("/api", api)
    found = root.match("GET", "/api/users/3")
    assert isinstance(found, RouteMatch) and found.params == {"id": 3}
    index = root.match("GET", "/api")
    assert isinstance(index, RouteMatch) and index.handler is other
    assert isinstance(root.match("GET", "/apix/users/3"), NotFound)
    assert isinstance(root.match("POST", "/api/users/3"), MethodNotAllowed)


def test_mounting_a_plain_handler_matches_everything_under_the_prefix() -> None:
    root = Router()
    root.mount("/legacy", ok)
    assert root.match("DELETE", "/legacy/x/y") == RouteMatch(ok, {})
    assert root.match("GET", "/legacy") == RouteMatch(ok, {})
    # The prefix ends at a segment boundary.
    assert isinstance(root.match("GET", "/legacyx"), NotFound)


@pytest.mark.parametrize("prefix", ["api", "/api/", "/"])
def test_mount_prefix_must_start_and_not_end_with_slash(prefix: str) -> None:
    with pytest.raises(ValueError):
        Router().mount(prefix, Router())


# url_path_for -----------------------------------------------------------------


def test_url_path_for_fills_parameters_and_searches_mounts() -> None:
    api = Router()
    api.add_route("/users/{id:int}/files/{path:path}", ok, name="user_file")
    root = Router()
    root.add_route("/", ok, name="home")
    root.mount("/api", api)
    assert root.url_path_for("home") == "/"
    assert root.url_path_for("user_file", id=7, path="a/b.txt") == "/api/users/7/files/a/b.txt"
    with pytest.raises(KeyError, match="'id'"):
        root.url_path_for("user_file", path="x")
    with pytest.raises(LookupError):
        root.url_path_for("nope")


# Dispatch ---------------------------------------------------------------------


async def test_dispatch_sets_path_params_and_calls_the_handler() -> None:
    router = Router()

    @router.get("/users/{id:int}")
    async def user(request: Request) -> Response:
        return Response.json(request.path_params)

    response = await router(Request("GET", "/users/5?x=1"))
    assert isinstance(response, Response)
    assert response.body == b'{"id":5}'


async def test_dispatch_answers_404_and_405_with_allow() -> None:
    router = Router()
    router.add_route("/a", ok, methods=["GET", "PUT"])
    missing = await router(Request("GET", "/b"))
    assert isinstance(missing, Response) and missing.status == 404
    assert missing.body == b"404 Not Found\n"
    wrong = await router(Request("DELETE", "/a"))
    assert isinstance(wrong, Response) and wrong.status == 405
    assert wrong.headers["allow"] == "GET, HEAD, PUT"


async def test_dispatch_matches_the_decoded_path() -> None:
    router = Router()
    router.add_route("/files/{name}", ok)
    response = await router(Request("GET", "/files/a%20b"))
    assert isinstance(response, Response) and response.status == 200


async def test_http_error_from_a_handler_becomes_its_response() -> None:
    router = Router()

    @router.get("/teapot")
    async def teapot(request: Request) -> Response:
        raise HTTPError(418, "short and stout", headers=[("x-pot", "1")])

    response = await router(Request("GET", "/teapot"))
    assert isinstance(response, Response)
    assert response.status == 418
    assert response.body == b"short and stout\n"
    assert response.headers["x-pot"] == "1"


async def test_middleware_runs_outermost_first_around_404s_too() -> None:
    calls: list[str] = []

    async def first(request: Request, call_next):  # type: ignore[no-untyped-def]
        calls.append("first>")
        response = await call_next(request)
        calls.append("<first")
        assert isinstance(response, Response)
        response.headers.add("x-mw", "first")
        return response

    async def second(request: Request, call_next):  # type: ignore[no-untyped-def]
        calls.append("second>")
        request.state["user"] = "ann"
        response = await call_next(request)
        calls.append("<second")
        return response

    router = Router(middleware=[first])
    router.middleware(second)

    @router.get("/")
    async def index(request: Request) -> Response:
        calls.append("handler")
        return Response.text(request.state["user"])

    response = await router(Request("GET", "/"))
    assert calls == ["first>", "second>", "handler", "<second", "<first"]
    assert isinstance(response, Response) and response.body == b"ann"
    missing = await router(Request("GET", "/missing"))
    assert isinstance(missing, Response) and missing.status == 404
    assert missing.headers["x-mw"] == "first"


async def test_middleware_can_answer_without_calling_next() -> None:
    router = Router()
    router.add_route("/", ok)

    async def deny(request: Request, call_next):  # type: ignore[no-untyped-def]
        return Response.text("no", status=403)

    router.add_middleware(deny)
    response = await router(Request("GET", "/"))
    assert isinstance(response, Response) and response.status == 403


async def test_middleware_added_after_first_request_is_used() -> None:
    router = Router()
    router.add_route("/", ok)
    await router(Request("GET", "/"))

    async def tag(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.set("x-late", "yes")
        return response

    router.add_middleware(tag)
    response = await router(Request("GET", "/"))
    assert isinstance(response, Response) and response.headers["x-late"] == "yes"


async def test_mounted_router_sees_root_path_and_runs_its_own_middleware() -> None:
    seen: list[tuple[str, str, str]] = []
    inner = Router()

    async def inner_mw(request: Request, call_next):  # type: ignore[no-untyped-def]
        response = await call_next(request)
        response.headers.set("x-inner", "1")
        return response

    inner.add_middleware(inner_mw)

    @inner.get("/items/{id:int}")
    async def item(request: Request) -> Response:
        seen.append((request.path, request.root_path, repr(request.path_params)))
        return Response.text("item")

    v1 = Router()
    v1.mount("/v1", inner)
    root = Router()
    root.mount("/api", v1)
    response = await root(Request("GET", "/api/v1/items/3"))
    assert isinstance(response, Response) and response.body == b"item"
    assert response.headers["x-inner"] == "1"
    assert seen == [("/api/v1/items/3", "/api/v1", "{'id': 3}")]
    missing = await root(Request("GET", "/api/v1/nothing"))
    assert isinstance(missing, Response) and missing.status == 404
    assert missing.headers["x-inner"] == "1"


async def test_a_handler_may_return_a_takeover() -> None:
    class Tunnel:
        async def take_over(self, stream, prefetched, request):  # type: ignore[no-untyped-def]
            pass

    router = Router()

    @router.route("/t", methods=["CONNECT"])
    async def tunnel(request: Request) -> Takeover:
        return Tunnel()

    result = await router(Request("CONNECT", "/t"))
    assert isinstance(result, Takeover)
