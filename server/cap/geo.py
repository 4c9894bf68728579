"""Is a cluster inside a CAP area: point in polygon (planar, degrees) and in circle (haversine)."""

from __future__ import annotations

import math
from itertools import pairwise

from server.cap.alert import CapArea, Circle, Polygon

EARTH_RADIUS_KM = 6371.0088  # the mean radius (IUGG)
_EPS = 1e-9  # degrees (about 0.1 mm): a point this close to an edge lies on it


def point_in_polygon(lat: float, lon: float, polygon: Polygon) -> bool:
    """True inside the polygon or on its edge; a polygon may cross the 180th meridian."""
    ring = _unwrapped(polygon)
    if len(ring) < 4:  # closed, fewer than 3 corners: no inside at all
        return False
    # After unwrapping, the ring's longitudes may run past ±180: try the point's copies too.
    return any(_in_ring(lat, lon + shift, ring) for shift in (0.0, 360.0, -360.0))


def point_in_circle(lat: float, lon: float, circle: Circle) -> bool:
    """True when the great-circle distance to the centre is at most the radius (km)."""
    c_lat, c_lon, radius_km = circle
    return distance_km(lat, lon, c_lat, c_lon) <= radius_km + 1e-9


def area_contains(area: CapArea, lat: float, lon: float) -> bool:
    """True when any polygon or circle of the area holds the point (geocodes are not looked at)."""
    return any(point_in_polygon(lat, lon, p) for p in area.polygons) or any(
        point_in_circle(lat, lon, c) for c in area.circles
    )


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance by the haversine formula."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    d_lat, d_lon = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(d_lat / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(d_lon / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _unwrapped(polygon: Polygon) -> list[tuple[float, float]]:
    """The closed ring with each longitude moved by 360 so that no edge is longer than 180."""
    ring: list[tuple[float, float]] = []
    for lat, lon in polygon:
        if ring:
            previous = ring[-1][1]
            lon += 360.0 * round((previous - lon) / 360.0)
        ring.append((lat, lon))
    if ring and ring[0] != ring[-1]:
        ring.append(ring[0])
    return ring


def _in_ring(lat: float, lon: float, ring: list[tuple[float, float]]) -> bool:
    """Even-odd ray casting towards growing longitude, the edges themselves counting as in."""
    inside = False
    for (lat1, lon1), (lat2, lon2) in pairwise(ring):
        if _on_segment(lat, lon, lat1, lon1, lat2, lon2):
            return True
        if (lat1 > lat) != (lat2 > lat):
            crossing = lon1 + (lat - lat1) * (lon2 - lon1) / (lat2 - lat1)
            if lon < crossing:
                inside = not inside
    return inside


def _on_segment(lat: float, lon: float, lat1: float, lon1: float, lat2: float, lon2: float) -> bool:
    if not (min(lat1, lat2) - _EPS <= lat <= max(lat1, lat2) + _EPS):
        return False
    if not (min(lon1, lon2) - _EPS <= lon <= max(lon1, lon2) + _EPS):
        return False
    cross = (lon2 - lon1) * (lat - lat1) - (lat2 - lat1) * (lon - lon1)
    length = math.hypot(lon2 - lon1, lat2 - lat1)
    return abs(cross) <= _EPS * max(length, 1.0)
