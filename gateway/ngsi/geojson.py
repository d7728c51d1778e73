"""Check `geo:json` values the way Orion's MongoDB 2dsphere index does, and pick the geometry to send.

Orion hands a location to MongoDB, whose GeoJSON parser (`src/mongo/db/geo/geoparser.cpp`) refuses
what S2 cannot index; depending on the Orion version the client then gets 400 or **500** ("Database
Error", telefonicaid/fiware-orion#3347, #3949), and a 500 makes an uplink retry forever. So every
rule MongoDB applies is checked here first:

- types: Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon; a Feature or a
  one-Feature FeatureCollection stands for its geometry (Orion before 3.7 fails with 500 on them, so
  the converters send the geometry itself). GeometryCollection is refused (Orion: "Database Error").
- positions: `[longitude, latitude]` or with an altitude third, finite numbers, within -180..180 and
  -90..90 (RFC 7946 order: a swapped pair usually shows as a latitude out of range).
- LineString: at least 2 distinct positions (MongoDB drops repeated adjacent positions first).
- Polygon rings: at least 4 positions, closed (the last repeats the first), at least 3 distinct
  corners, no corner visited twice, no edge crossing or touching another of the same ring, no edge
  doubling back; holes inside the outer ring, not inside each other, meeting any other ring at
  shared corners only, and sharing at most one corner with the outer ring.

Crossings are computed in the plane of longitude and latitude, which matches S2's great-circle edges
for anything of city or prefecture size; polygons spanning the antimeridian are not special-cased.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

GEOMETRY_LEVELS = {"Point": 0, "MultiPoint": 1, "LineString": 1, "MultiLineString": 2, "Polygon": 2, "MultiPolygon": 3}
_SHAPES = {
    "Point": "a position [longitude, latitude]",
    "MultiPoint": "a non-empty list of positions",
    "LineString": "a list of positions",
    "MultiLineString": "a non-empty list of lines, each a list of positions",
    "Polygon": "a non-empty list of rings, each a list of positions",
    "MultiPolygon": "a non-empty list of polygons, each a list of rings",
}
_TYPES = "Point, MultiPoint, LineString, MultiLineString, Polygon, MultiPolygon, Feature or FeatureCollection"
_RING_FIX = "a ring lists its corners in order and repeats the first position at the end"

Position = tuple[float, float]


class _Invalid(Exception):
    """Internal: what is wrong and how to fix it."""

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix


def geometry_of(value: Mapping[str, Any]) -> Mapping[str, Any]:
    """The geometry of a value `problem` accepted: itself, a Feature's, or a one-Feature collection's."""
    kind = value.get("type")
    if kind == "FeatureCollection":
        value = value["features"][0]
        kind = value.get("type")
    if kind == "Feature":
        geometry: Mapping[str, Any] = value["geometry"]
        return geometry
    return value


def problem(value: Any) -> tuple[str, str] | None:
    """(what is wrong, how to fix it) for a value MongoDB would refuse as a location, else None."""
    try:
        _check(value)
    except _Invalid as bad:
        return bad.what, bad.fix
    return None


def _check(value: Any) -> None:
    if not isinstance(value, Mapping):
        raise _Invalid("must be a GeoJSON object", f"send an object whose type is {_TYPES}")
    kind = value.get("type")
    if kind == "FeatureCollection":
        features = value.get("features")
        count = len(features) if isinstance(features, (list, tuple)) else 0
        if count != 1:
            raise _Invalid(
                f"FeatureCollection must hold exactly one Feature, it holds {count}",
                "Orion keeps one location per entity; send the one geometry that locates it",
            )
        feature = features[0]  # type: ignore[index]
        if not isinstance(feature, Mapping) or feature.get("type") != "Feature":
            raise _Invalid("FeatureCollection must hold a Feature")
        value, kind = feature, "Feature"
    if kind == "Feature":
        geometry = value.get("geometry")
        if not isinstance(geometry, Mapping) or geometry.get("type") not in GEOMETRY_LEVELS:
            raise _Invalid("Feature needs a geometry (not a null, collection or nested Feature)")
        value, kind = geometry, geometry["type"]
    if kind == "GeometryCollection":
        raise _Invalid(
            "GeometryCollection is not supported by Orion (its database fails with 500)",
            "send each geometry as its own attribute (extra ones with metadata ignoreType = true) or use a Multi* type",
        )
    if kind not in GEOMETRY_LEVELS:
        raise _Invalid(f"type must be {_TYPES}")
    coordinates = value.get("coordinates")
    if kind == "Point":
        _position(coordinates, "coordinates")
    elif kind == "MultiPoint":
        for i, node in enumerate(_items(coordinates, kind, "coordinates")):
            _position(node, f"coordinates[{i}]")
    elif kind == "LineString":
        _line(coordinates, kind, "coordinates")
    elif kind == "MultiLineString":
        for i, node in enumerate(_items(coordinates, kind, "coordinates")):
            _line(node, kind, f"coordinates[{i}]")
    elif kind == "Polygon":
        _polygon(coordinates, kind, "coordinates")
    else:
        for i, node in enumerate(_items(coordinates, kind, "coordinates")):
            _polygon(node, kind, f"coordinates[{i}]")


def _items(node: Any, kind: str, path: str) -> Sequence[Any]:
    if not isinstance(node, (list, tuple)) or not node:
        raise _Invalid(f"{path} of a {kind} must be {_SHAPES[kind]}")
    return node


def _position(node: Any, path: str) -> Position:
    if not isinstance(node, (list, tuple)) or not 2 <= len(node) <= 3:
        raise _Invalid(
            f"{path} must be a position [longitude, latitude] (an altitude may follow)",
            "positions are arrays of 2 or 3 numbers",
        )
    for c in node:
        if type(c) not in (int, float) or not math.isfinite(c):
            raise _Invalid(f"{path} must hold finite numbers, it holds {c!r}", "positions are arrays of 2 or 3 numbers")
    lon, lat = node[0], node[1]
    if not -180 <= lon <= 180:
        raise _Invalid(f"longitude {lon} at {path} is outside -180..180", "positions are [longitude, latitude]")
    if not -90 <= lat <= 90:
        raise _Invalid(
            f"latitude {lat} at {path} is outside -90..90",
            "positions are [longitude, latitude], are the two swapped?",
        )
    return (float(lon), float(lat))


def _positions(node: Any, kind: str, path: str) -> list[Position]:
    if not isinstance(node, (list, tuple)):
        raise _Invalid(f"{path} of a {kind} must be a list of positions")
    return [_position(p, f"{path}[{i}]") for i, p in enumerate(node)]


def _distinct_run(points: list[Position]) -> list[Position]:
    """Drop repeated adjacent positions, as MongoDB does before it indexes a shape."""
    out = points[:1]
    for p in points[1:]:
        if p != out[-1]:
            out.append(p)
    return out


def _line(node: Any, kind: str, path: str) -> None:
    points = _positions(node, kind, path)
    if len(_distinct_run(points)) < 2:
        raise _Invalid(f"line {path} needs at least 2 distinct positions")


def _polygon(node: Any, kind: str, path: str) -> None:
    rings = [_ring(r, kind, f"{path}[{i}]") for i, r in enumerate(_items(node, kind, path))]
    _no_crossings(rings, path)
    shell = rings[0]
    corners = set(shell)
    for i, hole in enumerate(rings[1:], start=1):
        if len(corners.intersection(hole)) > 1:
            # S2 (and so MongoDB) wants a hole to meet its outline at one point at most
            raise _Invalid(f"hole {path}[{i}] shares more than one corner with the outer ring {path}[0]")
        if _position_inside(hole, shell) is False:
            raise _Invalid(
                f"hole {path}[{i}] is not inside the outer ring {path}[0]",
                "the first ring is the outline, the others are holes in it",
            )
        for j in range(1, i):
            if _position_inside(hole, rings[j]) or _position_inside(rings[j], hole):
                raise _Invalid(f"holes {path}[{j}] and {path}[{i}] lie one inside the other")


def _ring(node: Any, kind: str, path: str) -> list[Position]:
    """The ring's corners (closing position dropped, adjacent repeats removed)."""
    points = _positions(node, kind, path)
    if len(points) < 4:
        raise _Invalid(f"ring {path} needs at least 4 positions, it has {len(points)}", _RING_FIX)
    if points[0] != points[-1]:
        raise _Invalid(f"ring {path} is not closed: its last position must repeat the first", _RING_FIX)
    corners = _distinct_run(points)[:-1]
    if len(corners) < 3:
        raise _Invalid(f"ring {path} needs at least 3 distinct corners", _RING_FIX)
    seen: set[Position] = set()
    for p in corners:
        if p in seen:
            raise _Invalid(f"ring {path} passes through [{p[0]}, {p[1]}] twice", "split it into separate polygons")
        seen.add(p)
    return corners


