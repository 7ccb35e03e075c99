"""Request paths: RFC 3986 section 5.2.4 dot-segment removal, and the characters refused."""

from __future__ import annotations

from typing import Any

import pytest
from licensechain_middleware.paths import (
    BadPath,
    check_raw_path,
    encode_path,
    normalise_path,
    raw_path_of,
)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/a/..", "/"),
        ("/..", "/"),
        ("/.", "/"),
        ("/./", "/"),
        ("/a/../..", "/"),
        ("//", "/"),
        ("/a/./b/../c", "/a/c"),
        ("/a/b/../..", "/"),
        ("/a/b/../../", "/"),
        ("/a/b/c/../", "/a/b/"),
        ("/a/b/./", "/a/b/"),
        ("/a/.b", "/a/.b"),
        ("/a/..b", "/a/..b"),
        ("/a/b..", "/a/b.."),
        ("/a//", "/a/"),
        ("/a/.hidden/..", "/a/"),
    ],
)
def test_dot_segments_are_removed_per_rfc_3986(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


@pytest.mark.parametrize("path", ["/plain", "/a/b/c", "/a/b/", "/a-b_c~d", "/x.y/z"])
def test_normal_path_is_returned_unchanged(path: str) -> None:
    assert normalise_path(path) == path


@pytest.mark.parametrize(
    "path",
    ["/a%b", "/a;b", "/a\\b", "/a#b", "/a?b", "/a\x00", "/a\x1f", "/a\x7f", "/a\tb", "a", "."],
)
def test_refused_characters_are_400_bad_path(path: str) -> None:
    with pytest.raises(BadPath) as err:
        normalise_path(path)
    assert err.value.status_code == 400
    assert err.value.body("r")["error"] == "invalid_request"


@pytest.mark.parametrize(
    ("check", "path", "detail"),
    [
        (normalise_path, "a/b", "start"),
        (normalise_path, "/a;b", "';'"),
        (check_raw_path, "/a%2fb", "encoded"),
    ],
)
def test_bad_path_says_why_for_the_log(check: Any, path: str, detail: str) -> None:
    with pytest.raises(BadPath) as err:
        check(path)
    assert err.value.reason == "bad_path"
    assert detail in str(err.value.detail)
    assert detail not in str(err.value.body("r"))  # the client sees the generic text


def test_refused_character_is_found_after_dot_segments_too() -> None:
    with pytest.raises(BadPath):
        normalise_path("/a/../b;c")
    with pytest.raises(BadPath):
        normalise_path("//a%2e")


@pytest.mark.parametrize("raw", ["/a%2fb", "/a%2Fb", "/a%5cb", "/a%5Cb", "/%2F"])
def test_encoded_slash_or_backslash_in_raw_path_is_refused(raw: str) -> None:
    with pytest.raises(BadPath):
        check_raw_path(raw)


@pytest.mark.parametrize("raw", ["/a/b", "/a%20b", "/%41", "/a%2", "/a2f", "/a%25"])
def test_other_raw_paths_pass(raw: str) -> None:
    check_raw_path(raw)


@pytest.mark.parametrize(
    ("target", "path"),
    [
        ("/a?b", "/a"),
        ("/a#b", "/a"),
        ("/a?b#c", "/a"),
        ("http://h/a/b?c", "/a/b"),
        ("https://h:8443", "/"),
        ("https://h?q", "/"),
        ("h/a", "h/a"),  # not absolute-form: left for the path checks to refuse
        ("abc", "abc"),
        ("/a?b?c", "/a"),
        ("/a#b#c", "/a"),
        ("http:///a", "/a"),
        ("http://h/a://b", "/a://b"),
        ("1http://h/a", "1http://h/a"),
        ("/x://y/z", "/x://y/z"),
    ],
)
def test_raw_path_of_request_target(target: str, path: str) -> None:
    assert raw_path_of(target) == path


def test_encode_path_keeps_rfc_3986_path_characters() -> None:
    assert encode_path("/a b/é/%/?#") == "/a%20b/%C3%A9/%25/%3F%23"
    assert encode_path("/:@!$&'()*+,=-._~") == "/:@!$&'()*+,=-._~"
