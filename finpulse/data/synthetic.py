"""Deterministic synthetic financial posts, clearly labelled synthetic.

Every post has ``source="synthetic"``, a ``syn-`` id and a ``synth_`` author. Each trading day D
of the price data gets a latent mood

    latent_D = reaction * z(r_D) + signal_strength * z(r_{D+1}) + noise

where ``r_D`` is D's log return (posts react to the day's move) and ``r_{D+1}`` is the next day's:
the *planted* component, which makes the posts predictive of tomorrow when ``signal_strength > 0``
and not at all when it is 0. Posts for D are timestamped between the previous session's close and
D's 16:00 New York close (evenings, nights, weekends and holidays included), so trading-day
alignment puts them on D. Wording follows each post's mood through graded templates with words
VADER knows, so sentiment scorers can recover it. The same arguments give byte-identical output.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from finpulse.data.calendar import NEW_YORK

_STRONG_NEG = [
    "{tag} crashing hard, terrible earnings miss and awful guidance{suffix}",
    "Horrible day for {tag}: panic selling, huge losses, I am furious{suffix}",
    "{tag} plunging again. Disaster. Fraud fears everywhere{suffix}",
    "Worst quarter ever for {tag}, dump it now{suffix}",
    "{tag} collapse is brutal, investors devastated{suffix}",
]
_NEG = [
    "{tag} slipping, weak demand worries me{suffix}",
    "Not great for {tag} today, losses continue{suffix}",
    "{tag} downgrade, disappointing outlook{suffix}",
    "Sold my {tag}, looks bad into the report{suffix}",
    "{tag} under pressure, sad to see it fall{suffix}",
]
_NEUTRAL = [
    "{tag} trading at {price} ahead of the report{suffix}",
    "Watching {tag} today, volume around {vol}{suffix}",
    "{tag} closes the session near {price}{suffix}",
    "Anyone holding {tag} into the weekend{suffix}",
    "{tag} options expiring Friday, open interest at {vol}{suffix}",
]
_POS = [
    "{tag} looking good, solid gains{suffix}",
    "Nice move up in {tag}, buyers stepping in{suffix}",
    "{tag} upgrade, analysts positive on growth{suffix}",
    "Bought more {tag}, happy with this trend{suffix}",
    "{tag} beats estimates, good quarter{suffix}",
]
_STRONG_POS = [
    "{tag} soaring! Incredible earnings, best quarter ever{suffix}",
    "Extremely bullish on {tag}, fantastic guidance and record revenue{suffix}",
    "{tag} crushing it, love this stock, huge win{suffix}",
    "Amazing rally in {tag}, great news for shareholders{suffix}",
    "{tag} breakout is awesome, strong buy{suffix}",
]
TEMPLATES = [_STRONG_NEG, _NEG, _NEUTRAL, _POS, _STRONG_POS]
# A changed vocabulary (``PostStyle.vocabulary_shift``): the same moods worded in another register
# (retail-trader slang), for drift tests that must see the language move while the moods may not.
SHIFTED_TEMPLATES = [
    ["{tag} rekt, bagholders getting wiped out, total rug pull{suffix}",
     "{tag} nuked to oblivion, capitulation everywhere{suffix}", "Paper hands dumping {tag}, it's over{suffix}",
     "{tag} going to zero, short it to the floor{suffix}", "{tag} margin calls incoming, bloodbath{suffix}"],
    ["{tag} fading hard, no bid here{suffix}", "{tag} red again, meh{suffix}", "Trimmed {tag}, chart looks toppy{suffix}",
     "{tag} bleeding slowly, not a fan{suffix}", "{tag} lower highs, bears in control{suffix}"],
    ["{tag} chopping sideways near {price}{suffix}", "{tag} float rotation around {vol}{suffix}",
     "{tag} theta gang sitting at {price}{suffix}", "Who else is flat on {tag}{suffix}", "{tag} gamma wall at {price}{suffix}"],
    ["{tag} green day, bulls showing up{suffix}", "{tag} dip bought, higher lows{suffix}",
     "Added {tag} calls, chart looks clean{suffix}", "{tag} grinding up nicely{suffix}", "{tag} squeeze setting up{suffix}"],
    ["{tag} to the moon, diamond hands{suffix}", "{tag} tendies incoming, calls printing{suffix}",
     "{tag} absolute rocket, gamma squeeze{suffix}", "{tag} YOLO paid off, lambo soon{suffix}",
     "{tag} sending it, face-ripping rally{suffix}"],
]
_SUFFIXES = ["", "", "", " #stocks", " #investing", " 📈", " 📉", " imo", "!", " $SPY", " (not advice)", " #trading"]
_BUCKET_EDGES = np.array([-1.2, -0.4, 0.4, 1.2])  # latent+noise -> strong neg / neg / neutral / pos / strong pos


def _zscore(x: pd.Series) -> pd.Series:
    sd = x.std()
    return (x - x.mean()) / (sd if sd and np.isfinite(sd) else 1.0)


def daily_latent(prices: pd.DataFrame, *, signal_strength: float, reaction: float, noise: float,
                 rng: np.random.Generator) -> pd.DataFrame:
    """Per (ticker, day): the latent mood and the returns it was built from."""
    frames = []
    for ticker, g in prices.sort_values(["ticker", "date"]).groupby("ticker", sort=True):
        logc = np.log(g["close"].astype("float64").to_numpy())
        r = pd.Series(np.diff(logc, prepend=np.nan), index=g.index)
        r_next = r.shift(-1)
        z, z_next = _zscore(r).fillna(0.0), _zscore(r_next).fillna(0.0)
        latent = reaction * z + signal_strength * z_next + noise * rng.standard_normal(len(g))
        frames.append(pd.DataFrame({"ticker": ticker, "date": pd.to_datetime(g["date"]).to_numpy(),
                                    "close": g["close"].to_numpy(), "volume": g["volume"].to_numpy(),
                                    "latent": latent.to_numpy(), "abs_move": np.abs(z.to_numpy())}))
    return pd.concat(frames, ignore_index=True)


def _timestamps(day_open: np.ndarray, prev_close: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """60% of posts in D's session (9:30-16:00 New York), the rest between the previous close and
    D's open (evening, night, weekend, holiday)."""
    n = len(day_open)
    in_session = rng.random(n) < 0.6
    session_s = rng.integers(0, int(6.5 * 3600) - 1, n)
    off_span = (day_open - prev_close).astype("timedelta64[s]").astype(np.int64)
    off_s = (rng.random(n) * np.maximum(off_span, 1)).astype(np.int64)
    ts = np.where(in_session, day_open + session_s.astype("timedelta64[s]"),
                  prev_close + off_s.astype("timedelta64[s]"))
    return ts


