"""Extract the UI's strings and bring the three catalogues up to date.

    .venv/bin/python -m patron.web.catalogs          # extract + update en, ru, zh
    .venv/bin/python -m patron.web.catalogs --check  # exit 1 if anything is missing or fuzzy

The same as `pybabel extract -F babel.cfg -k N_ --no-location --sort-output -o messages.pot .`
followed by `pybabel update -i messages.pot -d src/patron/locale -l LANG --no-location` for each
language, except that English (the source language) gets each msgid as its own msgstr, so that
every catalogue is complete. New strings arrive in ru and zh untranslated: translate them in the
.po files (no fuzzy entries: they are ignored at run time) and run `--check`.
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Iterable
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po, write_po

from patron.web.i18n import LANGUAGES, LOCALE_DIR

ROOT = LOCALE_DIR.parent.parent.parent  # the repository: babel.cfg sits there
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extract(root: Path = ROOT) -> Catalog:
    """Every msgid in the code and templates babel.cfg names."""
    with (root / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)  # type: ignore[no-untyped-call]
    template = Catalog(project="Patron", charset="utf-8")
    for _filename, _lineno, message, comments, context in extract_from_dir(
        str(root), method_map, options_map, keywords=KEYWORDS, strip_comment_tags=True
    ):
        template.add(message, None, [], auto_comments=comments, context=context)
    return template


def _path(lang: str) -> Path:
    return LOCALE_DIR / lang / "LC_MESSAGES" / "messages.po"


def load(lang: str) -> Catalog:
    path = _path(lang)
    if not path.exists():
        return Catalog(locale=lang, project="Patron", charset="utf-8")
    with path.open("rb") as f:
        return read_po(f, locale=lang)


def problems(lang: str, template: Catalog) -> list[str]:
    """What is missing, untranslated or fuzzy in one catalogue."""
    catalog = load(lang)
    out = []
    for message in template:
        if not message.id:
            continue
        found = catalog.get(message.id, message.context)
        key = message.id if isinstance(message.id, str) else message.id[0]
        if found is None:
            out.append(f"{lang}: missing {key!r}")
        elif found.fuzzy:
            out.append(f"{lang}: fuzzy {key!r}")
        elif not _translated(found.string):
            out.append(f"{lang}: untranslated {key!r}")
    return out


def _translated(string: str | Iterable[str] | None) -> bool:
    if not string:
        return False
    if isinstance(string, str):
        return bool(string)
    return all(string)


def update(template: Catalog) -> None:
    for lang in LANGUAGES:
        catalog = load(lang)
        # A copy each: update() adopts the template's message objects, and English fills them in.
        catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)
        catalog.obsolete.clear()
        if lang == "en":
            for message in catalog:
                if message.id and not _translated(message.string):
                    if isinstance(message.id, str):
                        message.string = message.id
                    else:
                        singular, plural = message.id[0], message.id[1]
                        message.string = (singular, plural)
        path = _path(lang)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            write_po(f, catalog, no_location=True, sort_output=True, width=100, omit_header=False)


def main(argv: list[str]) -> int:
    template = extract()
    if "--check" not in argv:
        update(template)
    issues = [p for lang in LANGUAGES for p in problems(lang, template)]
    for issue in issues:
        print(issue)
    print(f"{len(template)} messages; {len(issues)} problems")
    return 1 if issues else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
