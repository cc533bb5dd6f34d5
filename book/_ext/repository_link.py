"""Sphinx extension (hand-written plumbing): `{{ repository_url }}` in a page becomes `repository.url` of _config.yml.

The repository's address is set once, in _config.yml (Jupyter Book passes it to the theme as
`html_theme_options["repository_url"]`, which also drives the repository button). The set-up page's
`git clone` commands sit in code blocks, where MyST substitutions are not applied, so we replace the token in the
page's source before it is parsed.
"""

from __future__ import annotations

from sphinx.application import Sphinx
from sphinx.errors import ConfigError

TOKEN = "{{ repository_url }}"


def repository_url(app: Sphinx) -> str:
    """The repository's URL from the one setting, or a build error that says where to set it."""
    url = (app.config.html_theme_options or {}).get("repository_url")
    if not url:
        raise ConfigError("set repository.url in _config.yml: the set-up page's `git clone` needs it")
    return url.rstrip("/")


def _replace(app: Sphinx, docname: str, source: list[str]) -> None:
    if TOKEN in source[0]:
        source[0] = source[0].replace(TOKEN, repository_url(app))


def setup(app: Sphinx) -> dict:
    app.connect("source-read", _replace)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
