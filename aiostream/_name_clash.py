"""Refuse to run beside the unrelated PyPI package ``aiostream``.

This project is published as ``aiostream-feeds``; the PyPI name ``aiostream`` belongs to
another project (async iteration operators) with the same import name. pip installs
both into one ``aiostream/`` directory without a word, each overwriting the other's
files, and whichever was installed last half works. Its metadata tells it is there.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution

FOREIGN = "aiostream"


def check_no_foreign_distribution() -> None:
    """Raise ImportError if the unrelated ``aiostream`` distribution is installed."""
    try:
        foreign = distribution(FOREIGN)
    except PackageNotFoundError:
        return
    raise ImportError(
        f"the PyPI package 'aiostream' {foreign.version} (async iteration operators, "
        "unrelated to this library) is installed beside 'aiostream-feeds'. Both use the "
        "import name 'aiostream', so installing one overwrote files of the other. Fix: "
        "pip uninstall -y aiostream aiostream-feeds && pip install aiostream-feeds "
        "(and use that other package in another virtualenv)."
    )


check_no_foreign_distribution()