@dataclass(frozen=True)
class PostStyle:
    """The generator's less-turned knobs: how strongly posts react to the day's move, the noise on a
    day's mood and on each post's, how many authors write, and whether to return each post's mood
    (``latent``, for tests that check a scorer recovers it)."""

    reaction: float = 0.5
    day_noise: float = 0.5
    post_noise: float = 0.6
    n_authors: int = 500
    with_latent: bool = False
    vocabulary_shift: float = 0.0  # share of posts worded from SHIFTED_TEMPLATES (a changed vocabulary)
    mood_shift: float = 0.0  # added to every post's mood: moves the class mix (0.5: more positive posts)


def generate_posts(prices: pd.DataFrame, *, posts_per_day: float = 8.0, signal_strength: float = 0.0,
                   duplicate_rate: float = 0.01, seed: int = 0, start: str | None = None, end: str | None = None,
                   style: PostStyle | None = None) -> pd.DataFrame:
    """Synthetic posts for the tickers and days in ``prices`` (POSTS schema; plus ``latent`` when
    ``style.with_latent``). ``duplicate_rate`` re-posts that share of posts by the same author a few
    seconds later (what the ETL's dedupe must remove).

    One generator feeds every step in a fixed order (days, times, moods, wording, duplicates): that
    order is what keeps the output byte-identical for a seed, so the steps below must keep it."""
    style = style or PostStyle()
    rng = np.random.default_rng(seed)
    days, idx = _post_days(prices, posts_per_day, signal_strength, style, (start, end), rng)
    d = days.iloc[idx].reset_index(drop=True)
    ts = _post_times(days, d, idx, rng)
    out = _post_frame(d, ts, seed, style, rng)
    return _add_duplicates(out, duplicate_rate, seed, rng).sort_values(
        ["created_at", "post_id"], kind="mergesort").reset_index(drop=True)


