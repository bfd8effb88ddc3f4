"""The browsable KD Atlas site: jinja2 templates -> markdown -> ``mkdocs build --strict``.

Only this subpackage runs mkdocs (as a subprocess); ``kbtool`` itself never imports it.
Entry points: ``build_site(kb_or_root, out)``, ``serve_site(site_dir, port)`` and
``serve(root, port, out)``.
"""

from kbtool.site.build import BuildResult, SiteBuildError, build_site
from kbtool.site.serve import serve, serve_site, start_server

__all__ = ["BuildResult", "SiteBuildError", "build_site", "serve", "serve_site", "start_server"]
