"""Digits as hands other than MNIST's write them, through the service: what real uploads hold."""

import io

import pytest
from tests.images import encode, pen_drawing, ring


# Each as people write it, and as the MNIST-only model misread most of them: bold digits filling their 16 px
# frame as USPS scanned them, a ring 0 as small, a 1 with a long flag, a 4 whose top is open.
REAL_STYLE = {
    "a bold 2 filling its frame": (2, pen_drawing(
        [[(0.05, 0.3), (0.2, 0.06), (0.5, 0.0), (0.85, 0.1), (0.92, 0.32), (0.7, 0.55), (0.05, 0.97), (0.97, 0.97)]],
        16, 2)),
    "a bold 3 filling its frame": (3, pen_drawing(
        [[(0.05, 0.1), (0.5, 0.0), (0.9, 0.15), (0.5, 0.48), (0.95, 0.7), (0.5, 1.0), (0.05, 0.9)]], 16, 2)),
    "a ring 0 in 16 px": (0, pen_drawing([ring(rx=0.45, ry=0.48)], 16, 2)),
    "a 1 with a long flag": (1, pen_drawing([[(0.1, 0.45), (0.6, 0.0), (0.6, 1.0)]], 96, 6, margin=0.1)),
    "a flagged 1 in 16 px": (1, pen_drawing([[(0.2, 0.4), (0.6, 0.0), (0.6, 1.0)]], 16, 2)),
    "an open 4": (4, pen_drawing([[(0.3, 0.0), (0.1, 0.62), (0.92, 0.62)], [(0.68, 0.12), (0.68, 1.0)]], 96, 6,
                                 margin=0.1)),
}


@pytest.mark.parametrize("name", REAL_STYLE)
def test_a_digit_written_as_other_hands_write_it_is_read(client, name):
    digit, picture = REAL_STYLE[name]
    response = client.post("/recognize.json", data={"image": (io.BytesIO(encode(picture)), "digit.png")})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["digit"] == digit
