"""MovieLens folders as Arrow: rating events in the bronze/events contract, and the item table.

Three on-disk layouts exist and are told apart by their file names:
  ml-100k                      u.data (tab separated) + u.item (pipe separated, Latin-1)
  ml-1m, ml-10m                ratings.dat + movies.dat ('::' separated, Latin-1 or UTF-8)
  ml-latest(-small), 20m, 25m  ratings.csv + movies.csv (header, quoted titles, CRLF or LF)
Every rating becomes a `rating` event whose id is built from the row itself
(`ml-<dataset>-<user>-<item>-<epoch s>`), so importing the same data twice adds nothing.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv

from lakehouse.errors import RecoError
from lakehouse.schemas import EVENTS, ITEMS, TS

LAYOUTS = {
    "100k": ("u.data", "u.item"),
    "dat": ("ratings.dat", "movies.dat"),
    "csv": ("ratings.csv", "movies.csv"),
}
# The genre flags of u.item, in column order (u.genre lists the same names).
GENRES_100K = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)  # fmt: skip
NO_GENRE = ("unknown", "(no genres listed)")

# The contract fields a rating event fills (bronze/events' own field definitions).
EVENT_COLUMNS = pa.schema(
    [EVENTS.field(name) for name in ("event_id", "user_id", "item_id", "event_type", "value", "ts")]
)
_YEAR = re.compile(r"\((\d{4})[^()]*\)\s*$")


@dataclass(frozen=True)
class MovieLensFolder:
    path: Path
    layout: str  # a key of LAYOUTS
    dataset: str  # short name used in event ids, e.g. "100k", "latest-small"
    ratings: Path
    movies: Path


def dataset_name(text: str) -> str:
    """'ml-latest-small' → 'latest-small'; anything outside [a-z0-9-] becomes '-'."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = name.removeprefix("ml-")
    if not name:
        raise RecoError(f"cannot make a dataset name from {text!r}: pass --dataset NAME")
    return name


