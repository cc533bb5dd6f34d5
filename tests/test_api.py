"""Chapter 9: the HTTP server for real. uvicorn runs in a subprocess on 127.0.0.1 (a free port) serving the `ci`
checkpoint of chapter 7; every request goes over the loopback with httpx. No mocks, no in-process test client."""

import concurrent.futures
import math

import httpx
import pytest

from dsmini_helpers.api import LIMITS, running_server

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def url():
    from dsmini_helpers.runs import get_checkpoint

    with running_server(get_checkpoint("ci")) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def client(url):
    with httpx.Client(base_url=url, timeout=60) as c:
        yield c


def detail_of(r: httpx.Response, status: int) -> str:
    """Assert the status and that the body carries a readable sentence in `detail`; return it."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    detail = r.json()["detail"]
    assert isinstance(detail, str) and len(detail) >= 10, detail
    return detail


# --- happy paths ---------------------------------------------------------------------------------------------------
def test_health(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["device"] == "cpu" and body["parameters"] > 1000
    assert body["model"].startswith("step-") and body["context_length"] > 0 and body["vocab_size"] > 100


def test_generate_seed_example_and_knobs(client):
    r = client.post("/generate", json={"prompt": "Deep learning is"})  # the seed's example, as is
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["text"].startswith("Deep learning is") and body["new_tokens"] == 16 and body["steps"] == 16
    assert client.post("/generate", json={"prompt": "Deep learning is"}).json() == body  # greedy: deterministic
    knobs = {"prompt": "The city", "max_new_tokens": 8, "steps": 4, "block_length": 4, "temperature": 0.9,
             "top_k": 10, "remasking": "random", "seed": 7}
    a, b = client.post("/generate", json=knobs), client.post("/generate", json=knobs)
    assert a.status_code == 200 and a.json() == b.json() and a.json()["new_tokens"] == 8
    assert client.post("/generate", json={"prompt": "x", "max_new_tokens": 3, "steps": 1}).json()["steps"] == 1


def test_predict(client):
    r = client.post("/predict", json={"text": "Paris is the [MASK] of [MASK].", "top_k": 3})
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    assert len(masks) == 2 and all(len(m) == 3 for m in masks)
    for cands in masks:
        probs = [c["probability"] for c in cands]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
    assert "[MASK]" not in r.json()["filled"]
    assert len(client.post("/predict", json={"text": "[MASK]"}).json()["masks"][0]) == 5  # default top_k


def test_embed(client):
    r = client.post("/embed", json={"texts": ["A cat.", "A dog sat on the rug.", "Markets fell."]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["embeddings"]) == 3 and body["pooling"] == "mean"
    for v in body["embeddings"]:
        assert len(v) == body["dim"] and abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-4
    cls = client.post("/embed", json={"texts": ["A cat."], "pooling": "cls"}).json()
    assert cls["pooling"] == "cls" and cls["embeddings"][0] != body["embeddings"][0]


def test_summarize(client):
    text = ("Rivers carry water to the sea. Many cities grew along rivers. The sea is salty. "
            "Trade on rivers helped cities grow. Bread is made from flour.")
    r = client.post("/summarize", json={"text": text, "num_sentences": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["sentences"]) == 2 and body["indices"] == sorted(body["indices"])
    assert all(s in text for s in body["sentences"]) and body["summary"] == " ".join(body["sentences"])
    assert len(body["scores"]) == 5


def test_docs_and_openapi(client):
    docs = client.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"] and "swagger" in docs.text.lower()
    spec = client.get("/openapi.json").json()
    assert {"/generate", "/predict", "/embed", "/summarize", "/health"} <= set(spec["paths"])
    props = spec["components"]["schemas"]["GenerateRequest"]["properties"]
    assert props["max_new_tokens"]["maximum"] == LIMITS["max_new_tokens"]


# --- bad input: always a 4xx with a sentence, never a 5xx ------------------------------------------------------------
LONG_TOKENS = "a " * 999  # under the character limit, far over the ci model's context in tokens

BAD = [
    # (name, path, body (dict -> JSON, bytes -> raw), status, words expected in detail)
    ("malformed json", "/generate", b'{"prompt": "hi"', 422, ["not valid JSON"]),
    ("malformed json predict", "/predict", b"{text: [MASK]}", 422, ["not valid JSON"]),
    ("not an object", "/embed", b"[1, 2, 3]", 422, ["JSON object"]),
    ("null body", "/summarize", b"null", 422, ["JSON object"]),
    ("missing field", "/generate", {}, 422, ["prompt", "required"]),
    ("wrong type prompt", "/generate", {"prompt": 5}, 422, ["prompt", "string"]),
    ("wrong type tokens", "/generate", {"prompt": "hi", "max_new_tokens": "many"}, 422, ["max_new_tokens"]),
    ("float tokens", "/generate", {"prompt": "hi", "max_new_tokens": 1.5}, 422, ["max_new_tokens"]),
    ("texts not a list", "/embed", {"texts": "one string"}, 422, ["texts"]),
    ("top_k not int", "/predict", {"text": "[MASK]", "top_k": "x"}, 422, ["top_k"]),
    ("bad remasking", "/generate", {"prompt": "hi", "remasking": "greedy"}, 422, ["remasking"]),
    ("misspelt field", "/generate", {"prompt": "hi", "max_tokens": 5}, 422, ["max_tokens"]),
    ("NaN temperature", "/generate", b'{"prompt": "hi", "temperature": NaN}', 422, ["temperature"]),
    ("empty prompt", "/generate", {"prompt": ""}, 422, ["prompt"]),
    ("blank prompt", "/generate", {"prompt": "  \n\t "}, 422, ["empty"]),
    ("empty text list", "/embed", {"texts": []}, 422, ["texts"]),
    ("empty text in list", "/embed", {"texts": ["ok", " "]}, 422, ["empty"]),
    ("empty predict", "/predict", {"text": ""}, 422, ["text"]),
    ("empty summary", "/summarize", {"text": ""}, 422, ["text"]),
    ("missing [MASK]", "/predict", {"text": "Paris is the capital of France."}, 422, ["[MASK]"]),
    ("[MASK] in prompt", "/generate", {"prompt": "a [MASK] b"}, 422, ["[MASK]"]),
    ("prompt too long", "/generate", {"prompt": "x" * (LIMITS["max_chars"] + 1)}, 422, ["at most"]),
    ("prompt over context", "/generate", {"prompt": LONG_TOKENS}, 422, ["context"]),
    ("predict over context", "/predict", {"text": LONG_TOKENS + "[MASK]"}, 422, ["at most"]),
    ("too many new tokens", "/generate", {"prompt": "hi", "max_new_tokens": LIMITS["max_new_tokens"] + 1}, 422,
     ["max_new_tokens"]),
    ("zero steps", "/generate", {"prompt": "hi", "steps": 0}, 422, ["steps"]),
    ("too many steps", "/generate", {"prompt": "hi", "steps": LIMITS["max_steps"] + 1}, 422, ["steps"]),
    ("top_k too big", "/predict", {"text": "[MASK]", "top_k": LIMITS["max_top_k"] + 1}, 422, ["top_k"]),
    ("too many texts", "/embed", {"texts": ["a"] * (LIMITS["max_texts"] + 1)}, 422, ["texts"]),
    ("too many sentences", "/summarize", {"text": "Yes. " * (LIMITS["max_sentences"] + 1)}, 422, ["sentences"]),
    ("zero sentences", "/summarize", {"text": "A. B.", "num_sentences": 0}, 422, ["num_sentences"]),
    ("huge body", "/embed", {"texts": ["x" * 1000] * 300}, 413, ["limit"]),
    ("lone surrogate", "/generate", b'{"prompt": "\\ud800 hi"}', 422, ["prompt"]),
    ("surrogate in a key", "/generate", b'{"prompt": "hi", "\\udfff": 1}', 422, []),
    ("invalid utf-8 bytes", "/embed", b'{"texts": ["\xff\xfe"]}', 400, ["UTF-8"]),
]


@pytest.mark.parametrize("name, path, body, status, words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx(client, name, path, body, status, words):
    r = client.post(path, content=body, headers=JSON) if isinstance(body, bytes) else client.post(path, json=body)
    detail = detail_of(r, status)
    for word in words:
        assert word.lower() in detail.lower(), detail


def test_huge_streamed_body_without_length_is_413(client):
    def chunks():
        yield b'{"texts": ["'
        for _ in range(40):
            yield b"x" * 10_000
        yield b'"]}'

    r = client.post("/embed", content=chunks(), headers=JSON)  # chunked: no Content-Length to check up front
    assert "limit" in detail_of(r, 413)


@pytest.mark.parametrize("text", [
    "café naïve 東京 Ελλάδα", "emoji 😀🚀 and ZWJ 👩‍💻", "right-to-left \u202e override \u202c",
    "combining e\u0301\u0301", "zero\u200bwidth", "nul \x00 byte", "\ufeffBOM first", "tab\tand\nnew line",
    "[MASK][MASK][MASK]",
])
def test_odd_unicode_is_handled(client, text):
    for path, body in [("/embed", {"texts": [text]}), ("/generate", {"prompt": text, "max_new_tokens": 2}),
                       ("/predict", {"text": text + " [MASK]"}), ("/summarize", {"text": text})]:
        r = client.post(path, json=body)
        if "[MASK]" in text and path == "/generate":
            assert r.status_code == 422
        else:
            assert r.status_code == 200, (path, text, r.text)


def test_wrong_method_and_unknown_path(client):
    assert client.get("/generate").status_code == 405
    assert client.post("/nope", json={}).status_code == 404
    r = client.post("/generate", content=b"prompt=hi", headers={"content-type": "text/plain"})
    assert 400 <= r.status_code < 500


# --- many clients at once ----------------------------------------------------------------------------------------
def test_fifty_concurrent_requests_all_answered_correctly(client, url):
    requests = []
    for i in range(50):
        kind = i % 3
        if kind == 0:
            requests.append(("/embed", {"texts": [f"Sentence {i} about rivers."]}))
        elif kind == 1:
            requests.append(("/predict", {"text": f"Number {i} is a [MASK] number.", "top_k": 2}))
        else:
            requests.append(("/generate", {"prompt": f"Story {i}:", "max_new_tokens": 4, "steps": 2}))
    expected = [client.post(p, json=b).json() for p, b in requests]  # one at a time

    def call(i):
        with httpx.Client(base_url=url, timeout=120) as c:
            return c.post(requests[i][0], json=requests[i][1])

    with concurrent.futures.ThreadPoolExecutor(max_workers=50) as pool:
        answers = list(pool.map(call, range(50)))
    assert [r.status_code for r in answers] == [200] * 50
    for i, r in enumerate(answers):
        got, want = r.json(), expected[i]
        if "embeddings" in want:
            assert max(abs(a - b) for a, b in zip(got["embeddings"][0], want["embeddings"][0])) < 1e-4
        elif "masks" in want:
            assert [c["id"] for c in got["masks"][0]] == [c["id"] for c in want["masks"][0]]
        else:
            assert got == want


# --- property-based: schemathesis against /openapi.json (bounded) -------------------------------------------------
def test_schemathesis_finds_no_server_error(url):
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 5
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations
                          for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)])
    seen = []

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def no_server_error(case):
        response = case.call(base_url=url, timeout=60)
        seen.append(response.status_code)
        assert response.status_code < 500, f"{case.method} {case.path} {case.body!r} -> {response.text[:300]}"

    no_server_error()
    assert any(s == 200 for s in seen) and any(400 <= s < 500 for s in seen)  # both kinds were exercised


# --- no model ------------------------------------------------------------------------------------------------------
def test_without_a_model_every_endpoint_says_how_to_train_one(tmp_path):
    with running_server(tmp_path / "no-such-checkpoint") as base_url, httpx.Client(base_url=base_url) as c:
        for method, path, body in [("GET", "/health", None), ("POST", "/generate", {"prompt": "hi"}),
                                   ("POST", "/predict", {"text": "[MASK]"}), ("POST", "/embed", {"texts": ["a"]}),
                                   ("POST", "/summarize", {"text": "A. B."})]:
            detail = detail_of(c.request(method, path, json=body), 503)
            assert "python -m dsmini_helpers.pretrain" in detail and "DSMINI_CHECKPOINT" in detail
        assert c.get("/docs").status_code == 200  # the documentation still works