def _orient(a: Position, b: Position, c: Position) -> int:
    v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
    return (v > 0) - (v < 0)


def _within(a: Position, b: Position, p: Position) -> bool:
    """p, collinear with a-b, lies on the closed segment a-b."""
    return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and min(a[1], b[1]) <= p[1] <= max(a[1], b[1])


def _touch(a: Position, b: Position, c: Position, d: Position) -> bool:
    """The closed segments a-b and c-d share at least one point."""
    o1, o2, o3, o4 = _orient(a, b, c), _orient(a, b, d), _orient(c, d, a), _orient(c, d, b)
    if o1 * o2 < 0 and o3 * o4 < 0:
        return True
    return (
        (o1 == 0 and _within(a, b, c))
        or (o2 == 0 and _within(a, b, d))
        or (o3 == 0 and _within(c, d, a))
        or (o4 == 0 and _within(c, d, b))
    )


def _cross(a: Position, b: Position, c: Position, d: Position) -> bool:
    """Edges of different rings meet somewhere other than a shared corner (rings may share corners)."""
    if not _touch(a, b, c, d):
        return False
    shared = {a, b} & {c, d}
    if len(shared) != 1:
        return True  # they cross, or two rings have the same edge
    # sharing a corner is allowed, unless the edges also run along each other
    return _orient(a, b, c) == 0 and _orient(a, b, d) == 0 and _overlap(a, b, c, d)


