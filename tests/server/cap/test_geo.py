"""Which clusters an area covers: point in polygon and in circle, edges and odd shapes."""

from __future__ import annotations

import math

import pytest

from server.cap.alert import CapArea, Polygon
from server.cap.geo import area_contains, distance_km, point_in_circle, point_in_polygon
from server.cap.parse import parse_alert
from tests.server.cap.samples import TYPHOON

SQUARE: Polygon = ((0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0), (0.0, 0.0))
# A "U" open to the north: the notch between the arms is outside.
U_SHAPE: Polygon = (
    (0.0, 0.0),
    (0.0, 9.0),
    (9.0, 9.0),
    (9.0, 6.0),
    (3.0, 6.0),
    (3.0, 3.0),
    (9.0, 3.0),
    (9.0, 0.0),
    (0.0, 0.0),
)
# Fiji-like: across the 180th meridian.
ACROSS_180: Polygon = ((-15.0, 178.0), (-15.0, -178.0), (-19.0, -178.0), (-19.0, 178.0))
ACROSS_180 = (*ACROSS_180, ACROSS_180[0])


@pytest.mark.parametrize(
    ("lat", "lon", "inside"),
    [
        (5.0, 5.0, True),
        (0.001, 0.001, True),
        (-0.001, 5.0, False),
        (5.0, 10.001, False),
        (15.0, 5.0, False),
        (0.0, 5.0, True),  # on the southern edge
        (5.0, 10.0, True),  # on the eastern edge
        (10.0, 10.0, True),  # a corner
        (0.0, 0.0, True),  # the first (and last) point
        (10.0, -5.0, False),  # level with the top edge, west of it
        (0.0, 15.0, False),  # level with the bottom edge, east of it
    ],
)
def test_a_square_holds_its_inside_and_its_edges(lat: float, lon: float, inside: bool) -> None:
    assert point_in_polygon(lat, lon, SQUARE) is inside


@pytest.mark.parametrize(
    ("lat", "lon", "inside"),
    [
        (1.0, 4.5, True),  # the base
        (6.0, 1.5, True),  # the west arm
        (6.0, 7.5, True),  # the east arm
        (6.0, 4.5, False),  # the notch: the ray crosses both arms
        (3.0, 4.5, True),  # on the notch's floor
        (6.0, 3.0, True),  # the notch's inner corner: on an edge
        (9.0, 4.5, False),  # level with both arm tops, in the notch's mouth
        (3.0, 10.0, False),  # level with a reflex vertex, east of everything
    ],
)
def test_a_concave_polygon_leaves_its_notch_out(lat: float, lon: float, inside: bool) -> None:
    assert point_in_polygon(lat, lon, U_SHAPE) is inside


def test_a_polygon_across_the_180th_meridian() -> None:
    assert point_in_polygon(-17.0, 179.5, ACROSS_180)
    assert point_in_polygon(-17.0, -179.5, ACROSS_180)
    assert point_in_polygon(-17.0, 180.0, ACROSS_180)
    assert not point_in_polygon(-17.0, 0.0, ACROSS_180)  # the naive reading holds 356 degrees
    assert not point_in_polygon(-17.0, 177.0, ACROSS_180)
    assert not point_in_polygon(-20.0, 179.5, ACROSS_180)


def test_the_direction_and_an_open_ring_do_not_matter() -> None:
    reverse = SQUARE[::-1]
    open_ring = SQUARE[:-1]
    for polygon in (reverse, open_ring):
        assert point_in_polygon(5.0, 5.0, polygon)
        assert not point_in_polygon(5.0, 15.0, polygon)


def test_a_degenerate_polygon_holds_nothing() -> None:
    assert not point_in_polygon(0.0, 0.0, ())
    assert not point_in_polygon(1.0, 1.0, ((1.0, 1.0), (2.0, 2.0)))


def test_haversine_distances() -> None:
    assert distance_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(111.195, abs=0.001)
    assert distance_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(111.195, abs=0.001)
    assert distance_km(21.0285, 105.8542, 21.0285, 105.8542) == 0.0
    # A quarter of the equator, and pole to pole: pi * R / 2 and pi * R.
    half = math.pi * 6371.0088
    assert distance_km(0.0, 0.0, 0.0, 90.0) == pytest.approx(half / 2)
    assert distance_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(half)
    assert distance_km(10.0, 20.0, -10.0, -160.0) == pytest.approx(half)  # antipodes


def test_a_circle_holds_points_up_to_its_radius() -> None:
    circle = (0.0, 0.0, 111.3)
    assert point_in_circle(0.0, 0.0, circle)
    assert point_in_circle(1.0, 0.0, circle)
    assert not point_in_circle(1.0, 0.0, (0.0, 0.0, 111.1))
    assert not point_in_circle(-1.01, 0.0, circle)
    assert point_in_circle(0.0, 0.0, (0.0, 0.0, 0.0))


def test_the_typhoon_area_holds_coastal_clusters_only() -> None:
    (area,) = parse_alert(TYPHOON.encode()).infos[0].areas
    ha_long, bach_long_vi, co_to = (20.95, 107.07), (20.13, 107.72), (21.0, 107.77)
    ha_noi, lang_son = (21.03, 105.85), (21.85, 106.76)
    assert area_contains(area, *ha_long)  # in the polygon
    assert not point_in_circle(*ha_long, area.circles[0])
    assert area_contains(area, *bach_long_vi)  # in the storm circle, south of the polygon
    assert not point_in_polygon(*bach_long_vi, area.polygons[0])
    assert area_contains(area, *co_to)  # in both
    assert not area_contains(area, *ha_noi)
    assert not area_contains(area, *lang_son)


def test_an_area_of_geocodes_only_contains_no_point() -> None:
    assert not area_contains(CapArea("Tỉnh Lạng Sơn", geocodes=(("MA_DVHC", "20"),)), 21.85, 106.76)