def detect(path: str | Path, dataset: str | None = None) -> MovieLensFolder:
    """Which MovieLens layout `path` holds; RecoError naming the expected files when none."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise RecoError(f"not a folder: {folder}")
    for layout, (ratings, movies) in LAYOUTS.items():
        if (folder / ratings).is_file():
            if not (folder / movies).is_file():
                raise RecoError(f"{folder} has {ratings} but not {movies}")
            name = dataset_name(dataset or folder.resolve().name)
            return MovieLensFolder(folder.resolve(), layout, name, folder / ratings, folder / movies)
    raise RecoError(
        f"no MovieLens files in {folder}: expected u.data + u.item (ml-100k), ratings.dat + movies.dat "
        "(ml-1m, ml-10m) or ratings.csv + movies.csv (ml-latest, ml-20m, ml-25m)"
    )


def read_ratings(folder: MovieLensFolder) -> pa.Table:
    """All ratings as `rating` events (EVENT_COLUMNS), ordered by time, then user, then item."""
    types = {"user": pa.int64(), "item": pa.int64(), "rating": pa.float64(), "ts": pa.int64()}
    names = list(types)
    if folder.layout == "100k":
        read = pacsv.ReadOptions(column_names=names)
        parse = pacsv.ParseOptions(delimiter="\t")
        convert = pacsv.ConvertOptions(column_types=types)
    elif folder.layout == "dat":  # '::' as ':' gives empty columns in between
        read = pacsv.ReadOptions(column_names=["user", "_1", "item", "_2", "rating", "_3", "ts"])
        parse = pacsv.ParseOptions(delimiter=":")
        convert = pacsv.ConvertOptions(column_types=types, include_columns=names)
    else:
        with open(folder.ratings, encoding="utf-8", errors="replace") as file:
            header = file.readline().strip()
        if header.replace(" ", "") != "userId,movieId,rating,timestamp":
            raise RecoError(f"{folder.ratings}: expected a header userId,movieId,rating,timestamp")
        read = pacsv.ReadOptions(column_names=names, skip_rows=1)
        parse = pacsv.ParseOptions(delimiter=",")
        convert = pacsv.ConvertOptions(column_types=types, include_columns=names)
    try:
        raw = pacsv.read_csv(folder.ratings, read_options=read, parse_options=parse, convert_options=convert)
    except (pa.ArrowInvalid, OSError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise RecoError(f"{folder.ratings} is not a MovieLens ratings file: {first}") from None
    for name in names:
        if raw[name].null_count:
            raise RecoError(f"{folder.ratings}: {raw[name].null_count} rows lack a {name}")
    raw = raw.take(pc.sort_indices(raw, [("ts", "ascending"), ("user", "ascending"), ("item", "ascending")]))
    user, item = pc.cast(raw["user"], pa.string()), pc.cast(raw["item"], pa.string())
    event_id = pc.binary_join_element_wise(
        f"ml-{folder.dataset}-", user, "-", item, "-", pc.cast(raw["ts"], pa.string()), ""
    )
    ts = pc.cast(pc.multiply(raw["ts"], 1_000_000), pa.int64()).cast(TS)
    columns = [event_id, user, item, pa.repeat("rating", raw.num_rows), raw["rating"], ts]
    return pa.Table.from_arrays([_plain(c) for c in columns], schema=EVENT_COLUMNS)


def read_items(folder: MovieLensFolder) -> pa.Table:
    """The item table (lakehouse.schemas.ITEMS): id, title as published, genres, year from the title."""
    text = _decode(folder.movies.read_bytes())
    if folder.layout == "100k":
        rows = [_item_100k(line, folder.movies) for line in text.splitlines() if line.strip()]
    elif folder.layout == "dat":
        rows = [_item_dat(line, folder.movies) for line in text.splitlines() if line.strip()]
    else:
        records = csv.reader(io.StringIO(text, newline=""))
        header = next(records, None)
        if header is None or [h.strip() for h in header[:3]] != ["movieId", "title", "genres"]:
            raise RecoError(f"{folder.movies}: expected a header movieId,title,genres")
        rows = [_item_csv(record, folder.movies) for record in records if record]
    return pa.Table.from_pylist(rows, schema=ITEMS)


def json_lines(events: pa.Table) -> pa.Array:
    """Events from read_ratings as JSON lines (epoch-second ts), built column-wise: ids are digits."""
    epoch = pc.divide(pc.cast(events["ts"], pa.int64()), 1_000_000)
    return _plain(
        pc.binary_join_element_wise(
            '{"event_id":"', events["event_id"],
            '","user_id":"', events["user_id"],
            '","item_id":"', events["item_id"],
            '","event_type":"', events["event_type"],
            '","value":', pc.cast(events["value"], pa.string()),
            ',"ts":', pc.cast(epoch, pa.string()),
            "}", "",
        )
    )  # fmt: skip


def _plain(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def _decode(data: bytes) -> str:
    """UTF-8 when it is (ml-latest, ml-10m), else Latin-1 (ml-100k, ml-1m)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _year(title: str, fallback: str = "") -> int | None:
    match = _YEAR.search(title) or re.search(r"(\d{4})\s*$", fallback)
    return int(match.group(1)) if match else None


def _item(item_id: str, title: str, genres: list[str], path: Path, fallback_year: str = "") -> dict:
    if not item_id.strip().isdigit():
        raise RecoError(f"{path}: item id {item_id!r} is not a number")
    title = title.strip()
    return {
        "item_id": item_id.strip(),
        "title": title or None,
        "genres": [g for g in genres if g and g not in NO_GENRE],
        "year": _year(title, fallback_year),
    }


def _item_100k(line: str, path: Path) -> dict:
    fields = line.split("|")
    if len(fields) != 5 + len(GENRES_100K):
        raise RecoError(
            f"{path}: expected {5 + len(GENRES_100K)} '|' fields, got {len(fields)}: {line[:80]!r}"
        )
    flags = fields[5:]
    genres = [name for name, flag in zip(GENRES_100K, flags, strict=True) if flag.strip() == "1"]
    return _item(fields[0], fields[1], genres, path, fallback_year=fields[2])


def _item_dat(line: str, path: Path) -> dict:
    parts = line.split("::")
    if len(parts) < 3:
        raise RecoError(f"{path}: expected id::title::genres, got {line[:80]!r}")
    item_id, title, genres = parts[0], "::".join(parts[1:-1]), parts[-1]
    return _item(item_id, title, genres.strip().split("|"), path)


def _item_csv(record: list[str], path: Path) -> dict:
    if len(record) != 3:
        raise RecoError(f"{path}: expected 3 columns (movieId,title,genres), got {record!r:.80}")
    return _item(record[0], record[1], record[2].strip().split("|"), path)