def _overlap(a: Position, b: Position, c: Position, d: Position) -> bool:
    """Collinear edges sharing one endpoint overlap when they leave it in the same direction."""
    p = next(iter({a, b} & {c, d}))
    u = b if p == a else a
    v = d if p == c else c
    return (u[0] - p[0]) * (v[0] - p[0]) + (u[1] - p[1]) * (v[1] - p[1]) > 0


def _no_crossings(rings: list[list[Position]], path: str) -> None:
    # edges sorted by their west end; each is compared only with those whose x-range reaches it
    edges: list[tuple[float, float, float, float, int, int, Position, Position]] = []
    for r, corners in enumerate(rings):
        n = len(corners)
        for i in range(n):
            a, b = corners[i], corners[(i + 1) % n]
            nxt = corners[(i + 2) % n]
            if _orient(a, b, nxt) == 0 and (b[0] - a[0]) * (nxt[0] - b[0]) + (b[1] - a[1]) * (nxt[1] - b[1]) < 0:
                raise _Invalid(f"ring {path}[{r}] doubles back on itself at [{b[0]}, {b[1]}]", _RING_FIX)
            edges.append((min(a[0], b[0]), max(a[0], b[0]), min(a[1], b[1]), max(a[1], b[1]), r, i, a, b))
    edges.sort(key=lambda e: e[0])
    sizes = [len(c) for c in rings]
    for k, (_, x1, y0, y1, r, i, a, b) in enumerate(edges):
        for other in edges[k + 1 :]:
            if other[0] > x1:
                break
            if other[3] < y0 or other[2] > y1:
                continue
            r2, j, c, d = other[4], other[5], other[6], other[7]
            if r == r2:
                n = sizes[r]
                if abs(i - j) in (1, n - 1):
                    continue  # neighbours share a corner; doubling back was checked above
                if _touch(a, b, c, d):
                    raise _Invalid(f"ring {path}[{r}] crosses or touches itself", "split it into separate polygons")
            elif _cross(a, b, c, d):
                raise _Invalid(f"rings {path}[{min(r, r2)}] and {path}[{max(r, r2)}] cross")


def _position_inside(ring: list[Position], outer: list[Position]) -> bool | None:
    """Whether `ring` lies inside `outer` (judged by its first corner off outer's boundary); None if all are on it."""
    n = len(outer)
    for p in ring:
        on_edge = False
        inside = False
        for i in range(n):
            a, b = outer[i], outer[(i + 1) % n]
            if _orient(a, b, p) == 0 and _within(a, b, p):
                on_edge = True
                break
            if (a[1] > p[1]) != (b[1] > p[1]) and p[0] < a[0] + (p[1] - a[1]) * (b[0] - a[0]) / (b[1] - a[1]):
                inside = not inside
        if not on_edge:
            return inside
    return None
