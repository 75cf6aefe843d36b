"""Tiny MovieLens folders in each real on-disk layout, written byte for byte like the originals."""

from __future__ import annotations

import csv
import io
from pathlib import Path

# (user, item, rating, epoch seconds), deliberately out of time order; two share a second.
RATINGS = [
    (3, 2, 4.0, 881250949),
    (2, 1, 3.0, 874724710),
    (1, 1, 5.0, 874724710),
    (1, 3, 3.5, 891717742),
    (2, 4, 2.0, 978300760),
    (3, 1, 1.0, 1_200_000_000),
]
# (item, title, genres, year); titles with a comma, a colon, non-ASCII letters, no year.
ITEMS = [
    ("1", "Toy Story (1995)", ["Animation", "Children's", "Comedy"], 1995),
    ("2", "Misérables, Les (1995)", ["Drama", "War"], 1995),
    ("3", "Star Wars: Episode IV - A New Hope (1977)", ["Action", "Sci-Fi"], 1977),
    ("4", "Babylon 5 (1994-1998)", ["Sci-Fi"], 1994),
    ("5", "unknown", [], None),
]
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip


def expected_events(dataset: str) -> list[tuple]:
    """(event_id, user_id, item_id, value, epoch s) in the order an import must produce."""
    rows = sorted(RATINGS, key=lambda r: (r[3], r[0], r[1]))
    return [(f"ml-{dataset}-{u}-{i}-{ts}", str(u), str(i), r, ts) for u, i, r, ts in rows]


def csv_genres(genres: list[str]) -> list[str]:
    """ml-latest spells one genre differently."""
    return [g.replace("Children's", "Children") for g in genres]


def write_100k(folder: Path) -> Path:
    """u.data: tab separated; u.item: '|' separated, 19 genre flags, Latin-1."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r:g}\t{ts}\n" for u, i, r, ts in RATINGS))
    lines = []
    for item, title, genres, year in ITEMS:
        flags = ["1" if g in genres or (g == "unknown" and not genres) else "0" for g in GENRES_100K]
        release = f"01-Jan-{year}" if year else ""
        url = f"http://us.imdb.com/M/title-exact?{title.replace(' ', '%20')}" if year else ""
        lines.append("|".join([item, title, release, "", url, *flags]))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    (folder / "u.genre").write_text("".join(f"{g}|{n}\n" for n, g in enumerate(GENRES_100K)) + "\n")
    return folder


def write_dat(folder: Path, encoding: str = "latin-1") -> Path:
    """ml-1m / ml-10m: '::' separated; movies.dat in Latin-1 (ml-1m) or UTF-8 (ml-10m)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "ratings.dat").write_text("".join(f"{u}::{i}::{r:g}::{ts}\n" for u, i, r, ts in RATINGS))
    lines = [
        f"{item}::{title}::{'|'.join(genres) or '(no genres listed)'}" for item, title, genres, _ in ITEMS
    ]
    (folder / "movies.dat").write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return folder


def write_csv(folder: Path, newline: str = "\r\n") -> Path:
    """ml-latest / ml-20m / ml-25m: header, quoted titles with commas, UTF-8, CRLF (originals) or LF."""
    folder.mkdir(parents=True, exist_ok=True)
    ratings = io.StringIO()
    writer = csv.writer(ratings, lineterminator=newline)
    writer.writerow(["userId", "movieId", "rating", "timestamp"])
    writer.writerows([(u, i, f"{r:.1f}", ts) for u, i, r, ts in RATINGS])
    (folder / "ratings.csv").write_bytes(ratings.getvalue().encode())
    movies = io.StringIO()
    writer = csv.writer(movies, lineterminator=newline)
    writer.writerow(["movieId", "title", "genres"])
    writer.writerows(
        [(item, title, "|".join(csv_genres(g)) or "(no genres listed)") for item, title, g, _ in ITEMS]
    )
    (folder / "movies.csv").write_bytes(movies.getvalue().encode())
    return folder