def _post_days(prices: pd.DataFrame, posts_per_day: float, signal_strength: float, style: PostStyle,
               span: tuple[str | None, str | None], rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    """The (ticker, day) moods within ``span`` and, per post, the index of its day (busier on big moves)."""
    p = prices.copy()
    p["date"] = pd.to_datetime(p["date"])
    days = daily_latent(p, signal_strength=signal_strength, reaction=style.reaction, noise=style.day_noise, rng=rng)
    start, end = span
    if start:
        days = days[days["date"] >= pd.Timestamp(start)]
    if end:
        days = days[days["date"] <= pd.Timestamp(end)]
    days = days.reset_index(drop=True)
    counts = rng.poisson(posts_per_day * (0.6 + 0.4 * np.minimum(days["abs_move"].to_numpy(), 3.0)))
    return days, np.repeat(np.arange(len(days)), counts)


def _post_times(days: pd.DataFrame, d: pd.DataFrame, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each post's UTC time, from its day's session boundaries in New York time."""
    day_dates = d["date"].dt.normalize()
    opens = (day_dates + pd.Timedelta(hours=9, minutes=30)).dt.tz_localize(NEW_YORK).dt.tz_convert("UTC")
    prev_day = days.groupby("ticker")["date"].shift(1).iloc[idx].reset_index(drop=True)
    prev_day = prev_day.fillna(day_dates - pd.Timedelta(days=1))
    prev_close = (prev_day.dt.normalize() + pd.Timedelta(hours=16)).dt.tz_localize(NEW_YORK).dt.tz_convert("UTC")
    return _timestamps(opens.dt.tz_localize(None).to_numpy().astype("datetime64[s]"),
                       prev_close.dt.tz_localize(None).to_numpy().astype("datetime64[s]"), rng)


def _post_frame(d: pd.DataFrame, ts: np.ndarray, seed: int, style: PostStyle, rng: np.random.Generator
                ) -> pd.DataFrame:
    """One row per post: wording that follows its mood, an author, heavy-tailed engagement."""
    n = len(d)
    mood = d["latent"].to_numpy() + style.post_noise * rng.standard_normal(n) + style.mood_shift
    bucket = np.searchsorted(_BUCKET_EDGES, mood)
    # its own generator, so the default style's output (and the main generator's order) is unchanged
    shifted = np.random.default_rng(seed + 104_729).random(n) < style.vocabulary_shift
    tmpl = rng.integers(0, 5, n)
    suffix = rng.integers(0, len(_SUFFIXES), n)
    tag_style = rng.random(n)
    authors = rng.integers(0, style.n_authors, n)
    likes = np.floor(rng.lognormal(1.0, 1.3, n)).astype(np.int64)
    reposts = rng.binomial(likes, 0.2)
    tickers = d["ticker"].to_numpy()
    closes = d["close"].to_numpy()
    vols = d["volume"].to_numpy()
    texts = []
    for i in range(n):
        t = tickers[i]
        tag = f"${t}" if tag_style[i] < 0.7 else (f"${t.lower()}" if tag_style[i] < 0.85 else t)
        texts.append((SHIFTED_TEMPLATES if shifted[i] else TEMPLATES)[bucket[i]][tmpl[i]].format(
            tag=tag, suffix=_SUFFIXES[suffix[i]], price=f"{closes[i]:.2f}", vol=f"{vols[i] / 1e6:.1f}M"))
    out = pd.DataFrame({
        "post_id": [f"syn-{seed}-{i:09d}" for i in range(n)],
        "ticker": tickers,
        "created_at": pd.to_datetime(ts).tz_localize("UTC").astype("datetime64[us, UTC]"),
        "text": texts,
        "author": [f"synth_{a:05d}" for a in authors],
        "likes": likes,
        "reposts": reposts.astype(np.int64),
        "source": "synthetic",
    })
    if style.with_latent:
        out["latent"] = mood
    return out


def _add_duplicates(out: pd.DataFrame, duplicate_rate: float, seed: int, rng: np.random.Generator) -> pd.DataFrame:
    """Re-post ``duplicate_rate`` of the posts by the same author 1-29 seconds later."""
    n = len(out)
    n_dup = int(round(duplicate_rate * n))
    if not n_dup:
        return out
    dup = out.iloc[np.sort(rng.choice(n, n_dup, replace=False))].copy()
    dup["post_id"] = [f"syn-{seed}-dup-{i:09d}" for i in range(n_dup)]
    dup["created_at"] = dup["created_at"] + pd.to_timedelta(rng.integers(1, 30, n_dup), unit="s")
    return pd.concat([out, dup], ignore_index=True)


CORRUPTIONS = ("empty_text", "bad_time", "bad_ticker", "negative_likes")


def to_posts_csv(posts: pd.DataFrame, *, corrupt_rate: float = 0.0, seed: int = 0) -> bytes:
    """Serialise posts as the generic posts CSV (the raw format the ETL reads), optionally with a
    share of corrupted rows (empty text, unparseable time, bad ticker, negative likes) that the ETL
    must quarantine. Byte-identical for the same input and seed."""
    df = posts[["post_id", "ticker", "created_at", "text", "author", "likes", "reposts", "source"]].copy()
    df["created_at"] = pd.to_datetime(df["created_at"], utc=True).dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    df = df.astype({"likes": str, "reposts": str})
    if corrupt_rate > 0 and len(df):
        rng = np.random.default_rng(seed + 7919)
        rows = np.sort(rng.choice(len(df), max(1, int(round(corrupt_rate * len(df)))), replace=False))
        kinds = rng.integers(0, len(CORRUPTIONS), len(rows))
        col = {"empty_text": ("text", "   "), "bad_time": ("created_at", "yesterday-ish"),
               "bad_ticker": ("ticker", "not a ticker!"), "negative_likes": ("likes", "-3")}
        for r, k in zip(rows, kinds, strict=True):
            c, v = col[CORRUPTIONS[k]]
            df.iat[r, df.columns.get_loc(c)] = v
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue().encode("utf-8")
