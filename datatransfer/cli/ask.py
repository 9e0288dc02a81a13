"""The price options of the retrieval market's commands: amounts in FIL or
attoFIL (``parse_fil``, ``fil``) and ``serve``'s ask (``--price-per-byte``,
``--unseal-price``, ``--payment-interval``, ``--payment-interval-increase``,
else the ``[retrieval]`` table of the home's ``config.toml``).

Kept apart from :mod:`datatransfer.cli.retrieve` so that ``serve`` takes
its options without importing the retrieve command.
"""

from __future__ import annotations

import decimal
import functools
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

#: attoFIL in one FIL.
ATTO = 10**18
#: The home's optional config file; its ``[retrieval]`` table holds an ask.
CONFIG_FILE = "config.toml"


def parse_fil(text: str, what: str = "amount") -> int:
    """An amount in attoFIL from ``0.5``, ``0.5FIL``, ``0.5 fil`` (FIL, as
    Lotus reads a bare number) or ``5000attoFIL``; raises BadParameter."""
    raw = str(text).strip()
    lower = raw.lower().replace(" ", "")
    scale = ATTO
    if lower.endswith("attofil"):
        lower, scale = lower[:-len("attofil")], 1
    elif lower.endswith("fil"):
        lower = lower[:-len("fil")]
    try:
        value = decimal.Decimal(lower) * scale
    except decimal.InvalidOperation:
        raise click.BadParameter(f"not an amount: {raw!r} (e.g. 0.5FIL or 5000attoFIL)",
                                 param_hint=what) from None
    if not value.is_finite() or value < 0 or value != value.to_integral_value():
        raise click.BadParameter(f"{raw!r} is not a whole, non-negative number of attoFIL",
                                 param_hint=what)
    return int(value)


def fil(atto: int) -> str:
    """``atto`` attoFIL for a person: ``1048576 attoFIL`` below a milliFIL,
    else FIL with every digit."""
    if atto < ATTO // 1000:
        return f"{atto} attoFIL"
    return f"{decimal.Decimal(atto) / ATTO:f} FIL"


# -- serve's ask -----------------------------------------------------------------------


@dataclass(frozen=True)
class AskTerms:
    """The ask options of ``serve`` as given (None: not given)."""

    price_per_byte: str | None = None
    unseal_price: str | None = None
    payment_interval: int | None = None
    payment_interval_increase: int | None = None


def ask_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add serve's ask options; the command receives them as one ``ask_terms``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, price_per_byte: str | None, unseal_price: str | None,
                payment_interval: int | None, payment_interval_increase: int | None,
                **kwargs: Any) -> Any:
        terms = AskTerms(price_per_byte, unseal_price, payment_interval,
                         payment_interval_increase)
        return fn(*args, ask_terms=terms, **kwargs)

    for option in reversed((
        click.option("--price-per-byte", default=None, metavar="FIL",
                     help="Paid retrievals: the price per byte (e.g. 1attoFIL; a bare number "
                     "is FIL). Default: the home's config.toml [retrieval], else free."),
        click.option("--unseal-price", default=None, metavar="FIL",
                     help="Paid retrievals: a price paid before any byte (e.g. 1000attoFIL)."),
        click.option("--payment-interval", type=click.IntRange(1, None), default=None,
                     metavar="BYTES", help="Bytes sent between payment requests "
                     "(default 1048576)."),
        click.option("--payment-interval-increase", type=click.IntRange(0, None), default=None,
                     metavar="BYTES", help="How much each interval grows (default 1048576)."),
    )):
        wrapper = option(wrapper)
    return wrapper


def _config_ask(home: Path) -> dict[str, Any]:
    path = home / CONFIG_FILE
    if not path.exists():
        return {}
    try:
        table = tomllib.loads(path.read_text()).get("retrieval", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None
    known = {"price_per_byte", "unseal_price", "payment_interval", "payment_interval_increase"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise click.ClickException(f"{path}: unknown [retrieval] key {', '.join(unknown)} "
                                   f"(known: {', '.join(sorted(known))})")
    return dict(table)


def retrieval_setup(home: Path | None, terms: AskTerms,
                    node: Callable[[], Any]) -> tuple[Callable[[Any], None], str | None]:
    """The Node ``setup`` serving retrieval deals at the ask of ``terms``
    (else the home's config.toml, else free), and a line describing a paid
    ask (None when free). Bad terms are usage errors, raised here, before
    the node starts."""
    from datatransfer.home import resolve_home
    from datatransfer.markets.retrieval import Ask
    from datatransfer.markets.retrieval.serving import provider_setup

    path = resolve_home(home)
    conf = _config_ask(path)
    given = {k: v for k, v in vars(terms).items() if v is not None}
    merged = {**conf, **given}
    kwargs: dict[str, Any] = {}
    for key in ("price_per_byte", "unseal_price"):
        if key in merged:
            kwargs[key] = parse_fil(str(merged[key]), "--" + key.replace("_", "-"))
    for key in ("payment_interval", "payment_interval_increase"):
        if key in merged:
            if not isinstance(merged[key], int) or merged[key] < 0:
                raise click.BadParameter(f"{merged[key]!r} is not a number of bytes",
                                         param_hint="--" + key.replace("_", "-"))
            kwargs[key] = merged[key]
    try:
        ask = Ask(**kwargs)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    from dataclasses import replace

    from datatransfer.markets.retrieval.wallet import HomeWallet

    # A free ask names the home's wallet too: go-fil-markets clients cannot
    # read a query answer whose payment address is undefined.
    wallet = HomeWallet(path)
    ask = replace(ask, payment_address=wallet.address)
    payments = None
    line = None
    if not ask.is_free:
        payments = wallet
        line = (f"retrieval ask: {fil(ask.price_per_byte)} per byte, unseal "
                f"{fil(ask.unseal_price)}, a payment every {ask.payment_interval} bytes "
                f"(+{ask.payment_interval_increase}), paid to {ask.payment_address}")
    setup = provider_setup(lambda: node().blockstore, ask, payments, host=lambda: node().host)
    return setup, line


__all__ = ["ATTO", "CONFIG_FILE", "AskTerms", "ask_options", "fil", "parse_fil", "retrieval_setup"]
