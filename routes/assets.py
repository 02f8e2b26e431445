"""Jinja helper that turns a vite entry name into the tags of its built, hashed files."""

import json
import os
import threading

from flask import Flask, current_app, url_for
from markupsafe import Markup

MANIFEST_PATH = os.path.join("dist", ".vite", "manifest.json")


class ViteManifest:
    """The vite build manifest, read once (re-read when it changes in debug mode)."""

    def __init__(self, static_folder: str) -> None:
        """Remember where the manifest lives; nothing is read yet."""
        self.path = os.path.join(static_folder, MANIFEST_PATH)
        self._lock = threading.Lock()
        self._entries: dict | None = None
        self._mtime: float | None = None

    def entries(self, reload_if_changed: bool = False) -> dict:
        """Return the parsed manifest, reading it on first use or when it changed and reloading is allowed."""
        with self._lock:
            if self._entries is None or reload_if_changed:
                try:
                    mtime = os.stat(self.path).st_mtime
                except FileNotFoundError:
                    raise RuntimeError(
                        f"Front-end build missing: {self.path} not found. Run `make frontend` to build it."
                    ) from None
                if self._entries is None or mtime != self._mtime:
                    with open(self.path, encoding="utf-8") as fh:
                        self._entries = json.load(fh)
                    self._mtime = mtime
            return self._entries

    def files(self, entry: str, reload_if_changed: bool = False) -> tuple[list[str], list[str], list[str]]:
        """Return (css, preload chunks, entry script) paths under dist/ for an entry, imports included."""
        entries = self.entries(reload_if_changed)
        if entry not in entries:
            known = ", ".join(sorted(k for k, v in entries.items() if v.get("isEntry")))
            raise RuntimeError(f"Unknown front-end entry {entry!r} (built entries: {known}). Run `make frontend`.")
        css: list[str] = []
        preload: list[str] = []
        seen: set[str] = set()

        def visit(key: str) -> None:
            if key in seen:
                return
            seen.add(key)
            chunk = entries[key]
            for imported in chunk.get("imports", []):
                visit(imported)
            for file in chunk.get("css", []):
                if file not in css:
                    css.append(file)
            if key != entry:
                preload.append(chunk["file"])

        visit(entry)
        return css, preload, [entries[entry]["file"]]


def vite_assets(entry: str) -> Markup:
    """Return the <link> and <script type="module"> tags for a vite entry such as "src/main.js"."""
    manifest: ViteManifest = current_app.extensions["vite_manifest"]
    css, preload, scripts = manifest.files(entry, reload_if_changed=current_app.debug)

    def url(file: str) -> str:
        return url_for("static", filename=f"dist/{file}")

    # Markup.format escapes its arguments, so URLs cannot break out of the attribute.
    tags = [Markup('<link rel="stylesheet" href="{}">').format(url(file)) for file in css]
    tags += [Markup('<link rel="modulepreload" href="{}">').format(url(file)) for file in preload]
    tags += [Markup('<script type="module" src="{}"></script>').format(url(file)) for file in scripts]
    return Markup("\n").join(tags)


def vite_preload(chunk: str, entry: str) -> Markup:
    """<link rel="modulepreload"> tags for a lazily imported chunk the page will need at once (its CSS too),
    leaving out what the page's `entry` already loads.

    The app's first tab is a dynamic import; preloading it with the entry saves a round trip before the
    first screen shows, without making it part of the entry for the pages that do not need it.
    """
    manifest: ViteManifest = current_app.extensions["vite_manifest"]
    css, preload, scripts = manifest.files(chunk, reload_if_changed=current_app.debug)
    loaded = {file for files in manifest.files(entry, reload_if_changed=current_app.debug) for file in files}
    css = [file for file in css if file not in loaded]
    preload = [file for file in preload + scripts if file not in loaded]

    def url(file: str) -> str:
        return url_for("static", filename=f"dist/{file}")

    tags = [Markup('<link rel="stylesheet" href="{}">').format(url(file)) for file in css]
    tags += [Markup('<link rel="modulepreload" href="{}">').format(url(file)) for file in preload]
    return Markup("\n").join(tags)


def init_app(app: Flask) -> None:
    """Register the vite_assets() and vite_preload() Jinja globals; the manifest is read lazily on first use."""
    app.extensions["vite_manifest"] = ViteManifest(app.static_folder or "static")
    app.add_template_global(vite_assets, "vite_assets")
    app.add_template_global(vite_preload, "vite_preload")
